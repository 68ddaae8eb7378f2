"""The target codec: one place for transforms, standardisation, summaries and the clamp,
carried inside the .keras file and used by the loss, infer and the report."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from ei_keras.models import build_model, fit_normalization, save_model, target_codec
from ei_keras.targets import LOG_VAR_MIN, TargetCodec, summarize_gaussian
from ei_keras.training import train
from synthetic_prefixes import make_prefixes

BOUNDS = {"activity": None, "k_d": (0.0, 5e-3)}


def _codec():
    return TargetCodec.create(("activity", "k_d"), ("log10", "logit"), loc=(-1.5, 0.2),
                              scale=(0.8, 1.7), bounds=(None, BOUNDS["k_d"]))


def test_encode_then_decode_gives_back_the_targets_and_the_clamped_scale():
    codec = _codec()
    targets = np.array([[1e-3, 0.0], [0.05, 2.5e-3], [0.9, 5e-3]])
    z = codec.encode(targets)
    # Independent reference: the standardised log10 / logit by hand.
    low, high = BOUNDS["k_d"]
    inside = np.clip(targets[:, 1], low + 1e-6 * high, high - 1e-6 * high)
    expected = np.column_stack([(np.log10(targets[:, 0]) + 1.5) / 0.8,
                                (np.log(inside / (high - inside)) - 0.2) / 1.7])
    np.testing.assert_allclose(z, expected, rtol=1e-5)
    decoded = codec.decode(np.column_stack([z, np.full((3, 2), -50.0)]))
    np.testing.assert_allclose(decoded["activity"]["median"], targets[:, 0], rtol=1e-5)
    np.testing.assert_allclose(decoded["k_d"]["median"], targets[:, 1], atol=1e-8)
    # log-variance -50 is clamped to the one floor, in transformed units.
    np.testing.assert_allclose(decoded["activity"]["scale"], 0.8 * np.exp(0.5 * LOG_VAR_MIN))


def test_summaries_match_scipy_quantiles_and_stay_inside_the_bounds():
    summary = summarize_gaussian(np.array([-1.0]), np.array([0.3]), "log10")
    assert summary["lo90"][0] == pytest.approx(10 ** stats.norm(-1.0, 0.3).ppf(0.05))
    assert summary["mean"][0] == pytest.approx(
        stats.lognorm(s=0.3 * np.log(10), scale=0.1).mean(), rel=1e-9)
    wide = summarize_gaussian(np.array([0.0]), np.array([8.0]), "logit", BOUNDS["k_d"])
    assert 0.0 <= wide["lo95"][0] < wide["hi95"][0] <= 5e-3


def test_the_codec_travels_inside_the_keras_file(tmp_path):
    data = make_prefixes(n=32)
    stats_ = fit_normalization(data.t, data.pH, data.known, data.targets,
                               bounds={"k_d": [0.0, 5e-3]})
    model = build_model(stats_, filters=(8,), dilations=(1,), pool_sizes=(1,), log_var_min=-9.0)
    path = save_model(model, tmp_path / "m.keras")
    script = ("import json, sys; from ei_keras.inference import load_model; "
              "from ei_keras.models import target_codec; "
              "print(json.dumps(target_codec(load_model(sys.argv[1])).get_config()))")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == target_codec(model).get_config()
    assert target_codec(model).log_var_min == -9.0


def test_training_compiles_the_loss_with_the_codecs_clamp(tmp_path):
    result = train(make_prefixes(n=48), 30.0, out_dir=tmp_path / "run", epochs=1,
                   batch_size=16, log_var_min=-6.0, verbose=0, model={"filters": [8], "dilations": [1], "pool_sizes": [1]})
    from ei_keras.inference import load_model
    model = load_model(result.final_path)
    assert target_codec(model).log_var_min == -6.0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["log_var_min"] == -6.0
