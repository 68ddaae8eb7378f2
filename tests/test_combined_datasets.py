"""Several datasets trained on as one (``ei-keras train --data A.h5 B.h5``): the rows of
each, padded to the widest, with every part's generation config on record; datasets of
another prior or measurement model are refused before anything is written."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ei_keras.data import combine_datasets, generate_dataset, load_any_format
from ei_keras.errors import EiKerasError

ANY = {"infer_params": ["activity", "k_d", "tau_probe", "pH_offset"], "prefix_lengths": [],
       "any_format": {"enabled": True}}


def any_format(path, seed, n, prefix_range, max_readings=600, **measurement):
    config = {**ANY, "n_samples": n, "seed": seed,
              "any_format": {**ANY["any_format"], "prefix_length_s": prefix_range,
                             "reading_interval_s": [0.5, 2.0], "max_readings": max_readings}}
    if measurement:
        config["measurement_model"] = measurement
    generate_dataset(config, path, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("combined")
    return (any_format(root / "short.h5", 1, 60, [2.0, 20.0], max_readings=41),
            any_format(root / "long.h5", 2, 40, [100.0, 300.0]))


def test_combined_rows_are_each_datasets_rows_padded_to_the_widest(parts):
    short, long = load_any_format(parts[0]), load_any_format(parts[1])
    both = combine_datasets(parts, load_any_format)
    assert both.pH.shape == (100, long.pH.shape[1]) and long.pH.shape[1] > short.pH.shape[1]
    np.testing.assert_array_equal(both.pH[:60, :short.pH.shape[1]], short.pH)
    assert np.all(np.isnan(both.pH[:60, short.pH.shape[1]:]))
    np.testing.assert_array_equal(both.t[60:], long.t)
    for name in ("known", "targets", "latent", "lengths", "sample_prefix_lengths"):
        np.testing.assert_array_equal(getattr(both, name),
                                      np.concatenate([getattr(short, name), getattr(long, name)]))
    assert both.prefix_length == long.prefix_length
    assert [part["seed"] for part in both.config["combined_from"]] == [1, 2]
    assert both.config["param_ranges"] == short.config["param_ranges"]
    assert "seed" not in both.config and "any_format" not in both.config


def test_datasets_of_another_measurement_model_are_refused(parts, tmp_path):
    noisier = any_format(tmp_path / "noisier.h5", 3, 20, [2.0, 20.0], noise_std=0.05)
    with pytest.raises(EiKerasError, match="measurement models differ"):
        combine_datasets([parts[0], noisier], load_any_format)


def test_the_cli_trains_on_both_and_records_both(parts, tmp_path):
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ei_keras.cli", "train", "--data", *map(str, parts),
         "--prefix-length", "any", "--preset", "anyformat", "--epochs", "1", "--quiet",
         "--out", str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["path"] == [str(path) for path in parts]
    assert config["data"]["n_train"] + config["data"]["n_val"] == 100
    domain = config["normalization"]["domain"]
    assert domain["prefix_length_s"][0] < 20 and domain["prefix_length_s"][1] > 100
    resumed = subprocess.run(  # the same parts by other paths: the same data
        [sys.executable, "-m", "ei_keras.cli", "train", "--data", *(p.name for p in parts),
         "--prefix-length", "any", "--resume", "--epochs", "2", "--quiet", "--out", str(run)],
        capture_output=True, text=True, cwd=parts[0].parent)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len((run / "history.jsonl").read_text().splitlines()) == 2
    streamed = subprocess.run(
        [sys.executable, "-m", "ei_keras.cli", "train", "--data", *map(str, parts),
         "--prefix-length", "any", "--stream", "--out", str(tmp_path / "streamed")],
        capture_output=True, text=True)
    assert streamed.returncode != 0 and "give one path" in streamed.stderr
