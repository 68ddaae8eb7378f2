"""The simulator against physics.md §9, conservation, and an independent solve_ivp reference."""

import math

import numpy as np
import pytest

from ei_keras import EiKerasError, simulate
from ei_keras.simulation.chemistry import SimulationOptions, arrhenius_rate, ph_activity
from ei_keras.simulation.priors import sample_priors, simulator_conditions
from reference_solver import reference_pH

CHECK_TIMES = [0, 5, 10, 30, 60, 120, 300, 1000, 2000]
# physics.md §9: (S0 mM, m g, V L, T °C, pH0, a, k_d) -> pH at CHECK_TIMES
CHECK_ROWS = [
    ((20, 0.1, 0.2, 40, 7.36, 1.0, 0.0),
     [7.3600, 8.4383, 8.6275, 8.8688, 8.9804, 9.0617, 9.1291, 9.1705, 9.1808]),
    ((50, 0.05, 0.5, 25, 7.0, 0.05, 1e-3),
     [7.0000, 7.0472, 7.0924, 7.2510, 7.4278, 7.6490, 7.9494, 8.2595, 8.3603]),
    ((5, 0.2, 1.0, 30, 6.8, 0.002, 0.0),
     [6.8000, 6.8034, 6.8069, 6.8206, 6.8413, 6.8829, 7.0064, 7.3859, 7.6798]),
]
NAMES = ("substrate_mM", "grams_urease_powder", "volume_L", "temperature_C", "initial_pH",
         "activity", "k_d")


def as_conditions(rows):
    return {name: np.array([row[i] for row in rows], dtype=float) for i, name in enumerate(NAMES)}


def prior_draws(rng, n):
    """Simulator conditions drawn from the default priors (no probe offset)."""
    return simulator_conditions(sample_priors(rng, n, use_probe_lag=False, use_offset=False))


def test_check_values_of_physics_md():
    pH = simulate(as_conditions([row for row, _ in CHECK_ROWS]), CHECK_TIMES)
    expected = np.array([values for _, values in CHECK_ROWS])
    # The table is rounded to 4 decimals; the model itself is accurate to ~2e-5.
    np.testing.assert_allclose(pH, expected, atol=1e-4, rtol=0)


def test_total_ammonia_check_value():
    out = simulate(as_conditions([CHECK_ROWS[0][0]]), CHECK_TIMES, totals=True)
    assert out["N"][0, -1] * 1e3 == pytest.approx(2.02142, abs=2e-5)


def test_rate_constant_and_ph_activity_check_values():
    np.testing.assert_allclose(arrhenius_rate(np.array([20.0, 25.0, 40.0])),
                               [1.7425e-6, 2.1288e-6, 3.7354e-6], rtol=2e-4)
    defaults = SimulationOptions()
    assert ph_activity(7.0, 40.0, defaults) == pytest.approx(0.930, abs=5e-4)
    assert ph_activity(9.0, 40.0, defaults) == pytest.approx(0.676, abs=5e-4)
    assert ph_activity(7.0, 20.0, defaults) == pytest.approx(0.669, abs=5e-4)


def test_totals_conserve_mass():
    conditions = prior_draws(np.random.default_rng(3), 16)
    out = simulate(conditions, np.linspace(0, 2000, 41), totals=True)
    s0 = conditions["substrate_mM"][:, None] / 1000
    np.testing.assert_allclose(out["N"], 2 * (s0 - out["S"]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(out["C"], s0 - out["S"], rtol=0, atol=1e-15)
    assert np.all(out["S"] >= 0) and np.all(out["S"] <= s0)
    assert np.all(np.diff(out["N"], axis=1) >= 0)  # ammonia only accumulates


def test_batch_equals_one_by_one():
    conditions = prior_draws(np.random.default_rng(4), 150)  # spans several chunks
    t = np.linspace(0, 600, 31)
    batch = simulate(conditions, t)
    singles = np.vstack([simulate({k: v[i] for k, v in conditions.items()}, t)
                         for i in range(0, 150, 7)])
    np.testing.assert_allclose(batch[::7], singles, rtol=0, atol=1e-12)


def test_cases_sharing_their_table_are_tabulated_once_with_the_same_values(monkeypatch):
    """A fit's finite-difference neighbours share substrate, temperature and initial pH
    (all but the offset's): those are tabulated once, and every case's values are those it
    gets simulated alone, to the bit."""
    from ei_keras.simulation.simulator import TrajectoryTable

    base = prior_draws(np.random.default_rng(9), 1)
    rows = [dict((k, float(v[0])) for k, v in base.items()) for _ in range(5)]
    rows[1]["activity"] *= 1.001
    rows[2]["k_d"] += 1e-6
    rows[4]["initial_pH"] -= 1e-4
    conditions = {name: np.array([row[name] for row in rows]) for name in NAMES}
    t = np.linspace(0.0, 600.0, 301)
    tabulated = []
    real = TrajectoryTable._tabulate.__func__

    def counted(cls, substrate_mM, *args):
        tabulated.append(len(substrate_mM))
        return real(cls, substrate_mM, *args)

    monkeypatch.setattr(TrajectoryTable, "_tabulate", classmethod(counted))
    together = simulate(conditions, t)
    assert tabulated == [2]
    alone = np.vstack([simulate(row, t) for row in rows])
    np.testing.assert_array_equal(together, alone)


EDGE_CASES = [  # (S0 mM, T °C, pH0, E0 g/L, k_d): the corners of the prior
    (1, 20, 6.5, 1e-5, 0.0), (100, 40, 7.5, 5.0, 0.0), (1, 40, 7.5, 5.0, 0.0),
    (100, 20, 6.5, 1e-5, 5e-3), (1, 40, 6.5, 5.0, 5e-3), (100, 40, 6.5, 5.0, 0.0),
    (1, 20, 7.5, 5.0, 0.0), (100, 20, 7.5, 0.5, 5e-3),
]


@pytest.mark.parametrize("case", range(6 + len(EDGE_CASES)))
def test_agrees_with_solve_ivp_reference(case):
    t = np.concatenate([np.linspace(0, 10, 101), np.linspace(10.5, 2000, 300)])
    if case < 6:
        draw = prior_draws(np.random.default_rng(100 + case), 1)
        condition = {k: float(v[0]) for k, v in draw.items()}
    else:
        s0, temp, pH0, e0, k_d = EDGE_CASES[case - 6]
        condition = dict(substrate_mM=s0, grams_urease_powder=0.5, volume_L=0.1,
                         temperature_C=temp, initial_pH=pH0, activity=e0 * 0.1 / 0.5, k_d=k_d)
    reference = reference_pH(**condition, t=t)
    pH = simulate(condition, t)[0]
    assert np.abs(pH - reference).max() < 1e-4


def _equilibria_at(temperature_C):
    T = temperature_C + 273.15
    return (10 ** (-4470.99 / T + 6.0875 - 0.01706 * T),
            10 ** -(0.09018 + 2729.92 / T),
            10 ** (-356.3094 - 0.06091964 * T + 21834.37 / T + 126.8339 * math.log10(T)
                   - 1684915 / T**2),
            10 ** (-107.8871 - 0.03252849 * T + 5151.79 / T + 38.92561 * math.log10(T)
                   - 563713.9 / T**2))


def test_optional_physics_against_reference_and_spec_magnitudes():
    condition = dict(substrate_mM=20, grams_urease_powder=0.1, volume_L=0.2,
                     temperature_C=40, initial_pH=7.36, activity=1.0, k_d=0.0)
    t = np.array([0, 30, 300, 2000.0])
    default = simulate(condition, t)[0]
    warm = simulate(condition, t, options={"temperature_dependent_equilibria": True})[0]
    co2 = simulate(condition, t, options={"initial_co2_uM": 10.0})[0]
    np.testing.assert_allclose(
        warm, reference_pH(**condition, t=t, equilibria=_equilibria_at(40.0)), atol=1e-4)
    np.testing.assert_allclose(co2, reference_pH(**condition, t=t, carbon0_M=1e-5), atol=1e-4)
    assert 0.25 < default[-1] - warm[-1] < 0.55  # spec: plateau ~0.4 lower at 40 °C
    low_enzyme = dict(condition, activity=0.01)
    drop = (simulate(low_enzyme, [30.0])[0, 0]
            - simulate(low_enzyme, [30.0], options={"initial_co2_uM": 10.0})[0, 0])
    assert drop > 0.1  # dissolved CO2 buffers the start


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("k_d"), "missing"),
    (lambda c: c.update(temperature_K=300), "unknown"),
    (lambda c: c.update(initial_pH=float("nan")), "initial_pH"),
    (lambda c: c.update(grams_urease_powder=-0.1), "grams_urease_powder"),
    (lambda c: c.update(volume_L=0.0), "volume_L"),
    (lambda c: c.update(activity=[0.1, 0.2, 0.3]), "mismatched lengths"),
    (lambda c: c.update(substrate_mM=[[1.0]]), "substrate_mM"),
])
def test_bad_conditions_name_the_field(change, message):
    condition = {"substrate_mM": [10.0, 20.0], "grams_urease_powder": 0.1, "volume_L": 0.5,
                 "temperature_C": 25.0, "initial_pH": 7.0, "activity": 0.1, "k_d": 0.0}
    change(condition)
    with pytest.raises(EiKerasError, match=message):
        simulate(condition, [0.0, 1.0])


@pytest.mark.parametrize("t, message", [
    ([0.0, 2.0, 1.0], "non-decreasing"), ([0.0, float("nan")], "NaN"),
    ([-1.0, 0.0], ">= 0"), ([[[0.0, 1.0]]], "1-D"),
])
def test_bad_times_are_rejected(t, message):
    condition = dict(zip(NAMES, CHECK_ROWS[0][0]))
    with pytest.raises(EiKerasError, match=message):
        simulate(condition, t)


def test_outside_prior_but_physical_still_simulates():
    condition = dict(substrate_mM=500, grams_urease_powder=2.0, volume_L=0.05,
                     temperature_C=55, initial_pH=8.2, activity=1.0, k_d=0.02)
    pH = simulate(condition, np.linspace(0, 2000, 50))[0]
    assert np.all(np.isfinite(pH)) and pH[0] == pytest.approx(8.2)
    assert np.all(np.diff(pH) >= -1e-12)


def test_no_substrate_or_no_enzyme_keeps_the_initial_pH():
    conditions = as_conditions([(0, 0.1, 0.2, 30, 7.1, 0.5, 0.0), (20, 0.1, 0.2, 30, 6.9, 0.0, 0.0)])
    pH = simulate(conditions, [0, 10, 1000])
    np.testing.assert_allclose(pH, [[7.1] * 3, [6.9] * 3], atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"temperature_dependent_equilibria": True,
                                          "initial_co2_uM": 20.0}])
def test_end_point_ph_equals_plain_bisection(options):
    """The end point (all urea hydrolysed) is found 4 or 8 halvings per charge-balance call;
    a plain 44-step bisection on [0, 14] gives the same float on random cases."""
    from ei_keras.simulation.chemistry import Speciation
    from ei_keras.simulation.simulator import FEW_CASES, _end_point_pH

    rng = np.random.default_rng(3)
    pH0, temperature = rng.uniform(3, 12, (3000, 1)), rng.uniform(5, 60, (3000, 1))
    substrate = 10 ** rng.uniform(-4, 0, (3000, 1))
    options = SimulationOptions.coerce(options)
    speciation = Speciation.at_start(pH0, temperature, options)
    low, high = np.zeros_like(pH0), np.full_like(pH0, 14.0)
    for _ in range(44):
        mid = 0.5 * (low + high)
        above = speciation.charge_balance(mid, 2 * substrate, speciation.carbon0 + substrate) < 0
        low, high = np.where(above, low, mid), np.where(above, mid, high)
    np.testing.assert_array_equal(_end_point_pH(speciation, substrate), 0.5 * (low + high))
    few = FEW_CASES  # a fit's few cases take 8 halvings a call: the same floats
    for start in range(0, 300, few):
        part = slice(start, start + few)
        few_cases = Speciation.at_start(pH0[part], temperature[part], options)
        np.testing.assert_array_equal(_end_point_pH(few_cases, substrate[part]),
                                      0.5 * (low[part] + high[part]))
