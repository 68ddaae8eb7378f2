"""The least-squares baseline of physics.md §10."""

import numpy as np
import pytest

from ei_keras import EiKerasError
from ei_keras.inference import fit_least_squares, predict_readings

KNOWN = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
             initial_pH=7.05)
ALL = ("activity", "k_d", "tau_probe", "pH_offset")


def readings(t, **latent):
    return predict_readings(t, KNOWN, {k: np.array([v]) for k, v in latent.items()})[0]


def test_recovers_parameters_from_a_noiseless_long_prefix():
    t = np.linspace(0, 300, 100)
    fitted = fit_least_squares(t, readings(t, activity=0.05, k_d=2e-3), KNOWN)
    assert set(fitted) == {"activity", "k_d"}
    assert fitted["activity"] == pytest.approx(0.05, rel=1e-3)
    assert fitted["k_d"] == pytest.approx(2e-3, abs=2e-6)


def test_with_nuisance_parameters_fits_at_least_as_well_as_the_truth():
    rng = np.random.default_rng(7)
    t = np.linspace(0, 60, 100)
    truth = dict(activity=0.02, k_d=1e-3, tau_probe=6.0, pH_offset=-0.04)
    noise = rng.normal(0, 0.01, t.size)
    fitted, details = fit_least_squares(t, readings(t, **truth) + noise, KNOWN, fit=ALL,
                                        return_details=True)
    assert details["cost"] <= 0.5 * np.sum(noise**2) * (1 + 1e-6)
    assert 0 <= fitted["tau_probe"] <= 30 and -0.1 <= fitted["pH_offset"] <= 0.1
    assert 1e-3 <= fitted["activity"] <= 1 and 0 <= fitted["k_d"] <= 5e-3


@pytest.mark.parametrize("name, change", [
    ("activity", 2.0), ("k_d", 2e-3), ("tau_probe", 5.0), ("pH_offset", 0.05)])
def test_every_fitted_parameter_acts_on_the_readings(name, change):
    t = np.linspace(0, 30, 50)
    base = dict(activity=0.05, k_d=1e-3, tau_probe=3.0, pH_offset=0.0)
    moved = dict(base, **{name: base[name] * change if name == "activity" else base[name] + change})
    assert np.abs(readings(t, **moved) - readings(t, **base)).max() > 1e-3


def test_offset_keeps_the_first_reading_at_the_measured_initial_pH():
    t = np.linspace(0, 30, 5)
    for offset in (-0.08, 0.0, 0.08):
        first = readings(t, activity=0.1, k_d=0.0, tau_probe=0.0, pH_offset=offset)[0]
        assert first == pytest.approx(KNOWN["initial_pH"], abs=1e-9)


def test_a_readings_model_reused_for_many_parameter_sets_gives_the_measurement_model():
    """The readings model a fit calls at every step (times placed once) gives, call after
    call, the noise-free readings of the measurement model itself for each parameter set
    (through the compiled kernel: the same readings to rounding)."""
    from ei_keras.inference.least_squares import ReadingsModel
    from ei_keras.simulation.measurement import measure

    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.0, 300.0, 250))
    model = ReadingsModel(t, KNOWN)
    for _ in range(3):
        latent = {"activity": 10 ** rng.uniform(-3, 0, 4), "k_d": rng.uniform(0, 5e-3, 4),
                  "tau_probe": np.array([0.0, 2.0, 10.0, 30.0]),
                  "pH_offset": rng.uniform(-0.1, 0.1, 4)}
        conditions = {name: np.full(4, KNOWN[name]) for name in KNOWN}
        conditions.update(initial_pH=KNOWN["initial_pH"] - latent["pH_offset"],
                          activity=latent["activity"], k_d=latent["k_d"])
        expected = measure(conditions, t, tau_probe=latent["tau_probe"],
                           pH_offset=latent["pH_offset"], add_noise=False)
        np.testing.assert_allclose(model(latent), expected, rtol=0, atol=1e-10)
        no_lag = dict(latent, tau_probe=np.zeros(4))
        np.testing.assert_allclose(model(no_lag), measure(
            conditions, t, tau_probe=0.0, pH_offset=latent["pH_offset"], add_noise=False),
            rtol=0, atol=1e-10)


@pytest.mark.parametrize("t, pH, message", [
    ([0, 1, float("nan")], [7, 7.1, 7.2], "NaN"),
    ([0, 2, 1], [7, 7.1, 7.2], "increase"),
    ([0, 1, 1], [7, 7.1, 7.2], "duplicates"),
    ([0, 1, 2], [7, 7.1, 71.2], "0–14"),
    ([0, 1], [7, 7.1], "at least 3"),
    ([0, 1, 2], [7, 7.1], "same length"),
])
def test_bad_traces_get_one_line_errors(t, pH, message):
    with pytest.raises(EiKerasError, match=message):
        fit_least_squares(t, pH, KNOWN)


def test_bad_known_and_fit_are_rejected():
    t = np.linspace(0, 30, 10)
    with pytest.raises(EiKerasError, match="missing"):
        fit_least_squares(t, np.full(10, 7.0), {k: v for k, v in KNOWN.items() if k != "volume_L"})
    with pytest.raises(EiKerasError, match="fit must contain"):
        fit_least_squares(t, np.full(10, 7.0), KNOWN, fit=("k_d",))
