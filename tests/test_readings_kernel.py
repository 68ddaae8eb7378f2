"""The compiled readings kernel of a fit against the numpy measurement model it stands in for."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ei_keras import EiKerasError
from ei_keras.inference.least_squares import ReadingsModel
from ei_keras.simulation.measurement import measure, probe_grid
from ei_keras.simulation.readings_kernel import KERNEL_CASES

# The kernel finds the end point by plain bisection and carries the probe lag node by node
# where numpy halves several times at once and scans: the same readings to rounding.
ROUNDING = 1e-9


def numpy_readings(t, known, latent, options=None):
    """Noise-free readings from the numpy simulator and measurement model."""
    b = len(latent["activity"])
    conditions = {name: np.full(b, float(value)) for name, value in known.items()}
    conditions.update(initial_pH=known["initial_pH"] - latent["pH_offset"],
                      activity=latent["activity"], k_d=latent["k_d"])
    return measure(conditions, t, tau_probe=latent["tau_probe"], pH_offset=latent["pH_offset"],
                   add_noise=False, options=options)


def kernel_readings(t, known, latent, monkeypatch, options=None):
    """The readings model's answer, with the numpy simulator out of its reach: the kernel
    alone must give it."""
    model = ReadingsModel(t, known, options=options)

    def numpy_path(*args, **kwargs):
        raise AssertionError("the kernel left these cases to the numpy simulator")

    monkeypatch.setattr(model.times, "response", numpy_path)
    return model(latent)


def random_case(rng, b):
    known = {"substrate_mM": 10 ** rng.uniform(-2, 3.5),
             "grams_urease_powder": 10 ** rng.uniform(-3, 1),
             "volume_L": 10 ** rng.uniform(-2, 1), "temperature_C": rng.uniform(0, 100),
             "initial_pH": rng.uniform(4, 11)}
    offsets = rng.uniform(-0.3, 0.3, b)
    offsets[1::2] = offsets[0]  # cases that share a pH0 share one table
    latent = {"activity": np.where(rng.random(b) < 0.1, 0.0, 10 ** rng.uniform(-4, 1, b)),
              "k_d": np.where(rng.random(b) < 0.3, 0.0, 10 ** rng.uniform(-5, -1, b)),
              "tau_probe": np.where(rng.random(b) < 0.3, 0.0, rng.uniform(0, 60, b)),
              "pH_offset": offsets}
    return known, latent


def reading_times(rng):
    """Irregular times from 0: a repeated time, and times on the probe's own grid nodes."""
    span = 10 ** rng.uniform(0, 3.3)
    t = np.sort(np.concatenate([[0.0], rng.uniform(0, span, rng.integers(3, 400))]))
    grid = probe_grid(span)
    t = np.sort(np.concatenate([t, t[1:2], rng.choice(grid, 3)]))
    return t


def test_the_kernel_gives_the_numpy_readings_over_the_whole_physical_range(monkeypatch):
    rng = np.random.default_rng(11)
    worst = 0.0
    for _ in range(40):
        known, latent = random_case(rng, int(rng.integers(1, KERNEL_CASES + 1)))
        t = reading_times(rng)
        kernel = kernel_readings(t, known, latent, monkeypatch)
        expected = numpy_readings(t, known, latent)
        assert kernel.shape == expected.shape
        worst = max(worst, float(np.max(np.abs(kernel - expected))))
    assert worst < ROUNDING


@pytest.mark.parametrize("options", [
    {"temperature_dependent_equilibria": True},
    {"initial_co2_uM": 20.0},
    {"constant_ph_activity": True},
])
def test_the_kernel_follows_the_simulation_options(options, monkeypatch):
    rng = np.random.default_rng(5)
    known, latent = random_case(rng, 6)
    t = np.linspace(0.0, 300.0, 151)
    kernel = kernel_readings(t, known, latent, monkeypatch, options=options)
    np.testing.assert_allclose(kernel, numpy_readings(t, known, latent, options),
                               rtol=0, atol=ROUNDING)
    # and the options change the readings, so the comparison above is not vacuous
    assert np.max(np.abs(kernel - numpy_readings(t, known, latent))) > 1e-4


@pytest.mark.parametrize("known", [
    # all urea at once: no pH change at all (the table is a constant)
    {"substrate_mM": 0.0, "grams_urease_powder": 0.1, "volume_L": 0.1, "temperature_C": 25.0,
     "initial_pH": 7.0},
    # a pH change of ~1e-6: round-off hides the end point, which the table holds
    {"substrate_mM": 1e-5, "grams_urease_powder": 0.1, "volume_L": 0.1, "temperature_C": 25.0,
     "initial_pH": 12.8},
])
def test_the_kernel_handles_the_simulators_edge_cases(known, monkeypatch):
    latent = {"activity": np.array([0.05, 0.5]), "k_d": np.array([0.0, 1e-3]),
              "tau_probe": np.array([0.0, 5.0]), "pH_offset": np.array([0.0, 0.0])}
    t = np.linspace(0.0, 600.0, 301)
    kernel = kernel_readings(t, known, latent, monkeypatch)
    assert np.all(np.isfinite(kernel))
    np.testing.assert_allclose(kernel, numpy_readings(t, known, latent), rtol=0, atol=ROUNDING)


def test_a_bad_parameter_set_gets_the_simulators_own_error():
    """Outside the physical limits the kernel answers nothing: the numpy simulator raises
    its usual error, naming the field and its range."""
    known = {"substrate_mM": 50.0, "grams_urease_powder": 0.1, "volume_L": 0.1,
             "temperature_C": 25.0, "initial_pH": 7.0}
    model = ReadingsModel(np.linspace(0.0, 60.0, 61), known)
    good = {"activity": np.array([0.05]), "k_d": np.array([1e-3]),
            "tau_probe": np.array([5.0]), "pH_offset": np.array([0.0])}
    for name, value, message in [("activity", 2000.0, "activity must be finite and within"),
                                 ("k_d", np.nan, "k_d must be finite"),
                                 ("tau_probe", -1.0, "tau_probe must be finite and >= 0")]:
        with pytest.raises(EiKerasError, match=message):
            model(dict(good, **{name: np.array([value])}))
    assert np.all(np.isfinite(model(good)))  # and the model still answers good sets
    with pytest.raises(EiKerasError, match="substrate_mM must be a number"):
        ReadingsModel(np.linspace(0.0, 60.0, 61), dict(known, substrate_mM="fifty"))


def test_without_a_writable_cache_folder_the_kernel_compiles_in_the_process():
    """Where numba can cache nowhere (here: told to look only inside zip files), importing
    the package still works and the kernel answers, compiled in the process."""
    code = textwrap.dedent("""
        import numpy as np
        from ei_keras.inference.least_squares import ReadingsModel
        known = {"substrate_mM": 50.0, "grams_urease_powder": 0.1, "volume_L": 0.1,
                 "temperature_C": 25.0, "initial_pH": 7.0}
        model = ReadingsModel(np.linspace(0.0, 60.0, 61), known)
        readings = model({"activity": np.array([0.05]), "k_d": np.array([1e-3]),
                          "tau_probe": np.array([5.0])})
        print(repr(float(readings[0, -1])))
    """)
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    known = {"substrate_mM": 50.0, "grams_urease_powder": 0.1, "volume_L": 0.1,
             "temperature_C": 25.0, "initial_pH": 7.0}
    latent = {"activity": np.array([0.05]), "k_d": np.array([1e-3]),
              "tau_probe": np.array([5.0]), "pH_offset": np.array([0.0])}
    expected = numpy_readings(np.linspace(0.0, 60.0, 61), known, latent)[0, -1]
    assert float(done.stdout.split()[-1]) == pytest.approx(expected, abs=ROUNDING)
