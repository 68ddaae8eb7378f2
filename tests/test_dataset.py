"""HDF5 datasets: layout, agreement with the measurement model, determinism, loaders,
and no partial file at the target path when generation is interrupted."""

import json
import threading

import h5py
import numpy as np
import pytest

import ei_keras.data.generate as generate_module
from ei_keras import EiKerasError, generate_dataset, load_prefix, load_trajectories, simulate
from ei_keras.config import resolve_dataset_config
from ei_keras.data import FORMAT_VERSION, describe_dataset
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.measurement import measure
from h5_contents import all_arrays

SMALL = {
    "n_samples": 40, "seed": 11, "t_max": 100, "n_times": 21,
    "prefix_lengths": [30, 2.5, 10], "prefix_n_points": 20,
    "use_adaptive_n_points": True, "target_dt": 0.5,
    "infer_params": ["activity", "k_d", "tau_probe", "pH_offset"],
}
NOISELESS = {**SMALL, "measurement_model": {"add_noise": False}}
# Readings per prefix group for SMALL: max(20, round(L / 0.5)).
PREFIX_POINTS = {"prefix_2.5s": (2.5, 20), "prefix_10s": (10.0, 20), "prefix_30s": (30.0, 60)}


@pytest.fixture(scope="module")
def noisy_path(tmp_path_factory):
    return generate_dataset(SMALL, tmp_path_factory.mktemp("noisy") / "d.h5", progress=False)


@pytest.fixture(scope="module")
def noiseless_path(tmp_path_factory):
    return generate_dataset(NOISELESS, tmp_path_factory.mktemp("clean") / "d.h5",
                            progress=False)


def column(data, names, name):
    return data[:, list(names).index(name)]


def true_conditions(known, latent):
    conditions = {name: known[:, i] for i, name in enumerate(KNOWN_NAMES)}
    conditions["initial_pH"] = conditions["initial_pH"] - column(latent, LATENT_NAMES, "pH_offset")
    conditions["activity"] = column(latent, LATENT_NAMES, "activity")
    conditions["k_d"] = column(latent, LATENT_NAMES, "k_d")
    return conditions


def test_layout_attributes_and_config_round_trip(noisy_path):
    n = SMALL["n_samples"]
    with h5py.File(noisy_path, "r") as handle:
        assert set(handle) == {"known", "latent", "targets", "trajectory", *PREFIX_POINTS}
        assert handle.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(handle.attrs["config"]) == resolve_dataset_config(SMALL)
        assert handle["known"].shape == (n, 5)
        assert list(handle["known"].attrs["names"]) == list(KNOWN_NAMES)
        assert handle["latent"].shape == (n, 4)
        assert list(handle["latent"].attrs["names"]) == list(LATENT_NAMES)
        assert list(handle["targets"].attrs["names"]) == SMALL["infer_params"]
        for group, (length, points) in PREFIX_POINTS.items():
            np.testing.assert_allclose(handle[group]["t"][...], np.linspace(0, length, points))
            assert handle[group]["pH"].shape == (n, points)
            assert handle[group]["pH"].dtype == np.float32
            assert handle[group].attrs["prefix_length"] == length
        trajectory = handle["trajectory"]
        np.testing.assert_allclose(trajectory["t"][...], np.linspace(0, 100, 21))
        assert trajectory["pH_true"].shape == trajectory["pH_measured"].shape == (n, 21)


def test_parameters_lie_in_their_ranges_and_targets_copy_the_latents(noisy_path):
    arrays = all_arrays(noisy_path)
    ranges = resolve_dataset_config(SMALL)["param_ranges"]
    for data, names in ((arrays["known"], KNOWN_NAMES), (arrays["latent"], LATENT_NAMES)):
        for name in names:
            low, high = ranges[name]
            assert np.all((column(data, names, name) >= low) & (column(data, names, name) <= high))
    np.testing.assert_array_equal(arrays["targets"], arrays["latent"])


def test_readings_equal_the_measurement_model_at_the_prefix_times(noiseless_path):
    arrays = all_arrays(noiseless_path)
    known, latent = arrays["known"], arrays["latent"]
    conditions = true_conditions(known, latent)
    tau = column(latent, LATENT_NAMES, "tau_probe")
    offset = column(latent, LATENT_NAMES, "pH_offset")
    for group, (length, points) in PREFIX_POINTS.items():
        t = np.linspace(0, length, points)
        expected = measure(conditions, t, tau_probe=tau, pH_offset=offset, add_noise=False)
        np.testing.assert_allclose(arrays[f"{group}/pH"], expected, atol=5e-5)
    t = np.linspace(0, 100, 21)
    np.testing.assert_allclose(arrays["trajectory/pH_true"], simulate(conditions, t), atol=1e-5)
    expected = measure(conditions, t, tau_probe=tau, pH_offset=offset, add_noise=False)
    np.testing.assert_allclose(arrays["trajectory/pH_measured"], expected, atol=5e-5)


def test_measured_initial_pH_is_true_pH0_plus_offset(noiseless_path):
    arrays = all_arrays(noiseless_path)
    measured = column(arrays["known"], KNOWN_NAMES, "initial_pH")
    offset = column(arrays["latent"], LATENT_NAMES, "pH_offset")
    assert np.ptp(offset) > 0.05  # offsets really vary
    for group in PREFIX_POINTS:
        np.testing.assert_allclose(arrays[f"{group}/pH"][:, 0], measured, atol=1e-6)
    np.testing.assert_allclose(arrays["trajectory/pH_true"][:, 0], measured - offset, atol=1e-6)


def test_noise_is_the_only_difference_between_noisy_and_noiseless(noisy_path, noiseless_path):
    noisy, clean = all_arrays(noisy_path), all_arrays(noiseless_path)
    for name in ("known", "latent", "targets", "trajectory/pH_true"):
        np.testing.assert_array_equal(noisy[name], clean[name])
    residual = np.concatenate([(noisy[f"{g}/pH"] - clean[f"{g}/pH"]).ravel()
                               for g in PREFIX_POINTS])
    assert residual.std() == pytest.approx(0.01, rel=0.05)
    assert abs(residual.mean()) < 1e-3


def test_same_seed_same_arrays_for_any_worker_count(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "_CHUNK_SIZE", 16)  # 50 cases → 4 chunks
    config = {**SMALL, "n_samples": 50}
    runs = [all_arrays(generate_dataset(config, tmp_path / f"w{workers}.h5", workers=workers,
                                        progress=False))
            for workers in (1, 2, 3)]
    for run in runs[1:]:
        assert run.keys() == runs[0].keys()
        for name in run:
            np.testing.assert_array_equal(run[name], runs[0][name], err_msg=name)
    other_seed = all_arrays(generate_dataset({**config, "seed": 12}, tmp_path / "s.h5",
                                             workers=2, progress=False))
    assert not np.array_equal(other_seed["latent"], runs[0]["latent"])
    # Each chunk has its own stream: no two chunks repeat the same draws.
    assert len(np.unique(runs[0]["latent"][:, 0])) == 50


def test_generation_off_the_main_thread_gives_the_same_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "_CHUNK_SIZE", 16)
    config = {**SMALL, "n_samples": 50}
    main_thread = all_arrays(generate_dataset(config, tmp_path / "a.h5", workers=2,
                                              progress=False))
    worker = threading.Thread(target=generate_dataset, args=(config, tmp_path / "b.h5"),
                              kwargs={"workers": 2, "progress": False})
    worker.start()
    worker.join()
    other_thread = all_arrays(tmp_path / "b.h5")
    for name in main_thread:
        np.testing.assert_array_equal(other_thread[name], main_thread[name], err_msg=name)


def test_load_prefix_returns_float32_arrays_for_one_length(noisy_path):
    arrays = all_arrays(noisy_path)
    data = load_prefix(noisy_path, 30)
    assert data.t.shape == data.pH.shape == (40, 60)
    assert data.t.dtype == data.pH.dtype == np.float32
    np.testing.assert_allclose(data.t, np.tile(np.linspace(0, 30, 60), (40, 1)), rtol=1e-7)
    np.testing.assert_array_equal(data.pH, arrays["prefix_30s/pH"])
    np.testing.assert_array_equal(data.known, arrays["known"])
    np.testing.assert_array_equal(data.targets, arrays["targets"])
    np.testing.assert_array_equal(data.latent, arrays["latent"])
    assert data.known_names == KNOWN_NAMES and data.latent_names == LATENT_NAMES
    assert data.target_names == tuple(SMALL["infer_params"])
    assert data.config == resolve_dataset_config(SMALL)
    assert data.prefix_length == 30.0
    assert load_prefix(noisy_path, 2.5).pH.shape == (40, 20)
    with pytest.raises(AttributeError):
        data.pH = None


def test_load_trajectories(noisy_path):
    arrays = all_arrays(noisy_path)
    data = load_trajectories(noisy_path)
    np.testing.assert_array_equal(data.t, np.linspace(0, 100, 21))
    np.testing.assert_array_equal(data.pH_true, arrays["trajectory/pH_true"])
    np.testing.assert_array_equal(data.pH_measured, arrays["trajectory/pH_measured"])
    assert data.known.shape == (40, 5) and data.latent_names == LATENT_NAMES


def test_missing_prefix_length_lists_the_available_ones(noisy_path):
    with pytest.raises(EiKerasError, match=r"no prefix of length 60.*2\.5, 10, 30"):
        load_prefix(noisy_path, 60)


def test_describe_dataset_summarises_the_file(noisy_path):
    text = describe_dataset(noisy_path)
    for expected in ("samples:     40 (seed 11)", "2.5 s × 20 points", "30 s × 60 points",
                     "21 times on [0, 100] s", "activity, k_d, tau_probe, pH_offset",
                     "tau_probe", "[0, 30]", '"seed": 11'):
        assert expected in text


def write_foreign_hdf5(path):
    with h5py.File(path, "w") as handle:
        handle["x"] = np.arange(3)


def write_truncated_copy(path, source):
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_incomplete_dataset(path, source):
    path.write_bytes(source.read_bytes())
    with h5py.File(path, "a") as handle:
        del handle["known"]


@pytest.mark.parametrize("make_file, expected", [
    (lambda path, source: path.write_bytes(b"\x00garbage" * 100), "not an HDF5 file"),
    (write_truncated_copy, "not an HDF5 file, or a corrupt one"),
    (lambda path, source: write_foreign_hdf5(path), "not an ei_keras dataset"),
    (write_incomplete_dataset, "corrupt or incomplete"),
    (lambda path, source: None, "no such file"),
])
@pytest.mark.parametrize("load", [lambda p: load_prefix(p, 30), load_trajectories,
                                  describe_dataset])
def test_bad_files_raise_a_clear_error(tmp_path, noisy_path, make_file, expected, load):
    path = tmp_path / "bad.h5"
    make_file(path, noisy_path)
    with pytest.raises(EiKerasError, match=expected):
        load(path)


REAL_CHUNK = generate_module._simulate_chunk


def interrupt_second_chunk(task):
    if task[1] > 0:
        raise KeyboardInterrupt
    return REAL_CHUNK(task)


def fail_second_chunk(task):
    if task[1] > 0:
        raise RuntimeError("worker failed")
    return REAL_CHUNK(task)


@pytest.mark.parametrize("workers, chunk, error", [
    (1, interrupt_second_chunk, KeyboardInterrupt),
    (2, fail_second_chunk, RuntimeError),
])
def test_interrupted_run_leaves_the_existing_file_untouched(tmp_path, monkeypatch, workers,
                                                            chunk, error):
    path = tmp_path / "data.h5"
    path.write_bytes(b"an earlier, good dataset")
    monkeypatch.setattr(generate_module, "_CHUNK_SIZE", 16)
    monkeypatch.setattr(generate_module, "_simulate_chunk", chunk)
    with pytest.raises(error):
        generate_dataset({**SMALL, "n_samples": 50}, path, workers=workers, progress=False)
    assert path.read_bytes() == b"an earlier, good dataset"
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]


def test_invalid_config_writes_nothing(tmp_path):
    with pytest.raises(EiKerasError, match="Number of samples: got -5"):
        generate_dataset({"n_samples": -5}, tmp_path / "sub" / "data.h5")
    assert list(tmp_path.iterdir()) == []
