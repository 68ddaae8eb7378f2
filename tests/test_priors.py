"""Default priors of physics.md §7."""

import numpy as np
import pytest
from scipy import stats

from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.priors import sample_priors, simulator_conditions

UNIFORM = {
    "substrate_mM": (1, 100), "grams_urease_powder": (0.01, 0.5), "volume_L": (0.1, 1.0),
    "temperature_C": (20, 40), "initial_pH": (6.5, 7.5), "k_d": (0, 5e-3),
    "tau_probe": (0, 30), "pH_offset": (-0.1, 0.1),
}


@pytest.fixture(scope="module")
def samples():
    return sample_priors(np.random.default_rng(0), 20_000)


@pytest.mark.parametrize("name", sorted(UNIFORM))
def test_uniform_priors(samples, name):
    low, high = UNIFORM[name]
    assert stats.kstest(samples[name], stats.uniform(low, high - low).cdf).pvalue > 1e-3


def test_activity_is_log_uniform(samples):
    assert samples["activity"].min() >= 1e-3 and samples["activity"].max() <= 1.0
    log_activity = np.log10(samples["activity"])
    assert stats.kstest(log_activity, stats.uniform(-3, 3).cdf).pvalue > 1e-3


def test_names_shapes_and_seeding(samples):
    assert set(samples) == set(KNOWN_NAMES + LATENT_NAMES)
    assert all(values.shape == (20_000,) for values in samples.values())
    again = sample_priors(np.random.default_rng(0), 20_000)
    assert all(np.array_equal(samples[name], again[name]) for name in samples)


def test_switched_off_nuisances_are_zero_and_leave_the_rest_unchanged(samples):
    plain = sample_priors(np.random.default_rng(0), 20_000, use_probe_lag=False,
                          use_offset=False)
    assert not plain["tau_probe"].any() and not plain["pH_offset"].any()
    for name in set(samples) - {"tau_probe", "pH_offset"}:
        np.testing.assert_array_equal(plain[name], samples[name])


def test_custom_ranges(samples):
    narrow = sample_priors(np.random.default_rng(1), 1000,
                           {"temperature_C": (25, 25), "activity": (0.1, 0.2)})
    assert np.all(narrow["temperature_C"] == 25)
    assert narrow["activity"].min() >= 0.1 and narrow["activity"].max() <= 0.2


def test_simulator_gets_the_true_initial_pH(samples):
    conditions = simulator_conditions(samples)
    np.testing.assert_array_equal(conditions["initial_pH"],
                                  samples["initial_pH"] - samples["pH_offset"])
    assert set(conditions) == {"substrate_mM", "grams_urease_powder", "volume_L",
                               "temperature_C", "initial_pH", "activity", "k_d"}
