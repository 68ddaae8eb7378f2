"""Measurement model of physics.md §6: probe lag, offset and noise on the true pH.

The probe follows y' = (pH − y) / tau_probe from y(0) = pH0. The true pH is simulated on a
fixed internal grid (geometric near t = 0, where the pH jumps, its spacing capped later)
and the response is carried along that grid exactly, assuming the true pH is linear
between nodes; each reading is then one more exact step from the node before it to the
reading time, where the true pH is simulated too. A reading therefore depends only on its
own time, never on which other times were asked for. Times are shared by every case (1-D)
or given per case (2-D, one NaN-padded row per case); the internal grid is shared either way.
"""

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.simulation.simulator import simulate, validate_per_case_times

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
        Increasing float64 nodes: 0, then every node below ``t_end``; the same nodes for
        every ``t_end`` up to where they stop.
    """
    ratio = 10.0 ** (1.0 / NODES_PER_DECADE)
    # Geometric part until the spacing would exceed the cap, then uniform.
    switch = MAX_NODE_SPACING_S / (ratio - 1.0)
    n_geometric = int(np.ceil(np.log(switch / FIRST_NODE_S) / np.log(ratio))) + 1
    geometric = FIRST_NODE_S * ratio ** np.arange(n_geometric)
    uniform = geometric[-1] + MAX_NODE_SPACING_S * np.arange(
        1, max(int(np.ceil((t_end - geometric[-1]) / MAX_NODE_SPACING_S)), 0) + 1
    )
    later = np.concatenate([geometric, uniform])
    return np.concatenate([[0.0], later[later < t_end]])


def _check_times(t):
    t = np.asarray(t, dtype=float)
    if t.ndim == 2:
        return validate_per_case_times(t)
    if t.ndim != 1 or t.size == 0:
        raise EiKerasError(
            f"t must be a non-empty 1-D array of seconds, or 2-D with one row per case; "
            f"got shape {t.shape}")
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


def _step_coefficients(step, rate):
    """decay = e^{-h/tau} and mean_decay = tau/h (1 - decay), the mean of e^{-s/tau} over
    a step, for step lengths h and rates 1/tau broadcast against each other: (m, 1) and
    (1, n) give (m, n) arrays, (N,) and (N,) one pair per reading.

    A case without lag (rate inf) gets decay = mean_decay = 0: it reads the true pH. A step
    of length 0 gets decay = mean_decay = 1: the reading stays put.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        steps = np.multiply(step, rate)
        zero = np.broadcast_to(step == 0, steps.shape)
        steps[zero] = 0.0  # also where 0 * inf gave nan
        decayed = np.expm1(np.negative(steps))  # -(1 - decay), accurate for short steps
        np.negative(decayed, out=decayed)
        mean_decay = np.divide(decayed, steps, out=steps)
    mean_decay[zero] = 1.0
    return np.subtract(1.0, decayed, out=decayed), mean_decay


# Up to this many cases the probe lag runs as a parallel prefix scan (a few whole-array
# steps, 4-15x faster for one inference's candidates); beyond it, node by node (fewer
# operations per value, faster for the thousands of cases of data generation).
SCAN_CASES = 128


def _lag_along_grid(grid, pH, rate):
    """Exact first-order response at the ``grid`` nodes, (G, n), to ``pH`` (G, n) linear
    between nodes, starting at pH[0]. ``rate`` is 1/tau per case (inf: no lag).

    Over a step from (u0, y0) to u1: y1 = decay*y0 + u1 - decay*u0 - mean_decay*(u1 - u0).
    Time runs along the first axis so that each step touches contiguous rows.
    """
    decay, mean_decay = _step_coefficients(np.diff(grid)[:, None], rate[None, :])
    drive = np.subtract(pH[1:], pH[:-1])
    drive *= mean_decay
    np.subtract(pH[1:], drive, out=drive)
    drive -= np.multiply(decay, pH[:-1], out=mean_decay)
    if pH.shape[1] <= SCAN_CASES:
        return _affine_scan(decay, drive, pH[0])
    response = np.empty_like(pH)
    response[0] = pH[0]
    for k in range(1, len(grid)):
        np.multiply(decay[k - 1], response[k - 1], out=response[k])
        response[k] += drive[k - 1]
    return response


def _affine_scan(decay, drive, start):
    """y[0] = start, y[k] = decay[k-1] y[k-1] + drive[k-1], by a Hillis–Steele scan: after
    the step of span d each row holds the composition of the (up to) 2d maps ending there;
    the decays stay in [0, 1], so nothing overflows. Equal to the sequential recurrence to
    rounding (~1e-14 pH)."""
    factor = np.vstack([np.zeros_like(start)[None], decay])
    value = np.vstack([start[None], drive])
    span = 1
    while span < len(value):
        value[span:] += factor[span:] * value[:-span]
        factor[span:] *= factor[:-span]
        span *= 2
    return value


def probe_response(conditions, t, *, tau_probe, options=None):
    """True pH and the lagged probe response at the times ``t``.

    Parameters
    ----------
    conditions : mapping
        Simulator conditions (``initial_pH`` is the true pH0); see :func:`ei_keras.simulate`.
    t : array_like
        1-D non-decreasing times in seconds, >= 0, shared by every case; or 2-D (n, m),
        one non-decreasing row per case, NaN-padded after its last reading.
    tau_probe : float or array_like
        Probe time constant(s) in seconds, >= 0, scalar or one per case; 0 means no lag.
    options : mapping, optional
        Simulator options.

    Returns
    -------
    true_pH, lagged_pH : ndarray
        Both (n, m), m = len(t) or t.shape[1]; NaN where ``t`` is NaN.
    """
    t = _check_times(t)
    if np.all(np.asarray(tau_probe) == 0):
        return _without_lag(conditions, t, tau_probe, options)
    if t.ndim == 2:
        return _probe_response_per_case(conditions, t, tau_probe, options)
    return ReadingTimes(t).response(conditions, tau_probe, options=options)


def _without_lag(conditions, t, tau_probe, options):
    """:func:`probe_response` where every tau_probe is 0: the probe reads the true pH."""
    true_pH = simulate(conditions, t, options=options)
    _per_case(tau_probe, true_pH.shape[0], "tau_probe", low=0.0)
    return true_pH, true_pH.copy()


class ReadingTimes:
    """1-D reading times placed on the probe's internal grid once, for any number of
    simulations at them (one in :func:`probe_response`; a fit's many small ones through
    :class:`ei_keras.inference.least_squares.ReadingsModel`).

    The true pH is simulated at the grid nodes and the reading times together
    (``times``); the response is carried along the grid and each reading takes one exact
    step from the last node at or before it (``before``, ``step``).
    """

    def __init__(self, t):
        self.t = _check_times(t)
        if self.t.ndim != 1:
            raise EiKerasError(f"reading times must be 1-D here; got shape {self.t.shape}")
        self.grid = probe_grid(self.t[-1])
        self.times, inverse = np.unique(np.concatenate([self.grid, self.t]),
                                        return_inverse=True)
        self.on_grid, self.at_readings = inverse[:len(self.grid)], inverse[len(self.grid):]
        self.before = np.searchsorted(self.grid, self.t, side="right") - 1
        self.step = (self.t - self.grid[self.before])[:, None]

    def response(self, conditions, tau_probe, *, options=None):
        """True pH and lagged probe response at these times, both (n, m), as
        :func:`probe_response` gives them."""
        if np.all(np.asarray(tau_probe) == 0):
            return _without_lag(conditions, self.t, tau_probe, options)
        true_all = simulate(conditions, self.times, options=options).T
        tau = _per_case(tau_probe, true_all.shape[1], "tau_probe", low=0.0)
        with np.errstate(divide="ignore"):
            rate = 1.0 / tau  # inf where tau = 0: the probe reads the true pH
        true_grid = np.ascontiguousarray(true_all[self.on_grid])
        true_pH = true_all[self.at_readings]
        lag_grid = _lag_along_grid(self.grid, true_grid, rate)
        decay, mean_decay = _step_coefficients(self.step, rate[None, :])
        u0, u1 = true_grid[self.before], true_pH
        lagged = decay * (lag_grid[self.before] - u0) + u1 - mean_decay * (u1 - u0)
        return true_pH.T, lagged.T


def _probe_response_per_case(conditions, t, tau_probe, options):
    """:func:`probe_response` for (n, m) per-case times: the grid is shared up to the
    latest reading, and each reading takes one exact step from its case's last node."""
    cases, columns = np.nonzero(~np.isnan(t))
    times = t[cases, columns]
    grid = probe_grid(times.max(initial=0.0))
    true_grid = np.ascontiguousarray(simulate(conditions, grid, options=options).T)
    true_pH = simulate(conditions, t, options=options)
    tau = _per_case(tau_probe, true_pH.shape[0], "tau_probe", low=0.0)
    with np.errstate(divide="ignore"):
        rate = 1.0 / tau  # inf where tau = 0: the probe reads the true pH
    lag_grid = _lag_along_grid(grid, true_grid, rate)
    before = np.searchsorted(grid, times, side="right") - 1
    decay, mean_decay = _step_coefficients(times - grid[before], rate[cases])
    u0, u1 = true_grid[before, cases], true_pH[cases, columns]
    lagged = np.full_like(true_pH, np.nan)
    lagged[cases, columns] = decay * (lag_grid[before, cases] - u0) + u1 - mean_decay * (u1 - u0)
    return true_pH, lagged


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
        1-D non-decreasing reading times in seconds, >= 0; or 2-D (n, m), one row per
        case, NaN-padded after its last reading (NaN readings out).
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
        (n, m) measured pH, m = len(t) or t.shape[1].
    """
    _, lagged = probe_response(conditions, t, tau_probe=tau_probe, options=options)
    return add_offset_and_noise(
        lagged, pH_offset=pH_offset, noise_std=noise_std, rng=rng, add_noise=add_noise
    )
