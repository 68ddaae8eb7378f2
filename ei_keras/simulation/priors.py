"""Default priors of physics.md §7, sampled from an explicitly passed generator."""

import numpy as np

from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES

# [low, high] per parameter; ``initial_pH`` is the *measured* initial pH.
DEFAULT_PARAM_RANGES = {
    "substrate_mM": (1.0, 100.0),
    "grams_urease_powder": (0.01, 0.5),
    "volume_L": (0.1, 1.0),
    "temperature_C": (20.0, 40.0),
    "initial_pH": (6.5, 7.5),
    "activity": (1e-3, 1.0),
    "k_d": (0.0, 5e-3),
    "tau_probe": (0.0, 30.0),
    "pH_offset": (-0.1, 0.1),
}
# Parameters drawn log-uniformly; all others are uniform.
LOG_UNIFORM_NAMES = ("activity",)


def prior_midpoints(param_ranges=None):
    """A typical case: the middle of each prior range (geometric for log-uniform ones)."""
    ranges = {**DEFAULT_PARAM_RANGES, **(param_ranges or {})}
    return {name: float(np.sqrt(low * high)) if name in LOG_UNIFORM_NAMES
            else float(low + high) / 2.0 for name, (low, high) in ranges.items()}


def sample_priors(rng, n, param_ranges=None, *, use_probe_lag=True, use_offset=True):
    """Draw ``n`` independent cases from the priors.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; never the global state.
    n : int
        Number of cases.
    param_ranges : mapping, optional
        ``name -> (low, high)`` overriding :data:`DEFAULT_PARAM_RANGES` per name.
    use_probe_lag, use_offset : bool
        When False, ``tau_probe`` / ``pH_offset`` are 0 for every case. They are drawn
        either way, so switching them off leaves every other parameter unchanged.

    Returns
    -------
    dict of str to ndarray
        One (n,) float64 array per name in ``KNOWN_NAMES + LATENT_NAMES``;
        ``initial_pH`` is the measured initial pH (true pH0 + offset).
    """
    ranges = {**DEFAULT_PARAM_RANGES, **(param_ranges or {})}
    samples = {}
    for name in KNOWN_NAMES + LATENT_NAMES:
        low, high = (float(bound) for bound in ranges[name])
        if name in LOG_UNIFORM_NAMES:
            samples[name] = 10.0 ** rng.uniform(np.log10(low), np.log10(high), size=n)
        else:
            samples[name] = rng.uniform(low, high, size=n)
    if not use_probe_lag:
        samples["tau_probe"] = np.zeros(n)
    if not use_offset:
        samples["pH_offset"] = np.zeros(n)
    return samples


def simulator_conditions(samples):
    """Conditions for :func:`ei_keras.simulate` from sampled cases.

    Parameters
    ----------
    samples : mapping
        As returned by :func:`sample_priors`.

    Returns
    -------
    dict of str to ndarray
        The simulator's condition keys, with ``initial_pH`` the *true* pH0
        (measured initial pH − pH_offset).
    """
    conditions = {name: samples[name] for name in KNOWN_NAMES if name != "initial_pH"}
    conditions["initial_pH"] = samples["initial_pH"] - samples["pH_offset"]
    conditions["activity"] = samples["activity"]
    conditions["k_d"] = samples["k_d"]
    return conditions
