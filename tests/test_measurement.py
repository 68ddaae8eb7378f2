"""Measurement model: exact probe lag, offset on every reading, seeded noise, prefixes."""

import numpy as np
import pytest

from ei_keras import EiKerasError, get_adaptive_prefix_n_points, simulate
from ei_keras.simulation.measurement import (
    SCAN_CASES,
    add_offset_and_noise,
    measure,
    prefix_times,
    probe_response,
)

# (conditions with the true pH0, tau_probe): a pH jump of ~2 units within milliseconds
# (E0 = 5 g/L), the physics.md §9 rows (one with deactivation) and a slow rise.
CASES = [
    (dict(substrate_mM=20, grams_urease_powder=0.5, volume_L=0.1, temperature_C=40,
          initial_pH=7.0, activity=1.0, k_d=0.0), 0.05),
    (dict(substrate_mM=20, grams_urease_powder=0.5, volume_L=0.1, temperature_C=40,
          initial_pH=7.0, activity=1.0, k_d=0.0), 3.0),
    (dict(substrate_mM=20, grams_urease_powder=0.1, volume_L=0.2, temperature_C=40,
          initial_pH=7.36, activity=1.0, k_d=0.0), 30.0),
    (dict(substrate_mM=50, grams_urease_powder=0.05, volume_L=0.5, temperature_C=25,
          initial_pH=7.0, activity=0.05, k_d=1e-3), 10.0),
    (dict(substrate_mM=5, grams_urease_powder=0.2, volume_L=1.0, temperature_C=30,
          initial_pH=6.8, activity=0.002, k_d=0.0), 1.0),
]
TIMES = np.array([0.0, 0.5, 2.0, 10.0, 30.0, 120.0, 300.0])


def convolution_reference(conditions, times, tau):
    """y(t) = pH0 e^{-t/tau} + (1/tau) ∫0^t pH(s) e^{-(t-s)/tau} ds by Gauss–Legendre.

    Independent of the model's recursion: the true pH is simulated at every quadrature
    node, on intervals refined geometrically at s = 0 (the pH jump) and s = t (the kernel).
    """
    nodes, weights = np.polynomial.legendre.leggauss(8)
    values = []
    for t in times:
        if t == 0:
            values.append(conditions["initial_pH"])
            continue
        fine = np.geomspace(1e-8, t, 400)
        edges = np.unique(np.concatenate([[0.0, t], fine, t - fine]))
        edges = edges[(edges >= 0) & (edges <= t)]
        middle, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
        s = (middle[:, None] + half[:, None] * nodes).ravel()
        w = (half[:, None] * weights).ravel()
        pH = simulate(conditions, s)[0]
        integral = np.sum(w * pH * np.exp(-(t - s) / tau)) / tau
        values.append(conditions["initial_pH"] * np.exp(-t / tau) + integral)
    return np.array(values)


@pytest.mark.parametrize("conditions, tau", CASES)
def test_probe_lag_matches_convolution_reference(conditions, tau):
    true_pH, lagged = probe_response(conditions, TIMES, tau_probe=tau)
    reference = convolution_reference(conditions, TIMES, tau)
    np.testing.assert_allclose(lagged[0], reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(true_pH[0], simulate(conditions, TIMES)[0], atol=1e-12)


def test_probe_lag_batch_matches_one_by_one():
    batch = {key: np.array([c[key] for c, _ in CASES]) for key in CASES[0][0]}
    taus = np.array([tau for _, tau in CASES])
    _, lagged = probe_response(batch, TIMES, tau_probe=taus)
    for row, (conditions, tau) in enumerate(CASES):
        _, single = probe_response(conditions, TIMES, tau_probe=tau)
        np.testing.assert_allclose(lagged[row], single[0], atol=1e-12)


def test_the_lag_scan_for_few_cases_equals_the_node_by_node_recurrence():
    """Up to SCAN_CASES cases the lag runs as a prefix scan; more run node by node. The same
    cases in a batch past the limit (node by node) and in one under it (scan) agree."""
    many = SCAN_CASES + 1
    pick = np.arange(many) % len(CASES)
    batch = {key: np.array([CASES[i][0][key] for i in pick]) for key in CASES[0][0]}
    taus = np.array([CASES[i][1] for i in pick]) * np.linspace(0.5, 2.0, many)
    taus[3] = 0.0  # no lag, in both paths
    t = np.linspace(0.0, 600.0, 301)
    _, node_by_node = probe_response(batch, t, tau_probe=taus)
    few = {key: values[:9] for key, values in batch.items()}
    _, scanned = probe_response(few, t, tau_probe=taus[:9])
    np.testing.assert_allclose(scanned, node_by_node[:9], atol=1e-12, rtol=0)
    np.testing.assert_array_equal(scanned[3], simulate(few, t)[3])


def test_cases_without_lag_read_the_true_pH_in_a_mixed_batch():
    batch = {key: np.array([CASES[0][0][key], CASES[2][0][key]]) for key in CASES[0][0]}
    t = np.concatenate([[0.0, 1e-4], TIMES[1:]])  # 1e-4 s is an internal grid node
    true_pH, lagged = probe_response(batch, t, tau_probe=[0.0, 30.0])
    np.testing.assert_array_equal(lagged[0], true_pH[0])
    np.testing.assert_allclose(lagged[1], probe_response(CASES[2][0], t, tau_probe=30.0)[1][0],
                               atol=1e-12)


def test_zero_lag_reads_the_true_pH():
    conditions, _ = CASES[0]
    true_pH, lagged = probe_response(conditions, TIMES, tau_probe=0.0)
    np.testing.assert_array_equal(lagged, simulate(conditions, TIMES))
    np.testing.assert_array_equal(true_pH, lagged)


@pytest.mark.parametrize("tau", [0.05, 3.0, 30.0])
def test_lag_response_does_not_depend_on_the_output_grid(tau):
    # The pH jumps ~2 units in the first 0.1 s: a lag integrated on the output grid alone
    # would be off by ~0.1 pH on the coarse grid.
    conditions, _ = CASES[0]
    readings = [
        probe_response(conditions, grid, tau_probe=tau)[1][0, -1]
        for grid in (np.linspace(0, 30, 10), np.linspace(0, 30, 1000), np.array([30.0]))
    ]
    np.testing.assert_allclose(readings, readings[0], atol=1e-12, rtol=0)


def test_offset_is_added_to_every_reading_including_the_initial_one():
    conditions, tau = CASES[3]
    t = np.linspace(0, 60, 50)
    without = measure(conditions, t, tau_probe=tau, pH_offset=0.0, add_noise=False)
    shifted = measure(conditions, t, tau_probe=tau, pH_offset=-0.07, add_noise=False)
    np.testing.assert_allclose(shifted - without, -0.07, atol=1e-12)
    assert shifted[0, 0] == pytest.approx(conditions["initial_pH"] - 0.07, abs=1e-12)


def test_per_case_offsets_apply_row_by_row():
    pH = np.full((3, 4), 7.0)
    readings = add_offset_and_noise(pH, pH_offset=[0.1, 0.0, -0.1], noise_std=0.01,
                                    add_noise=False)
    np.testing.assert_allclose(readings, [[7.1] * 4, [7.0] * 4, [6.9] * 4])


def test_noise_is_gaussian_independent_and_seeded():
    pH = np.full((200, 500), 7.0)
    noisy = add_offset_and_noise(pH, pH_offset=0.0, noise_std=0.01,
                                 rng=np.random.default_rng(3))
    residual = noisy - 7.0
    assert residual.std() == pytest.approx(0.01, rel=0.01)
    assert abs(residual.mean()) < 1e-4
    lag_one = np.corrcoef(residual[:, 1:].ravel(), residual[:, :-1].ravel())[0, 1]
    assert abs(lag_one) < 0.02
    again = add_offset_and_noise(pH, pH_offset=0.0, noise_std=0.01,
                                 rng=np.random.default_rng(3))
    other = add_offset_and_noise(pH, pH_offset=0.0, noise_std=0.01,
                                 rng=np.random.default_rng(4))
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(noisy, other)


def test_noise_needs_an_explicit_generator():
    with pytest.raises(EiKerasError, match="numpy.random.Generator"):
        add_offset_and_noise(np.zeros((1, 3)), pH_offset=0.0, noise_std=0.01)


@pytest.mark.parametrize("bad", [dict(tau_probe=-1.0), dict(tau_probe=[1.0, 2.0])])
def test_bad_probe_constants_are_rejected(bad):
    with pytest.raises(EiKerasError, match="tau_probe"):
        probe_response(CASES[0][0], TIMES, **bad)


def test_unsorted_times_are_rejected():
    with pytest.raises(EiKerasError, match="non-decreasing"):
        probe_response(CASES[0][0], [0.0, 2.0, 1.0], tau_probe=1.0)


@pytest.mark.parametrize("length, base, dt, expected", [
    (10, 100, 0.3, 100), (30, 100, 0.3, 100), (60, 100, 0.3, 200), (300, 100, 0.3, 1000),
    (60, 250, 0.3, 250), (45, 10, 0.3, 150), (1, 2, 0.3, 3),
])
def test_adaptive_prefix_points(length, base, dt, expected):
    assert get_adaptive_prefix_n_points(length, base, dt) == expected


def test_prefix_times_are_evenly_spaced_on_the_closed_prefix():
    t = prefix_times(30, 100)
    assert t[0] == 0.0 and t[-1] == 30.0 and len(t) == 100
    np.testing.assert_allclose(np.diff(t), 30 / 99)
