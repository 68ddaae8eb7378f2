"""build_model: outputs, padding, decoding, and self-contained .keras files across backends."""

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import ei_keras  # noqa: F401
import keras

from ei_keras.losses import RegularizedGaussianNLL
from ei_keras.models import (
    architecture_kwargs,
    build_model,
    decode_predictions,
    fit_normalization,
    input_pool_for,
    model_info,
    predict_batch,
    save_model,
    target_codec,
)
from ei_keras.optimizers import AdamW
from synthetic_prefixes import make_prefixes

TINY = {"filters": (4, 6), "dilations": (1, 2), "pool_sizes": (1, 2), "known_units": (4,),
        "head_units": (8,)}


def tiny_model(data=None, **kwargs):
    data = data or make_prefixes()
    stats = fit_normalization(data.t, data.pH, data.known, data.targets)
    return build_model(stats, **dict(TINY, **kwargs)), data


def inputs(data, rows=slice(None)):
    return {"pH": data.pH[rows], "t": data.t[rows], "known": data.known[rows]}


@pytest.mark.backend
def test_outputs_are_named_and_accept_any_length_and_a_channel_axis():
    model, data = tiny_model(input_pool=2)
    out = model.predict_on_batch(inputs(data))
    assert set(out) == {"posterior", "attention"}
    assert out["posterior"].shape == (64, 4) and out["attention"].shape == (64, 20)
    np.testing.assert_allclose(out["attention"].sum(1), 1.0, atol=1e-5)
    # Called directly: tensorflow's predict function, traced again for the other rank,
    # would relax the pH input to an unknown rank, which Keras's input check refuses.
    with_channel = model({**inputs(data), "pH": data.pH[..., None]}, training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(with_channel["posterior"]),
                               out["posterior"], atol=1e-6)
    for steps in (1, 7, 300):
        t = np.tile(np.linspace(0, 30, steps, dtype="float32"), (2, 1))
        short = model.predict_on_batch({"pH": np.full((2, steps), 7.0, "float32"), "t": t,
                                        "known": data.known[:2]})
        assert short["attention"].shape == (2, steps)


@pytest.mark.backend
@pytest.mark.parametrize("pooling", ["weighted", "average"])
def test_nan_padded_batch_predicts_like_each_trace_alone(pooling):
    model, data = tiny_model(input_pool=2, pooling=pooling)
    lengths = [20, 13, 6, 1]
    ph = data.pH[:4].copy()
    for row, length in enumerate(lengths):
        ph[row, length:] = np.nan
    batch = model.predict_on_batch({**inputs(data, slice(0, 4)), "pH": ph})
    for row, length in enumerate(lengths):
        alone = model.predict_on_batch({"pH": data.pH[row:row + 1, :length],
                                        "t": data.t[row:row + 1, :length],
                                        "known": data.known[row:row + 1]})
        np.testing.assert_allclose(batch["posterior"][row], alone["posterior"][0], atol=1e-5)
        np.testing.assert_allclose(batch["attention"][row, :length], alone["attention"][0],
                                   atol=1e-6)
        assert np.all(batch["attention"][row, length:] == 0.0)
    if pooling == "average":  # uniform over encoder steps of 4 readings, the last partial
        np.testing.assert_allclose(batch["attention"][2, :6], [0.125] * 4 + [0.25] * 2,
                                   rtol=1e-5)


@pytest.mark.backend
@pytest.mark.parametrize("encoding, padding", [("readings", "causal"), ("bins", "same")])
def test_predict_batch_answers_as_predict_on_batch(encoding, padding, monkeypatch):
    pools = {"pool_sizes": (1, 1)} if encoding == "bins" else {"input_pool": 2}
    model, data = tiny_model(encoding=encoding, padding=padding, **pools)
    expected = model.predict_on_batch(inputs(data, slice(0, 3)))
    with monkeypatch.context() as patched:  # torch: a few rows skip predict_on_batch
        if keras.backend.backend() == "torch":  # and every Layer.__call__, sublayers too
            patched.setattr(model, "predict_on_batch", lambda x: pytest.fail("not direct"))
            patched.setattr(keras.layers.Layer, "__call__",
                            lambda self, *a, **k: pytest.fail(f"{self.name} not direct"))
        direct = predict_batch(model, inputs(data, slice(0, 3)))
    assert set(direct) == {"posterior", "attention"}
    for name in direct:
        assert isinstance(direct[name], np.ndarray)
        np.testing.assert_allclose(direct[name], expected[name], rtol=1e-6, atol=1e-7)
    many = predict_batch(model, inputs(data))  # a large batch: predict_on_batch, no autograd
    np.testing.assert_allclose(many["posterior"][:3], expected["posterior"], atol=1e-5)


def test_normalisation_statistics_and_decoding():
    data = make_prefixes()
    stats = fit_normalization(data.t, data.pH, data.known, data.targets)
    delta = data.pH - data.known[:, 4:5]
    assert stats["reference_index"] == 4
    assert stats["ph_scale"] == pytest.approx(delta.std(), rel=1e-5)
    assert stats["time_scale"] == pytest.approx(30.0)
    assert stats["dt_scale"] == pytest.approx(30.0 / 19, rel=1e-5)
    assert stats["transforms"] == ["log10", "logit"]
    assert stats["bounds"] == [None, [0.0, 5e-3]]
    assert stats["target_loc"][0] == pytest.approx(np.log10(data.targets[:, 0]).mean())
    json.dumps(stats)
    model = build_model(stats, **TINY)
    encode = target_codec(model).encode
    y_pred = np.concatenate([encode(data.targets), np.zeros((64, 2))], axis=1)
    decoded = decode_predictions(model, {"posterior": y_pred})
    np.testing.assert_allclose(decoded["activity"]["median"], data.targets[:, 0], rtol=1e-5)
    np.testing.assert_allclose(decoded["k_d"]["median"], data.targets[:, 1], rtol=1e-4, atol=1e-9)
    assert np.all((decoded["k_d"]["mean"] > 0) & (decoded["k_d"]["mean"] < 5e-3))
    np.testing.assert_allclose(decoded["activity"]["scale"], stats["target_scale"][0], rtol=1e-6)
    info = model_info(model)
    assert info["known_names"][4] == "initial_pH" and info["target_names"] == ["activity", "k_d"]
    assert info["time_scale"] == pytest.approx(30.0)


def test_architecture_presets_and_validation():
    assert input_pool_for(100, 64) == 2 and input_pool_for(1000, 64) == 16
    assert input_pool_for(1000, None) == 1
    compact, recipe = architecture_kwargs("compact", 1000), architecture_kwargs("recipe", 1000)
    assert compact["input_pool"] == 16 and recipe["input_pool"] == 1
    assert recipe["filters"] == (64, 128, 256)
    assert build_model(**recipe).count_params() > 5 * build_model(**compact).count_params()
    with pytest.raises(ValueError, match="pooling"):
        build_model(pooling="max")
    with pytest.raises(ValueError, match="architecture"):
        architecture_kwargs("huge", 100)
    # Binned: the attention maps each encoder step back to one bin; a downsampled encoder
    # built a model that failed at its first call.
    with pytest.raises(ValueError, match="Downsampling per block: got 1 2 2; the bins"):
        build_model(**{**architecture_kwargs("binned", 100), "pool_sizes": (1, 2, 2)})
    with pytest.raises(ValueError, match="Readings per encoder step: got 4"):
        build_model(**{**architecture_kwargs("binned", 100), "input_pool": 4})


# --- .keras files: fresh process, other backend ------------------------------------------

CHECK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import ei_keras, keras
    from ei_keras.models import decode_predictions, model_info

    work, mode = sys.argv[1], sys.argv[2:]
    data = np.load(f"{work}/inputs.npz")
    x = {"pH": data["pH"], "t": data["t"], "known": data["known"]}
    from ei_keras.models import save_model

    report = {"backend": keras.backend.backend()}
    for name in mode:
        if name == "save":
            continue
        model = keras.saving.load_model(f"{work}/{name}.keras")
        out = model.predict_on_batch(x)
        expected = np.load(f"{work}/{name}_pred.npz")
        report[name] = {key: float(np.abs(out[key] - expected[key]).max()) for key in out}
        report[name]["decoded"] = sorted(decode_predictions(model, out))
        report[name]["info"] = model_info(model)["target_names"]
        report[name]["optimizer"] = type(model.optimizer).__module__
        # No recompile: save_model stored jit_compile="auto", which this backend resolves.
        history = model.fit(x, {"posterior": data["y"]}, epochs=1, batch_size=16, verbose=0)
        report[name]["loss_after_load"] = history.history["loss"][0]
    if "save" in mode:  # the model just trained on under this backend
        save_model(model, f"{work}/resaved.keras")
        np.savez(f"{work}/resaved_pred.npz", **model.predict_on_batch(x))
    print("REPORT " + json.dumps(report))
""")


def run_backend(backend, work, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, str(work), *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


def test_saved_model_is_self_contained_and_crosses_backends(tmp_path):
    """Trained + saved here, loaded with no custom_objects in a fresh process under the
    other backend, trained on and saved there, and both files loaded back in a fresh
    process under this backend: every prediction agrees to 1e-5."""
    here = keras.backend.backend()
    other = "jax" if here == "torch" else "torch"
    model, data = tiny_model(input_pool=2)
    model.compile(AdamW(1e-3, weight_decay=1e-5, global_clipnorm=5.0),
                  loss={"posterior": RegularizedGaussianNLL()})
    y = target_codec(model).encode(data.targets)
    model.fit(inputs(data), {"posterior": y}, epochs=1, batch_size=16, verbose=0)
    save_model(model, tmp_path / "model.keras")
    x = inputs(data)
    x["pH"] = x["pH"].copy()
    x["pH"][0, 11:] = np.nan  # padding travels too
    np.savez(tmp_path / "inputs.npz", y=y, **x)
    np.savez(tmp_path / "model_pred.npz", **model.predict_on_batch(x))
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        saved = json.loads(archive.read("config.json"))
    assert saved["compile_config"]["optimizer"]["registered_name"] == "ei_keras>AdamW"
    assert saved["compile_config"]["jit_compile"] == "auto"

    away = run_backend(other, tmp_path, "model", "save")
    back = run_backend(here, tmp_path, "model", "resaved")
    assert away["backend"] == other and back["backend"] == here
    for report in (away["model"], back["model"], back["resaved"]):
        assert report["posterior"] <= 1e-5 and report["attention"] <= 1e-5
        assert report["decoded"] == ["activity", "k_d"] and report["info"] == ["activity", "k_d"]
        assert report["optimizer"] == "ei_keras.optimizers"
        assert np.isfinite(report["loss_after_load"])


@pytest.mark.backend
def test_adamw_matches_the_generic_keras_update():
    """ei_keras AdamW (fused on torch) takes exactly the steps of the per-variable update."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype("float32") for shape in [(3, 4), (4,), (5,)]]
    steps = [[10 * rng.normal(size=w.shape).astype("float32") for w in start] for _ in range(5)]

    class Generic(keras.optimizers.AdamW):
        pass

    def run(optimizer):
        variables = [keras.Variable(w) for w in start]
        for grads in steps:
            optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        return [keras.ops.convert_to_numpy(v) for v in variables]

    settings = dict(learning_rate=1e-2, weight_decay=1e-2, global_clipnorm=5.0, epsilon=1e-8)
    for ours, generic in zip(run(AdamW(**settings)), run(Generic(**settings))):
        np.testing.assert_allclose(ours, generic, rtol=1e-5, atol=1e-6)
    assert keras.saving.serialize_keras_object(AdamW())["registered_name"] == "ei_keras>AdamW"
