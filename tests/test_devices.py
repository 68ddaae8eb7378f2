"""Device selection: data-parallel training on two (forced host) jax devices follows the
one-device run, and every refusal says what to do."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import ei_keras  # noqa: F401 — before keras: picks torch unless KERAS_BACKEND is set
import keras
from ei_keras.data import generate_dataset
from ei_keras.devices import check_batch_size, data_parallel, shareable_rows
from ei_keras.errors import EiKerasError
from ei_keras.jobs import read_job
from ei_keras.training import train

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_samples": 230, "seed": 5, "t_max": 100, "n_times": 15, "prefix_lengths": [30],
         "prefix_n_points": 20}


@pytest.mark.slow
def test_two_devices_follow_the_one_device_run(tmp_path):
    data = generate_dataset(SMALL, tmp_path / "data.h5", workers=1, progress=False)
    env = dict(os.environ, KERAS_BACKEND="jax",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    done = subprocess.run([sys.executable, str(REPO / "tests" / "device_runs.py"), str(data),
                           str(tmp_path / "runs"), "3"], env=env, capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    one, two = ([[row["loss"], row["val_loss"]] for row in report["history"][key]]
                for key in ("1", "2"))
    # The same batches and gradients; only the order of float32 sums differs between one
    # device and two shards. Measured over 3 epochs: at most 2e-7 relative.
    np.testing.assert_allclose(two, one, rtol=1e-5)
    assert one[-1][0] < one[0][0]  # it trained
    assert report["all_devices"] == 2
    assert report["too_many"] == ("devices=3: jax sees 2 device(s) (cpu:0, cpu:1); ask for at "
                                  "most 2")
    assert report["uneven_batch"] == ("batch_size 15 cannot be split over 2 devices; use a "
                                      "multiple of 2 (e.g. --batch-size 14)")


def test_several_devices_need_jax(tmp_path):
    if keras.backend.backend() == "jax":
        pytest.skip("the refusal of the other backends")
    with pytest.raises(EiKerasError, match=r"devices=2 needs the jax backend: Keras 3 "
                                           r"distributes training .* only under jax"):
        train(tmp_path / "missing.h5", 30, out_dir=tmp_path / "run", devices=2)
    # refused before anything was made but the state that says why
    assert [path.name for path in (tmp_path / "run").iterdir()] == ["status.json"]
    assert "needs the jax backend" in read_job(tmp_path / "run").message


@pytest.mark.backend
@pytest.mark.parametrize("devices", [0, -1, 1.5, "two", True])
def test_a_device_count_must_be_a_positive_integer_or_all(devices):
    with pytest.raises(EiKerasError, match="devices: got .*; allowed: an integer >= 1 or 'all'"):
        data_parallel(devices)


@pytest.mark.backend
def test_one_device_is_keras_own_placement():
    assert data_parallel(1) is None
    check_batch_size(15, None)
    index = np.arange(7)
    assert shareable_rows(index, None) is index


@pytest.mark.backend
def test_rows_are_cut_to_a_multiple_of_the_devices():
    two = types.SimpleNamespace(num_model_replicas=2)
    np.testing.assert_array_equal(shareable_rows(np.arange(7), two), np.arange(6))
    with pytest.raises(EiKerasError, match="batch_size 9 cannot be split over 2 devices"):
        check_batch_size(9, two)
