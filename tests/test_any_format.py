"""Any-format readings (issue 8): per-sample prefix length and interval, per-case times in
the simulator, the any_format/ HDF5 group, its loader, config checks and CLI flags."""

import json

import h5py
import numpy as np
import pytest

import ei_keras.data.generate as generate_module
from ei_keras import EiKerasError, generate_dataset, load_any_format, load_prefix, simulate
from ei_keras.cli import main
from ei_keras.config import resolve_dataset_config
from ei_keras.data import describe_dataset
from ei_keras.data.generate import MAX_JITTER, sample_any_format_times
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.measurement import measure, probe_response
from ei_keras.simulation.priors import sample_priors, simulator_conditions
from h5_contents import all_arrays

FORMATS = {"enabled": True, "prefix_length_s": [2.0, 120.0], "max_readings": 150,
           "timing_jitter": 0.3, "drop_fraction": 0.2}
SMALL = {"n_samples": 60, "seed": 5, "t_max": 100, "n_times": 11, "prefix_lengths": [10],
         "prefix_n_points": 10, "any_format": FORMATS}
NOISELESS = {**SMALL, "measurement_model": {"add_noise": False}}
GRID = {"sampling": "grid", "prefix_length_s": [10, 30, 60, 120, 300, 600],
        "reading_interval_s": [0.5, 1, 2, 5], "min_readings": 3, "max_readings": 1201,
        "timing_jitter": 0.0, "drop_fraction": 0.0}


@pytest.fixture(scope="module")
def noisy_path(tmp_path_factory):
    return generate_dataset(SMALL, tmp_path_factory.mktemp("af") / "d.h5", progress=False)


@pytest.fixture(scope="module")
def noiseless_path(tmp_path_factory):
    return generate_dataset(NOISELESS, tmp_path_factory.mktemp("afc") / "d.h5",
                            progress=False)


def settings(**changes):
    return {**resolve_dataset_config({"any_format": {"enabled": True}})["any_format"], **changes}


def random_cases(n, seed=0):
    samples = sample_priors(np.random.default_rng(seed), n)
    return simulator_conditions(samples), samples["tau_probe"]


def padded_times(n, width, seed=1):
    """(n, width) sorted random times in [0, 600] s, NaN after a random length (0 … width)."""
    rng = np.random.default_rng(seed)
    t = np.full((n, width), np.nan)
    lengths = rng.integers(0, width + 1, n)
    for row, length in enumerate(lengths):
        t[row, :length] = np.sort(rng.uniform(0, 600, length))
    t[0, :4] = [0.0, 0.0, 1e-9, 3000.0]  # repeated times, a tiny one, one past the others
    lengths[0] = max(lengths[0], 4)
    t[0, :lengths[0]] = np.sort(t[0, :lengths[0]])
    return t, lengths


# --- per-case times in the simulator and the measurement model --------------------------

def test_per_case_times_in_simulate_equal_one_case_at_a_time():
    conditions, _ = random_cases(70)  # more than one chunk of simulator cases
    t, lengths = padded_times(70, 30)
    per_case = simulate(conditions, t, totals=True)
    for row, length in enumerate(lengths):
        one = simulate({k: v[row] for k, v in conditions.items()}, t[row, :length], totals=True)
        for key in ("pH", "S", "N", "C"):
            np.testing.assert_allclose(per_case[key][row, :length], one[key][0], rtol=0,
                                       atol=1e-12, err_msg=key)
            assert np.all(np.isnan(per_case[key][row, length:]))


def test_per_case_times_in_probe_response_and_measure_equal_one_case_at_a_time():
    conditions, tau = random_cases(40, seed=3)
    tau[:3] = 0.0  # some cases without lag
    t, lengths = padded_times(40, 25, seed=4)
    true_pH, lagged = probe_response(conditions, t, tau_probe=tau)
    measured = measure(conditions, t, tau_probe=tau, pH_offset=0.05, add_noise=False)
    for row, length in enumerate(lengths):
        one = {k: v[row] for k, v in conditions.items()}
        true_one, lagged_one = probe_response(one, t[row, :length] if length else [0.0],
                                              tau_probe=tau[row])
        if length:
            np.testing.assert_allclose(true_pH[row, :length], true_one[0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(lagged[row, :length], lagged_one[0], rtol=0, atol=1e-12)
            np.testing.assert_allclose(measured[row, :length], lagged_one[0] + 0.05, atol=1e-12)
        for values in (true_pH, lagged, measured):
            assert np.all(np.isnan(values[row, length:]))
    # No lag anywhere: the shortcut path pads with NaN alike.
    no_lag = probe_response(conditions, t, tau_probe=0.0)[1]
    np.testing.assert_array_equal(np.isnan(no_lag), np.isnan(t))


@pytest.mark.parametrize("t, message", [
    ([[0.0, np.nan, 1.0]], "only as padding"),
    ([[0.0, 2.0, 1.0]], r"row 0 must be non-decreasing"),
    ([[0.0, np.inf]], "infinite"),
    ([[-1.0, 0.0]], ">= 0"),
    ([[0.0, 1.0], [0.0, 1.0]], "2 rows but there are 1 cases"),
    ([[[0.0]]], "2-D"),
])
def test_bad_per_case_times_are_rejected(t, message):
    conditions = {k: v[0] for k, v in random_cases(1)[0].items()}
    with pytest.raises(EiKerasError, match=message):
        simulate(conditions, t)
    with pytest.raises(EiKerasError, match=message):
        probe_response(conditions, t, tau_probe=1.0)


# --- drawing the formats -----------------------------------------------------------------

def test_readings_at_multiples_of_the_interval_up_to_the_length():
    grid = {**GRID, "prefix_length_s": [30.0], "reading_interval_s": [0.1]}
    formats = sample_any_format_times(np.random.default_rng(0), 5, grid)
    assert np.all(formats["length"] == 301)  # 30 / 0.1 rounds below 300 in floating point
    np.testing.assert_array_equal(formats["t"][:, :301],
                                  np.tile(np.float32(np.arange(301) * 0.1), (5, 1)))
    assert np.all(formats["t"][:, 300] == 30.0)
    np.testing.assert_array_equal(formats["reading_interval"], 0.1)


@pytest.mark.parametrize("length, interval, count, effective", [
    (2.0, 10.0, 3, 1.0),      # too few readings: the interval is lowered
    (600.0, 0.1, 1201, 0.5),  # too many: the interval is raised to fit max_readings
    (600.0, 0.5, 1201, 0.5),
    (10.0, 3.0, 4, 3.0),      # 0, 3, 6, 9
])
def test_min_and_max_readings_change_the_interval(length, interval, count, effective):
    grid = {**GRID, "prefix_length_s": [length], "reading_interval_s": [interval]}
    formats = sample_any_format_times(np.random.default_rng(0), 3, grid)
    assert np.all(formats["length"] == count)
    np.testing.assert_allclose(formats["reading_interval"], effective, rtol=1e-12)
    np.testing.assert_allclose(formats["t"][:, :count],
                               np.tile(np.arange(count) * effective, (3, 1)), rtol=1e-6)


def test_grid_sampling_uses_only_the_listed_values_and_all_cells():
    formats = sample_any_format_times(np.random.default_rng(1), 300, GRID)
    cells = set(zip(formats["prefix_length"], formats["reading_interval"]))
    expected = {(length, interval) for length in GRID["prefix_length_s"]
                for interval in GRID["reading_interval_s"]}
    assert cells == expected  # no cell hits max_readings here: 600 s / 0.5 s = 1201


def test_log_uniform_sampling_covers_its_ranges_in_log_space():
    formats = sample_any_format_times(np.random.default_rng(2), 300, settings())
    lengths = formats["prefix_length"]
    assert lengths.min() >= 2.0 * (1 - 1e-7) and lengths.max() <= 600.0 * (1 + 1e-7)
    # log-uniform: about half of the draws below the geometric mean
    assert abs(np.mean(lengths < np.sqrt(2.0 * 600.0)) - 0.5) < 0.1
    np.testing.assert_array_equal(lengths, lengths.astype(np.float32))


@pytest.mark.parametrize("changes", [
    {},
    {"timing_jitter": 0.3},
    {"timing_jitter": 5.0, "drop_fraction": 0.5},
    {"drop_fraction": 0.95, "min_readings": 5, "max_readings": 40},
])
def test_times_are_padded_strictly_increasing_and_within_the_prefix(changes):
    chosen = settings(**changes)
    formats = sample_any_format_times(np.random.default_rng(3), 300, chosen)
    t, count = formats["t"], formats["length"]
    assert t.shape == (300, chosen["max_readings"])
    assert np.all((count >= chosen["min_readings"]) & (count <= chosen["max_readings"]))
    np.testing.assert_array_equal(np.isnan(t), np.arange(t.shape[1]) >= count[:, None])
    assert np.all(t[:, 0] == 0.0)
    steps = np.diff(t, axis=1)
    assert np.all(steps[~np.isnan(steps)] > 0)
    last = t[np.arange(300), count - 1]
    assert np.all(last <= formats["prefix_length"])
    np.testing.assert_array_equal(t[~np.isnan(t)], t[~np.isnan(t)].astype(np.float32))
    if not changes:  # no jitter, no drops: exactly floor(L / dt) + 1 readings
        whole = np.floor(formats["prefix_length"] / formats["reading_interval"] + 1e-9) + 1
        assert np.all((count == whole) | (count == chosen["max_readings"])
                      | (count == chosen["min_readings"]))
    if changes.get("drop_fraction"):
        assert count.mean() < 0.9 * sample_any_format_times(
            np.random.default_rng(3), 300, settings(**{**changes, "drop_fraction": 0.0})
        )["length"].mean()


def test_jitter_moves_times_by_less_than_half_an_interval():
    chosen = settings(timing_jitter=1.0, max_readings=200)
    jittered = sample_any_format_times(np.random.default_rng(4), 100, chosen)
    t, interval = jittered["t"], jittered["reading_interval"][:, None]
    moved = np.abs(t - np.arange(200) * interval)
    read = ~np.isnan(t)
    rounding = np.spacing(np.float32(np.nan_to_num(t)))  # times are stored as float32
    assert np.all((moved <= MAX_JITTER * interval + rounding)[read])
    assert np.std((moved / interval)[read]) > 0.1


# --- the any_format/ group ---------------------------------------------------------------

def test_layout_and_padding(noisy_path):
    n, width = SMALL["n_samples"], FORMATS["max_readings"]
    with h5py.File(noisy_path, "r") as handle:
        assert set(handle) == {"known", "latent", "targets", "trajectory", "prefix_10s",
                               "any_format"}
        group = handle["any_format"]
        assert group.attrs["max_readings"] == width
        assert "prefix_length" not in group.attrs  # not taken for a prefix group
        assert resolve_dataset_config(SMALL)["any_format"] == json.loads(
            group.attrs["config"])
        for name in ("t", "pH"):
            assert group[name].shape == (n, width) and group[name].dtype == np.float32
            assert group[name].compression == "lzf" and group[name].chunks[1] == width
        assert group["length"].dtype == np.int32 and group["length"].shape == (n,)
        assert group["prefix_length"].dtype == group["reading_interval"].dtype == np.float64
        t, pH, count = group["t"][...], group["pH"][...], group["length"][...]
        lengths = group["prefix_length"][...]
    padding = np.arange(width) >= count[:, None]
    np.testing.assert_array_equal(np.isnan(t), padding)
    np.testing.assert_array_equal(np.isnan(pH), padding)
    assert np.all((count >= 3) & (count <= width))
    assert np.all(t[:, 0] == 0) and np.all(t[np.arange(n), count - 1] <= lengths)
    assert np.all(np.diff(t, axis=1)[~padding[:, 1:]] > 0)
    assert np.all((lengths >= 2.0 * (1 - 1e-7)) & (lengths <= 120.0 * (1 + 1e-7)))
    assert np.all((pH[~padding] > 6) & (pH[~padding] < 10.5))


def test_readings_equal_an_independent_measurement_at_their_own_times(noiseless_path):
    arrays = all_arrays(noiseless_path)
    known, latent = arrays["known"], arrays["latent"]
    offset, tau = latent[:, LATENT_NAMES.index("pH_offset")], latent[:, LATENT_NAMES.index(
        "tau_probe")]
    count = arrays["any_format/length"]
    for row in range(len(known)):
        conditions = {name: known[row, i] for i, name in enumerate(KNOWN_NAMES)}
        conditions["initial_pH"] -= offset[row]
        conditions["activity"] = latent[row, LATENT_NAMES.index("activity")]
        conditions["k_d"] = latent[row, LATENT_NAMES.index("k_d")]
        times = arrays["any_format/t"][row, :count[row]].astype(np.float64)
        expected = measure(conditions, times, tau_probe=tau[row], pH_offset=offset[row],
                           add_noise=False)[0]
        np.testing.assert_allclose(arrays["any_format/pH"][row, :count[row]], expected,
                                   rtol=2**-23, atol=0, err_msg=f"sample {row}")
    initial = known[:, KNOWN_NAMES.index("initial_pH")]
    np.testing.assert_allclose(arrays["any_format/pH"][:, 0], initial, rtol=2**-23)


def test_noise_is_added_to_the_readings_only(noisy_path, noiseless_path):
    noisy, clean = all_arrays(noisy_path), all_arrays(noiseless_path)
    for name in ("t", "length", "prefix_length", "reading_interval"):
        np.testing.assert_array_equal(noisy[f"any_format/{name}"], clean[f"any_format/{name}"])
    residual = noisy["any_format/pH"] - clean["any_format/pH"]
    residual = residual[~np.isnan(residual)]
    assert residual.std() == pytest.approx(0.01, rel=0.05)


def test_same_seed_same_arrays_for_any_worker_count(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "_CHUNK_SIZE", 16)  # 50 cases → 4 chunks
    config = {**SMALL, "n_samples": 50}
    runs = [all_arrays(generate_dataset(config, tmp_path / f"w{workers}.h5", workers=workers,
                                        progress=False))
            for workers in (1, 2)]
    assert runs[0].keys() == runs[1].keys()
    for name in runs[0]:
        np.testing.assert_array_equal(runs[1][name], runs[0][name], err_msg=name)
    other = all_arrays(generate_dataset({**config, "seed": 6}, tmp_path / "s.h5", workers=1,
                                        progress=False))
    assert not np.array_equal(other["any_format/prefix_length"],
                              runs[0]["any_format/prefix_length"])
    # Each chunk draws its own formats.
    assert len(np.unique(runs[0]["any_format/prefix_length"])) == 50


def test_other_groups_are_unchanged_by_switching_any_format_on(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "_CHUNK_SIZE", 16)
    config = {**SMALL, "n_samples": 40}
    on = all_arrays(generate_dataset(config, tmp_path / "on.h5", workers=1, progress=False))
    off = all_arrays(generate_dataset({**config, "any_format": {"enabled": False}},
                                      tmp_path / "off.h5", workers=1, progress=False))
    assert set(on) - set(off) == {f"any_format/{name}" for name in
                                  ("t", "pH", "length", "prefix_length", "reading_interval")}
    for name in off:
        np.testing.assert_array_equal(on[name], off[name], err_msg=name)


def test_only_any_format_without_fixed_prefixes(tmp_path):
    config = {**SMALL, "n_samples": 20, "prefix_lengths": []}
    path = generate_dataset(config, tmp_path / "only.h5", workers=1, progress=False)
    with h5py.File(path, "r") as handle:
        assert set(handle) == {"known", "latent", "targets", "trajectory", "any_format"}
    text = describe_dataset(path)
    assert "prefixes:    none" in text and "any format:  L " in text
    assert load_any_format(path).pH.shape == (20, 150)


# --- loading -----------------------------------------------------------------------------

def test_load_any_format(noisy_path):
    arrays = all_arrays(noisy_path)
    data = load_any_format(noisy_path)
    assert data.t.dtype == data.pH.dtype == np.float32
    np.testing.assert_array_equal(data.t, arrays["any_format/t"])
    np.testing.assert_array_equal(data.pH, arrays["any_format/pH"])
    np.testing.assert_array_equal(data.lengths, arrays["any_format/length"])
    np.testing.assert_array_equal(data.sample_prefix_lengths, arrays["any_format/prefix_length"])
    np.testing.assert_array_equal(data.sample_reading_intervals,
                                  arrays["any_format/reading_interval"])
    np.testing.assert_array_equal(data.known, arrays["known"])
    np.testing.assert_array_equal(data.targets, arrays["targets"])
    assert data.prefix_length == arrays["any_format/prefix_length"].max()
    assert data.config == resolve_dataset_config(SMALL)
    fixed = load_prefix(noisy_path, 10)
    assert fixed.lengths is None and fixed.sample_prefix_lengths is None
    assert fixed.sample_reading_intervals is None


def test_describe_dataset_mentions_the_any_format_group(noisy_path):
    line = [line for line in describe_dataset(noisy_path).splitlines()
            if line.startswith("  any format:")]
    assert len(line) == 1
    assert "readings" in line[0] and "padded to 150" in line[0] and "log-uniform" in line[0]


def test_file_without_any_format_gives_a_clear_error(tmp_path):
    path = generate_dataset({"n_samples": 5, "prefix_lengths": [10], "prefix_n_points": 5,
                             "n_times": 5}, tmp_path / "fixed.h5", workers=1, progress=False)
    with pytest.raises(EiKerasError, match="no any-format readings.*--any-format"):
        load_any_format(path)
    assert "any format" not in describe_dataset(path)


# --- config and command line -------------------------------------------------------------

@pytest.mark.parametrize("partial, label, shown, allowed", [
    ({"enabled": "yes"}, "Also any-format traces", "'yes'", "true or false"),
    ({"sampling": "uniform"}, "Format sampling", "'uniform'", "'grid'"),
    ({"prefix_length_s": [600, 2]}, "Any-format prefix lengths [s]", "[600, 2]",
     "0 < low <= high"),
    ({"prefix_length_s": [0, 2]}, "Any-format prefix lengths [s]", "[0, 2]", "0 < low"),
    ({"reading_interval_s": [0.1, 1, 10]}, "Any-format reading intervals [s]", "[0.1, 1, 10]",
     "[low, high]"),
    ({"sampling": "grid", "reading_interval_s": []}, "Any-format reading intervals [s]", "[]",
     "non-empty"),
    ({"sampling": "grid", "prefix_length_s": [10, 10]}, "Any-format prefix lengths [s]",
     "[10, 10]", "distinct"),
    ({"min_readings": 1}, "Fewest readings per trace", "1", ">= 2"),
    ({"max_readings": 2}, "Most readings per trace", "2", "from Fewest readings per trace (3)"),
    ({"max_readings": 10**6}, "Most readings per trace", "1000000", "<= 20000"),
    ({"timing_jitter": -0.1}, "Timing jitter", "-0.1", ">= 0"),
    ({"drop_fraction": 1.0}, "Dropped readings", "1.0", ">= 0 and < 1"),
])
def test_bad_any_format_config_gives_a_one_line_error(partial, label, shown, allowed):
    with pytest.raises(EiKerasError) as error:
        resolve_dataset_config({"any_format": partial})
    message = str(error.value)
    assert message.startswith(f"{label}: got ")
    assert shown in message and allowed in message and "\n" not in message


def test_unknown_any_format_key_is_named():
    with pytest.raises(EiKerasError, match="'any_format.dt': unknown key; .*prefix_length_s"):
        resolve_dataset_config({"any_format": {"dt": 1}})


def test_no_fixed_prefixes_only_with_any_format():
    with pytest.raises(EiKerasError, match="empty only with any-format traces"):
        resolve_dataset_config({"prefix_lengths": []})
    config = resolve_dataset_config({"prefix_lengths": [], "any_format": {"enabled": True}})
    assert config["prefix_lengths"] == []
    grid = resolve_dataset_config({"any_format": {"sampling": "grid", "prefix_length_s": [60, 10]}})
    assert grid["any_format"]["prefix_length_s"] == [10.0, 60.0]
    assert resolve_dataset_config(grid) == grid


def test_cli_flags_set_the_any_format_config(tmp_path, capsys):
    out = tmp_path / "grid.h5"
    code = main(["generate", "--out", str(out), "--n-samples", "30", "--seed", "2",
                 "--prefix-lengths", "--n-times", "5", "--any-format", "--format-grid",
                 "--prefix-range", "10", "30", "--interval-range", "0.5", "2",
                 "--timing-jitter", "0.1", "--drop-fraction", "0.1", "--max-readings", "50",
                 "--workers", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "any format:" in capsys.readouterr().out
    data = load_any_format(out)
    assert data.config["prefix_lengths"] == []
    assert data.config["any_format"] == {
        "enabled": True, "prefix_length_s": [10.0, 30.0], "reading_interval_s": [0.5, 2.0],
        "sampling": "grid", "min_readings": 3, "max_readings": 50, "timing_jitter": 0.1,
        "drop_fraction": 0.1}
    assert set(data.sample_prefix_lengths) <= {10.0, 30.0}
    assert data.pH.shape == (30, 50)


@pytest.mark.parametrize("flags, expected", [
    (["--prefix-range", "1", "2"], "--prefix-range needs --any-format"),
    (["--format-grid"], "--format-grid needs --any-format"),
    (["--any-format", "--prefix-range", "1", "2", "3"],
     "Any-format prefix lengths [s]: got [1.0, 2.0, 3.0]"),
    (["--any-format", "--drop-fraction", "1.5"], "Dropped readings: got 1.5"),
    (["--any-format", "--max-readings", "2"], "Most readings per trace: got 2"),
    (["--prefix-lengths"], "Prefix lengths [s]: got []"),
])
def test_cli_errors_are_one_line_and_leave_no_file(tmp_path, capsys, flags, expected):
    out = tmp_path / "data.h5"
    code = main(["generate", "--out", str(out), "--n-samples", "5", "--no-progress", *flags])
    stderr = capsys.readouterr().err
    assert code == 2
    assert expected in stderr and stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
