"""One pH trace to analyse, from a dataset, a simulation or a CSV file.

Every trace is a dict: ``source`` (words), ``t`` [s] and ``pH`` (the readings),
``known`` (the five known inputs, ``initial_pH`` as measured), ``truth`` (the latent
parameters, None for a real run) and ``trajectory`` (``t``, ``pH`` of the whole run,
None for a real run).
"""

import math
from pathlib import Path

import numpy as np

from ei_keras.data import load_any_format, load_prefix
from ei_keras.errors import EiKerasError
from ei_keras.inference.least_squares import predict_readings, validate_trace
from ei_keras.inference.trace_csv import read_trace_csv
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES, label
from ei_keras.simulation.measurement import add_offset_and_noise
from ei_keras.simulation.priors import sample_priors
from ei_keras.config import ANY_FORMAT

TRAJECTORY_POINTS = 401


def reading_times(length_s, interval_s) -> np.ndarray:
    """Reading times 0, dt, 2 dt, … up to ``length_s`` (the last within 1e-6 of a step)."""
    if not (np.isfinite(length_s) and np.isfinite(interval_s) and length_s > 0
            and interval_s > 0):
        raise EiKerasError(f"the trace length and reading interval must be > 0; got "
                           f"{length_s!r} s and {interval_s!r} s")
    n = int(math.floor(length_s / interval_s + 1e-6)) + 1
    return np.arange(n) * float(interval_s)


def load_traces(path, prefix_length):
    """A dataset's traces of one prefix length, or its any-format traces (:data:`ANY_FORMAT`,
    NaN-padded)."""
    return load_any_format(path) if prefix_length == ANY_FORMAT else load_prefix(path,
                                                                              prefix_length)


def dataset_trace(data, index, trajectories=None, source="dataset") -> dict:
    """Case ``index`` of loaded traces (:func:`load_traces`), without padding, with its
    whole measured run from ``trajectories`` (``ei_keras.data.load_trajectories``)."""
    if not 0 <= index < len(data.pH):
        raise EiKerasError(f"case {index} is out of range: the dataset has {len(data.pH)} cases")
    t, pH = data.t[index].astype(float), data.pH[index].astype(float)
    valid = np.isfinite(t) & np.isfinite(pH)
    trajectory = None if trajectories is None else {
        "t": trajectories.t.astype(float), "pH": trajectories.pH_measured[index].astype(float)}
    return {"source": f"{source}, case {index}", "t": t[valid], "pH": pH[valid],
            "known": {name: float(data.known[index, j]) for j, name in enumerate(data.known_names)},
            "truth": {name: float(data.latent[index, j])
                      for j, name in enumerate(data.latent_names)},
            "trajectory": trajectory}


def simulated_trace(known, latent, length_s, interval_s, noise_std=0.01, seed=0,
                    t_max=2000.0) -> dict:
    """A run simulated with ``known`` inputs and ``latent`` parameters, read through the
    probe (lag, offset) every ``interval_s`` for ``length_s``, plus Gaussian noise."""
    missing = [name for name in LATENT_NAMES if name not in latent]
    if missing:
        raise EiKerasError(f"simulated trace: missing {missing}")
    values = {**known, **latent}
    for name, value in values.items():
        if not np.isfinite(value):
            raise EiKerasError(f"{label(name)} must be a finite number; got {value!r}")
    for name in ("substrate_mM", "grams_urease_powder", "volume_L", "activity"):
        if not values[name] > 0:
            raise EiKerasError(f"{label(name)} must be > 0; got {values[name]!r}")
    for name in ("k_d", "tau_probe"):
        if latent[name] < 0:
            raise EiKerasError(f"{label(name)} must be >= 0; got {latent[name]!r}")
    if not noise_std >= 0:
        raise EiKerasError(f"noise must be >= 0; got {noise_std!r}")
    t = reading_times(length_s, interval_s)
    grid = np.linspace(0.0, max(float(t_max), float(t[-1])), TRAJECTORY_POINTS)
    draws = {name: np.array([float(latent[name])]) for name in LATENT_NAMES}
    clean = predict_readings(t, known, draws)
    pH = add_offset_and_noise(clean, pH_offset=0.0, noise_std=noise_std,
                              rng=np.random.default_rng(seed))[0]
    return {"source": "simulated", "t": t, "pH": pH, "known": dict(known),
            "truth": {name: float(latent[name]) for name in LATENT_NAMES},
            "trajectory": {"t": grid, "pH": predict_readings(grid, known, draws)[0]}}


def csv_trace(path, known, *, minutes=False, source=None) -> dict:
    """The readings of a CSV file (``ei_keras.inference.trace_csv``), checked, whole: a
    trace longer than a model's trained maximum is cut by ``infer``, which says so."""
    t, pH = validate_trace(*read_trace_csv(path, minutes=minutes))
    return {"source": source or Path(path).name, "t": t, "pH": pH, "known": dict(known),
            "truth": None, "trajectory": None}


def prior_draw(seed) -> tuple[dict, dict]:
    """One run drawn from the default priors: ``(known, latent)``, floats."""
    samples = sample_priors(np.random.default_rng(int(seed)), 1)
    return ({name: float(samples[name][0]) for name in KNOWN_NAMES},
            {name: float(samples[name][0]) for name in LATENT_NAMES})
