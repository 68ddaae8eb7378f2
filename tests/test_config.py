"""Dataset config: defaults, deep merge, and one-line errors naming field, value and range."""

import copy
import json

import numpy as np
import pytest

from ei_keras import EiKerasError
from ei_keras.config import (
    DEFAULT_DATASET_CONFIG,
    DatasetConfig,
    dataset_config,
    load_dataset_config,
    resolve_dataset_config,
)
from ei_keras.settings import ConfigError, settings_of

KEYS = {
    "n_samples", "seed", "t_max", "n_times", "prefix_lengths", "prefix_n_points",
    "use_adaptive_n_points", "target_dt", "infer_params", "param_ranges", "measurement_model",
    "any_format",
}
PRIOR_RANGES = {
    "substrate_mM": [1, 100], "grams_urease_powder": [0.01, 0.5], "volume_L": [0.1, 1.0],
    "temperature_C": [20, 40], "initial_pH": [6.5, 7.5], "activity": [1e-3, 1],
    "k_d": [0, 5e-3], "tau_probe": [0, 30], "pH_offset": [-0.1, 0.1],
}


def test_defaults_follow_the_physics_spec():
    config = resolve_dataset_config()
    assert set(config) == KEYS
    assert config["prefix_lengths"] == [10, 30, 60, 300]
    assert config["prefix_n_points"] == 100
    assert config["use_adaptive_n_points"] is False
    assert config["target_dt"] == 0.3
    assert config["infer_params"] == ["activity", "k_d"]
    assert config["param_ranges"] == PRIOR_RANGES
    assert config["measurement_model"] == {
        "noise_std": 0.01, "use_probe_lag": True, "use_offset": True, "add_noise": True}
    assert json.loads(json.dumps(config)) == config


def test_partial_config_is_deep_merged_without_touching_inputs():
    partial = {"n_samples": 10, "measurement_model": {"noise_std": 0.02},
               "param_ranges": {"temperature_C": [25, 25]}}
    before, defaults_before = copy.deepcopy(partial), copy.deepcopy(DEFAULT_DATASET_CONFIG)
    config = resolve_dataset_config(partial)
    assert config["n_samples"] == 10
    assert config["measurement_model"] == {
        "noise_std": 0.02, "use_probe_lag": True, "use_offset": True, "add_noise": True}
    assert config["param_ranges"] == {**PRIOR_RANGES, "temperature_C": [25, 25]}
    assert partial == before and DEFAULT_DATASET_CONFIG == defaults_before


def test_resolving_twice_changes_nothing():
    config = resolve_dataset_config({"prefix_lengths": [300, 2.5], "infer_params":
                                     ["pH_offset", "k_d", "activity"]})
    assert config["prefix_lengths"] == [2.5, 300]
    assert config["infer_params"] == ["activity", "k_d", "pH_offset"]
    assert resolve_dataset_config(config) == config


@pytest.mark.parametrize("partial, field", [
    ({"n_sample": 5}, "n_sample"),
    ({"measurement_model": {"noise": 0.1}}, "measurement_model.noise"),
    ({"param_ranges": {"enzyme": [0, 1]}}, "param_ranges.enzyme"),
])
def test_unknown_keys_are_rejected_at_any_level(partial, field):
    with pytest.raises(EiKerasError) as error:
        resolve_dataset_config(partial)
    message = str(error.value)
    assert f"'{field}'" in message and "unknown key" in message and "\n" not in message


@pytest.mark.parametrize("partial, label, shown, allowed", [
    ({"n_samples": 0}, "Number of samples", "0", ">= 1"),
    ({"n_samples": 2.5}, "Number of samples", "2.5", "integer"),
    ({"n_samples": True}, "Number of samples", "True", "integer"),
    ({"n_samples": np.float64(2.5)}, "Number of samples", "got 2.5;", "integer"),
    ({"seed": -1}, "Seed", "-1", ">= 0"),
    ({"t_max": 0}, "End of the full trajectory [s]", "0", "> 0"),
    ({"t_max": float("nan")}, "End of the full trajectory [s]", "nan", "> 0"),
    ({"n_times": 1}, "Points on the full trajectory", "1", ">= 2"),
    ({"prefix_lengths": []}, "Prefix lengths [s]", "[]", "non-empty"),
    ({"prefix_lengths": [30, -1]}, "Prefix lengths [s]", "[30, -1]", "> 0"),
    ({"prefix_lengths": [30, 30]}, "Prefix lengths [s]", "[30, 30]", "distinct"),
    ({"prefix_lengths": "30"}, "Prefix lengths [s]", "'30'", "list"),
    ({"prefix_n_points": 1}, "Readings per prefix", "1", ">= 2"),
    ({"use_adaptive_n_points": "yes"}, "Adaptive readings", "'yes'", "true or false"),
    ({"target_dt": -0.3}, "Target spacing for adaptive readings [s]", "-0.3", "> 0"),
    ({"infer_params": ["activity"]}, "Parameters to infer", "['activity']", "activity, k_d"),
    ({"infer_params": ["activity", "k_d", "E0"]}, "Parameters to infer", "'E0'", "tau_probe"),
    ({"param_ranges": {"activity": [0, 1]}}, "Prior range of Activity", "[0, 1]", "0 < low"),
    ({"param_ranges": {"volume_L": [1, 0.5]}}, "Prior range of Volume [L]", "[1, 0.5]",
     "<= high"),
    ({"param_ranges": {"k_d": [-1e-3, 0]}}, "Prior range of Deactivation rate k_d [1/s]",
     "[-0.001, 0]", "0 <= low"),
    ({"param_ranges": {"initial_pH": [6]}}, "Prior range of Initial pH (measured) [pH]", "[6]",
     "[low, high]"),
    ({"param_ranges": {"volume_L": [0.1, 2000]}}, "Prior range of Volume [L]", "[0.1, 2000]",
     "high <= 1000"),
    ({"param_ranges": {"initial_pH": [1.0, 7]}}, "Prior range of Initial pH (measured) [pH]",
     "[1.0, 7.0]", "minus the probe offset stays within [1, 13]"),
    ({"measurement_model": {"noise_std": -0.01}}, "Noise σ [pH]", "-0.01", ">= 0"),
    ({"measurement_model": {"add_noise": 1}}, "Add noise", "1", "true or false"),
    ({"measurement_model": 0.01}, "Measurement model", "0.01", "mapping"),
])
def test_invalid_values_name_label_value_and_allowed_range(partial, label, shown, allowed):
    with pytest.raises(ConfigError) as error:
        resolve_dataset_config(partial)
    message = str(error.value)
    assert message.startswith(f"{label}: got ")
    assert shown in message and allowed in message
    assert "\n" not in message and "np." not in message and "param_ranges" not in message
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("switch, label, name", [("use_probe_lag", "Probe lag", "tau_probe"),
                                                 ("use_offset", "Probe offset", "pH_offset")])
def test_switched_off_nuisance_cannot_be_inferred(switch, label, name):
    partial = {"measurement_model": {switch: False}, "infer_params": ["activity", "k_d", name]}
    with pytest.raises(EiKerasError, match=f"{name} cannot be inferred because {label} is off"):
        resolve_dataset_config(partial)
    partial["measurement_model"][switch] = True
    assert name in resolve_dataset_config(partial)["infer_params"]


def test_true_initial_pH_range_needs_the_offset_only_when_it_is_on():
    partial = {"param_ranges": {"initial_pH": [1.0, 7.0]},
               "measurement_model": {"use_offset": False}}
    assert resolve_dataset_config(partial)["param_ranges"]["initial_pH"] == [1.0, 7.0]


def test_config_file_is_loaded_and_merged(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"n_samples": 7, "measurement_model": {"add_noise": False}}))
    config = load_dataset_config(path)
    assert config["n_samples"] == 7 and config["measurement_model"]["add_noise"] is False
    assert config["seed"] == DEFAULT_DATASET_CONFIG["seed"]


@pytest.mark.parametrize("text, expected", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
])
def test_bad_config_files_are_rejected(tmp_path, text, expected):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(EiKerasError, match=expected):
        load_dataset_config(path)


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(EiKerasError, match="cannot be read"):
        load_dataset_config(tmp_path / "absent.json")


def test_typed_config_is_the_dict_config():
    config = dataset_config({"n_samples": 7, "measurement_model": {"noise_std": 0.02}})
    assert isinstance(config, DatasetConfig)
    assert config.n_samples == 7 and config.measurement_model.noise_std == 0.02
    assert config.any_format.enabled is False
    assert config.to_dict() == resolve_dataset_config(config) == resolve_dataset_config(
        {"n_samples": 7, "measurement_model": {"noise_std": 0.02}})
    assert DatasetConfig().to_dict() == DEFAULT_DATASET_CONFIG


def test_every_setting_declares_its_label_help_and_kind():
    def fields(cls):
        for field in settings_of(cls):
            if "section" in field.metadata:
                yield from fields(field.metadata["section"])
            else:
                yield field

    every = list(fields(DatasetConfig))
    assert {f.name for f in every} >= {"n_samples", "noise_std", "drop_fraction"}
    assert all(f.metadata["label"] and f.metadata["help"] and f.metadata["kind"]
               for f in every)


def test_json_config_file_round_trips(tmp_path):
    partial = {"n_samples": 12, "prefix_lengths": [60, 5], "infer_params": ["k_d", "activity"],
               "param_ranges": {"temperature_C": [25, 30]},
               "measurement_model": {"use_offset": False},
               "any_format": {"enabled": True, "sampling": "grid",
                              "prefix_length_s": [30, 10]}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(partial))
    config = load_dataset_config(path)
    assert config["prefix_lengths"] == [5.0, 60.0]
    assert config["any_format"]["prefix_length_s"] == [10.0, 30.0]
    assert config["param_ranges"]["temperature_C"] == [25.0, 30.0]
    path.write_text(json.dumps(config))
    assert load_dataset_config(path) == config
    assert dataset_config(config).to_dict() == config
