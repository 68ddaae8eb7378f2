"""Measurement model of physics.md §6: probe lag, offset and noise on the true pH.

The probe follows y' = (pH − y) / tau_probe from y(0) = pH0. The true pH is simulated on a
fixed internal grid (geometric near t = 0, where the pH jumps, with a cap on the spacing
later) merged with the requested times, and the response is integrated exactly assuming the
true pH is linear between nodes. The internal grid does not depend on the requested times,
so a reading does not depend on which other times were asked for.
"""

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.simulation.simulator import simulate

# Internal grid for the probe response: geometric from FIRST_NODE_S with NODES_PER_DECADE
# nodes per factor of ten, its spacing capped at MAX_NODE_SPACING_S.
FIRST_NODE_S = 1e-4
NODES_PER_DECADE = 100
MAX_NODE_SPACING_S = 10.0


def get_adaptive_prefix_n_points(prefix_length, base_n, target_dt):
    """Number of readings for a prefix: ``max(base_n, round(prefix_length / target_dt))``.

    Parameters
    ----------
    prefix_length : float
        Prefix length L in seconds (> 0).
    base_n : int
        Minimum number of readings (``prefix_n_points``).
    target_dt : float
        Desired spacing between readings in seconds (> 0).

    Returns
    -------
    int
        E.g. 30 s → 100, 60 s → 200, 300 s → 1000 for ``base_n=100, target_dt=0.3``.
    """
    if not prefix_length > 0 or not target_dt > 0:
        raise EiKerasError(
            f"prefix_length and target_dt must be > 0; got {prefix_length!r}, {target_dt!r}"
        )
    return max(int(base_n), int(round(prefix_length / target_dt)))


def prefix_times(prefix_length, n_points):
    """Evenly spaced reading times on [0, prefix_length], both ends included.

    Parameters
    ----------
    prefix_length : float
        Prefix length L in seconds.
    n_points : int
        Number of readings (>= 2).

    Returns
    -------
    ndarray
        (n_points,) float64 seconds.
    """
    return np.linspace(0.0, float(prefix_length), int(n_points))


def probe_grid(t_end):
    """The fixed internal nodes on [0, t_end] that carry the probe response.

    Parameters
    ----------
    t_end : float
        Last time needed, in seconds.

    Returns
    -------
    ndarray
        Increasing float64 nodes starting at 0; the same nodes for every ``t_end`` up to
        where they stop.
    """
    ratio = 10.0 ** (1.0 / NODES_PER_DECADE)
    # Geometric part until the spacing would exceed the cap, then uniform.
    switch = MAX_NODE_SPACING_S / (ratio - 1.0)
    n_geometric = int(np.ceil(np.log(switch / FIRST_NODE_S) / np.log(ratio))) + 1
    geometric = FIRST_NODE_S * ratio ** np.arange(n_geometric)
    uniform = geometric[-1] + MAX_NODE_SPACING_S * np.arange(
        1, max(int(np.ceil((t_end - geometric[-1]) / MAX_NODE_SPACING_S)), 0) + 1
    )
    nodes = np.concatenate([[0.0], geometric, uniform])
    return nodes[nodes < t_end]


def _check_times(t):
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise EiKerasError(f"t must be a non-empty 1-D array of seconds; got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
        raise EiKerasError("t must be finite, >= 0 and non-decreasing (seconds)")
    return t


def _per_case(value, n, name, low=-np.inf):
    array = np.asarray(value, dtype=float)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != n):
        raise EiKerasError(f"{name} must be a scalar or have length {n}; got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < low):
        raise EiKerasError(f"{name} must be finite and >= {low}; got {value!r}")
    return np.broadcast_to(array, (n,))


def _lag_response(nodes, pH, tau):
    """Exact first-order response at ``nodes`` to ``pH`` (n, m) linear between nodes.

    Over a step of length h from (u0, y0) to u1: y1 = decay*y0 + u1 - decay*u0
    - mean_decay*(u1 - u0), with decay = e^{-h/tau} and mean_decay = tau/h*(1 - decay)
    the mean of e^{-s/tau} over the step. Computed in place: these arrays are large.
    """
    # Time runs along the first axis so that each step below touches contiguous rows.
    u = np.ascontiguousarray(pH.T)
    with np.errstate(divide="ignore"):
        rate = 1.0 / tau  # inf where tau = 0: the probe reads the true pH
    steps = np.multiply(np.diff(nodes)[:, None], rate[None, :])
    decayed = np.expm1(np.negative(steps))  # -(1 - decay), accurate for short steps
    np.negative(decayed, out=decayed)
    mean_decay = np.divide(decayed, steps, out=steps)
    decay = np.subtract(1.0, decayed, out=decayed)
    drive = np.subtract(u[1:], u[:-1])
    drive *= mean_decay
    np.subtract(u[1:], drive, out=drive)
    drive -= np.multiply(decay, u[:-1], out=mean_decay)
    response = np.empty_like(u)
    response[0] = u[0]
    for k in range(1, len(nodes)):
        np.multiply(decay[k - 1], response[k - 1], out=response[k])
        response[k] += drive[k - 1]
    return response.T


def probe_response(conditions, t, *, tau_probe, options=None):
    """True pH and the lagged probe response at the times ``t``.

    Parameters
    ----------
    conditions : mapping
        Simulator conditions (``initial_pH`` is the true pH0); see :func:`ei_keras.simulate`.
    t : array_like
        1-D non-decreasing times in seconds, >= 0.
    tau_probe : float or array_like
        Probe time constant(s) in seconds, >= 0, scalar or one per case; 0 means no lag.
    options : mapping, optional
        Simulator options.

    Returns
    -------
    true_pH, lagged_pH : ndarray
        Both (n, len(t)).
    """
    t = _check_times(t)
    if np.all(np.asarray(tau_probe) == 0):  # no lag: the probe reads the true pH
        true_pH = simulate(conditions, t, options=options)
        _per_case(tau_probe, true_pH.shape[0], "tau_probe", low=0.0)
        return true_pH, true_pH.copy()
    nodes, inverse = np.unique(np.concatenate([probe_grid(t[-1]), t]), return_inverse=True)
    true_nodes = simulate(conditions, nodes, options=options)
    tau = _per_case(tau_probe, true_nodes.shape[0], "tau_probe", low=0.0)
    output = inverse[-len(t):]
    return true_nodes[:, output], _lag_response(nodes, true_nodes, tau)[:, output]


def add_offset_and_noise(pH, *, pH_offset, noise_std, rng=None, add_noise=True):
    """Readings from probe values: + offset on every reading, + i.i.d. Gaussian noise.

    Parameters
    ----------
    pH : ndarray
        (n, m) probe values (true or lagged pH).
    pH_offset : float or array_like
        Calibration offset, scalar or one per case.
    noise_std : float
        Noise standard deviation in pH units (>= 0).
    rng : numpy.random.Generator, optional
        Required when noise is added.
    add_noise : bool
        False returns the noiseless readings.

    Returns
    -------
    ndarray
        (n, m) readings.
    """
    pH = np.asarray(pH, dtype=float)
    readings = pH + _per_case(pH_offset, pH.shape[0], "pH_offset")[:, None]
    if not (noise_std >= 0 and np.isfinite(noise_std)):
        raise EiKerasError(f"noise_std must be finite and >= 0; got {noise_std!r}")
    if add_noise and noise_std > 0:
        if not isinstance(rng, np.random.Generator):
            raise EiKerasError("adding noise needs rng, a numpy.random.Generator")
        readings += rng.normal(0.0, noise_std, size=readings.shape)
    return readings


def measure(conditions, t, *, tau_probe, pH_offset, noise_std=0.01, rng=None,
            add_noise=True, options=None):
    """Measured pH: the true pH through probe lag, offset and noise (physics.md §6).

    Parameters
    ----------
    conditions : mapping
        Simulator conditions; ``initial_pH`` is the *true* pH0.
    t : array_like
        1-D non-decreasing reading times in seconds, >= 0.
    tau_probe : float or array_like
        Probe time constant(s) in seconds (0: no lag).
    pH_offset : float or array_like
        Calibration offset added to every reading, the one at t = 0 included.
    noise_std : float
        Gaussian noise standard deviation (pH units).
    rng : numpy.random.Generator, optional
        Required when noise is added.
    add_noise : bool
        False gives the noiseless readings.
    options : mapping, optional
        Simulator options.

    Returns
    -------
    ndarray
        (n, len(t)) measured pH.
    """
    _, lagged = probe_response(conditions, t, tau_probe=tau_probe, options=options)
    return add_offset_and_noise(
        lagged, pH_offset=pH_offset, noise_std=noise_std, rng=rng, add_noise=add_noise
    )
