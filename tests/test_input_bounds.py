"""Input bounds: the simulator's accepted inputs, model archives, strict JSON."""

import json
import os
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ei_keras
import keras

from ei_keras.errors import EiKerasError
from ei_keras.inference import load_model
from ei_keras.inference import model_file
from ei_keras.inference.model_file import check_model_archive
from ei_keras.jsonutil import dumps_strict
from ei_keras.simulation.simulator import CONDITION_LIMITS, CONDITION_NAMES, simulate


# --- the simulator: finite for everything it accepts, one line for the rest ------------

def _conditions(rng, n):
    """Log-uniform over each limit (down to 1e-15 above a zero bound), 5 % at each bound."""
    conditions = {}
    for name, (low, high) in CONDITION_LIMITS.items():
        if name in ("temperature_C", "initial_pH"):
            values = rng.uniform(low, high, n)
        else:
            values = 10 ** rng.uniform(np.log10(max(low, 1e-15)), np.log10(high), n)
        edge = rng.random(n)
        values[edge < 0.05] = low
        values[(edge >= 0.05) & (edge < 0.1)] = high
        conditions[name] = values
    return conditions


@pytest.mark.parametrize("options", [None, {"temperature_dependent_equilibria": True,
                                            "initial_co2_uM": 1e4,
                                            "constant_ph_activity": True}])
def test_the_simulator_is_finite_everywhere_it_accepts(options):
    rng = np.random.default_rng(13)
    conditions = _conditions(rng, 3000)
    conditions.update({"substrate_mM": np.r_[1e-8, conditions["substrate_mM"][1:]],
                       "grams_urease_powder": np.r_[1000.0, conditions["grams_urease_powder"][1:]],
                       "volume_L": np.r_[1e-6, conditions["volume_L"][1:]],
                       "activity": np.r_[1000.0, conditions["activity"][1:]],
                       "initial_pH": np.r_[6.0, conditions["initial_pH"][1:]]})
    t = np.concatenate([[0.0], np.geomspace(1e-9, 1e12, 40)])
    out = simulate(conditions, t, totals=True, options=options)
    for key, values in out.items():
        bad = ~np.isfinite(values).all(axis=1)
        assert not bad.any(), (key, {k: v[np.argmax(bad)] for k, v in conditions.items()})
    assert out["pH"].min() >= 0.0 and out["pH"].max() <= 14.0


@pytest.mark.parametrize("name", CONDITION_NAMES)
@pytest.mark.parametrize("where", ["below", "above", "nan", "inf"])
def test_the_simulator_refuses_beyond_its_limits_naming_the_condition(name, where):
    low, high = CONDITION_LIMITS[name]
    value = {"below": low - max(1.0, abs(low)) * 1e-3, "above": high * 1.001 + 1e-9,
             "nan": np.nan, "inf": np.inf}[where]
    conditions = {"substrate_mM": 50.0, "grams_urease_powder": 0.05, "volume_L": 0.5,
                  "temperature_C": 25.0, "initial_pH": 7.0, "activity": 0.05, "k_d": 1e-3}
    conditions[name] = np.array([conditions[name], value])
    with pytest.raises(EiKerasError, match=f"^{name} must be finite and within") as excinfo:
        simulate(conditions, [0.0, 10.0])
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("options, text", [
    (5, "options must be a mapping"),
    ("fast", "options must be a mapping"),
    ({"warp": 1}, "unknown simulation option"),
    ({"initial_co2_uM": "a"}, "initial_co2_uM must be within"),
    ({"temperature_dependent_equilibria": "yes"}, "must be true or false"),
])
def test_bad_simulation_options_are_one_line(options, text):
    with pytest.raises(EiKerasError, match=text):
        ei_keras.simulate({"substrate_mM": 50, "grams_urease_powder": 0.05, "volume_L": 0.5,
                           "temperature_C": 25, "initial_pH": 7.0, "activity": 0.05,
                           "k_d": 1e-3}, [0.0, 1.0], options=options)


# --- model archives: bounded before Keras reads them; safe mode still holds -------------

def _rezip(source, target, replace=None, drop=()):
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist() if name not in drop}
    entries.update(replace or {})
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def test_a_huge_config_is_refused_without_decompressing_it(tmp_path):
    # 17 MB of spaces deflate to ~17 kB: a small file that would cost far more to read.
    bomb = _rezip(ei_keras.default_model_path(), tmp_path / "bomb.keras",
                  {"config.json": b" " * (17 * model_file.MB)})
    assert bomb.stat().st_size < Path(ei_keras.default_model_path()).stat().st_size + 100_000
    tracemalloc.start()
    with pytest.raises(EiKerasError, match=r"its config.json is 17 MB uncompressed, over the "
                                           r"16 MB a model needs") as excinfo:
        load_model(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * model_file.MB and "\n" not in str(excinfo.value)


def test_the_total_and_metadata_bounds(tmp_path, monkeypatch):
    big = _rezip(ei_keras.default_model_path(), tmp_path / "big.keras",
                 {"metadata.json": b" " * (2 * model_file.MB)})
    with pytest.raises(EiKerasError, match="its metadata.json is 2 MB"):
        check_model_archive(big)
    monkeypatch.setattr(model_file, "MAX_ARCHIVE_MB", 0.5)
    with pytest.raises(EiKerasError, match=r"over the 0.5 MB / 10000 entries a model needs"):
        check_model_archive(ei_keras.default_model_path())


@pytest.mark.parametrize("make", ["truncated", "text", "empty"])
def test_a_broken_file_is_not_a_keras_archive_rather_than_not_found(tmp_path, make):
    data = ei_keras.default_model_path().read_bytes()
    path = tmp_path / "model.keras"
    path.write_bytes({"truncated": data[: len(data) // 2], "text": b"hello",
                      "empty": b""}[make])
    with pytest.raises(EiKerasError) as excinfo:
        load_model(path)
    assert str(excinfo.value) == (
        f"{path} is not a .keras archive (truncated or corrupt); give a file saved by "
        f"ei-keras train or keras.Model.save")


class _Payload:
    """Unpickling this creates a directory: proof that code from a file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _plain_model(path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    model.save(path)
    return path


def test_safe_mode_still_refuses_code_in_a_model_file(tmp_path):
    marker = tmp_path / "ran"
    # A Python lambda in a Lambda layer.
    lam = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    lam.save(tmp_path / "lambda.keras")
    with pytest.raises(EiKerasError, match="Lambda"):
        load_model(tmp_path / "lambda.keras")
    # A reference to os.system where Keras expects an activation.
    plain = _plain_model(tmp_path / "plain.keras")
    with zipfile.ZipFile(plain) as archive:
        config = json.loads(archive.read("config.json"))
    config["config"]["layers"][-1]["config"]["activation"] = {
        "module": "os", "class_name": "function", "config": "system",
        "registered_name": "function"}
    os_ref = _rezip(plain, tmp_path / "os.keras", {"config.json": json.dumps(config)})
    with pytest.raises(EiKerasError):
        load_model(os_ref)
    # A pickle (as torch.save writes) in place of the weights, and as a whole torch file.
    payload = pickle.dumps(_Payload(marker))
    weights = _rezip(plain, tmp_path / "pickle.keras", {"model.weights.h5": payload})
    with pytest.raises(EiKerasError):
        load_model(weights)
    with zipfile.ZipFile(tmp_path / "torch.keras", "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(EiKerasError, match=r"is not a .keras archive \(no config.json inside\)"):
        load_model(tmp_path / "torch.keras")
    assert not marker.exists()


# --- strict JSON ------------------------------------------------------------------------

def test_dumps_strict_writes_null_for_non_finite_numbers_and_plain_numpy():
    value = {"nan": float("nan"), "inf": np.float32(np.inf), "neg": -np.inf, "i": np.int64(3),
             "arr": np.array([1.0, np.nan]), "b": np.bool_(True), "t": (1, 2)}
    text = dumps_strict(value)
    assert json.loads(text, parse_constant=pytest.fail) == {
        "nan": None, "inf": None, "neg": None, "i": 3, "arr": [1.0, None], "b": True,
        "t": [1, 2]}
    with pytest.raises(TypeError):
        dumps_strict({"x": object()})
