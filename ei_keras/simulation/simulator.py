"""Fast, batched simulator of the urease pH trajectory (physics.md §2–5).

How it works (physics.md §5): with warped time tau(t) = E0 (1 - exp(-k_d t)) / k_d the
model is the autonomous scalar ODE d xi / d tau = rho(xi), free of E0 and k_d, and the
charge balance gives the extent xi as a closed-form function of pH. So instead of stepping
an ODE we tabulate, per case, the warped time needed to reach each pH:

    tau(pH) = integral from pH0 to pH of (d xi / d pH') / rho(xi(pH'), pH') dpH'

on a per-case node grid running from pH0 to the end-point pH (all urea hydrolysed), placed
evenly in a "progress" variable that follows the pH jump, the buffered middle and the
logarithmic approach to the end point, with Gauss–Legendre quadrature per interval. Any output time then costs a warp, a
binary search and a cubic Hermite interpolation of pH(tau), whose slopes 1 / (d tau / d pH)
are known exactly at the nodes. One table serves every (activity, k_d), which is what the
least-squares baseline and the forecasts exploit.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.simulation.chemistry import (
    KP_KNOTS_PH,
    SimulationOptions,
    Speciation,
    extent_rate_per_enzyme,
)

CONDITION_NAMES = (
    "substrate_mM", "grams_urease_powder", "volume_L", "temperature_C",
    "initial_pH", "activity", "k_d",
)

# Physical limits (not the prior): outside them the chemistry is meaningless.
CONDITION_LIMITS = {
    "substrate_mM": (0.0, 10_000.0),
    "grams_urease_powder": (0.0, 1_000.0),
    "volume_L": (1e-6, 1_000.0),
    "temperature_C": (0.0, 100.0),
    "initial_pH": (1.0, 13.0),
    "activity": (0.0, 1_000.0),
    "k_d": (0.0, 10.0),
}

# Nodes are placed along the fraction of the pH distance still to go to the end point,
# evenly in a "progress" that grows with the pH change, with log(extent) (buffered
# middle) and with -log(urea left) (approach to the end point), so that every interval
# is short in whichever of the three the trajectory is moving through.
NODE_INTERVALS = 100
PROGRESS_PH_STEP = 0.05
PROGRESS_LOG_STEP = 0.15
PROGRESS_EXTENT_SCALE = 1e-6  # M: below it the unbuffered pH change is tracked by pH itself
SMALLEST_FRACTION = 1e-10
CASES_PER_CHUNK = 64
_PLACEMENT_FRACTIONS = np.concatenate(
    [np.linspace(1.0, 0.03, 80, endpoint=False), np.geomspace(0.03, SMALLEST_FRACTION, 60)])
# Two-point Gauss–Legendre suffices: the Hermite interpolation dominates the error.
_GAUSS_X, _GAUSS_W = np.polynomial.legendre.leggauss(2)
_NODE_TARGETS = np.linspace(0.0, 1.0, NODE_INTERVALS + 1)  # evenly in progress


_LOWEST, _HIGHEST = (np.array([CONDITION_LIMITS[name][end] for name in CONDITION_NAMES])[:, None]
                     for end in (0, 1))


def validate_conditions(conditions) -> dict:
    """Return the conditions as float arrays of one length n; raise EiKerasError if bad."""
    if not hasattr(conditions, "keys"):
        raise EiKerasError(
            f"conditions must be a mapping with keys {list(CONDITION_NAMES)}; "
            f"got {type(conditions).__name__}")
    missing = [name for name in CONDITION_NAMES if name not in conditions]
    unknown = sorted(set(conditions) - set(CONDITION_NAMES))
    if missing or unknown:
        raise EiKerasError(
            f"conditions: missing {missing}, unknown {unknown}; "
            f"expected exactly {list(CONDITION_NAMES)}")
    arrays = {}
    for name in CONDITION_NAMES:
        try:
            value = np.asarray(conditions[name], dtype=float)
        except (TypeError, ValueError):
            raise EiKerasError(f"{name} must be a number or a 1-D array of numbers") from None
        if value.ndim > 1:
            raise EiKerasError(f"{name} must be a scalar or 1-D; got shape {value.shape}")
        arrays[name] = value
    lengths = {name: a.size for name, a in arrays.items() if a.ndim == 1}
    if len(set(lengths.values())) > 1:
        raise EiKerasError(f"conditions have mismatched lengths {lengths}; give one length n")
    n = next(iter(lengths.values()), 1)
    # One array for all fields, checked at once (a fit simulates a few cases many times).
    stacked = np.empty((len(CONDITION_NAMES), n))
    for row, value in zip(stacked, arrays.values()):
        row[:] = value
    bad = ~np.isfinite(stacked) | (stacked < _LOWEST) | (stacked > _HIGHEST)
    if bad.any():
        field, index = (int(i[0]) for i in np.nonzero(bad))
        name = CONDITION_NAMES[field]
        low, high = CONDITION_LIMITS[name]
        where = f" at case {index}" if arrays[name].size > 1 else ""
        raise EiKerasError(
            f"{name} must be finite and within [{low:g}, {high:g}]; "
            f"got {float(stacked[field, index]):g}{where}")
    return dict(zip(CONDITION_NAMES, stacked))


def validate_times(t) -> np.ndarray:
    """Return ``t`` as a float array of seconds >= 0: 1-D (m,), finite and non-decreasing,
    shared by every case; or 2-D (n, m), one such row per case, where NaN may pad a row
    after its last reading (see :func:`validate_per_case_times`)."""
    t = np.asarray(t, dtype=float)
    if t.ndim == 2:
        return validate_per_case_times(t)
    if t.ndim != 1:
        raise EiKerasError(
            f"t must be a 1-D array of seconds, or 2-D with one row per case; got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise EiKerasError("t contains NaN or infinite values; give finite seconds")
    if t.size and t.min() < 0:
        raise EiKerasError(f"t must be >= 0 seconds; got {t.min()!r}")
    if np.any(np.diff(t) < 0):
        index = int(np.flatnonzero(np.diff(t) < 0)[0])
        raise EiKerasError(
            f"t must be non-decreasing; t[{index + 1}] = {t[index + 1]!r} < t[{index}] = "
            f"{t[index]!r}; sort the times")
    return t


def validate_per_case_times(t) -> np.ndarray:
    """Return ``t`` as a 2-D (n, m) float array: row i holds the reading times of case i,
    non-decreasing seconds >= 0, NaN only as padding after the row's last reading."""
    t = np.asarray(t, dtype=float)
    if t.ndim != 2:
        raise EiKerasError(f"per-case t must be 2-D (cases, readings); got shape {t.shape}")
    padding = np.isnan(t)
    inside = padding[:, :-1] & ~padding[:, 1:]
    if np.any(inside):
        row = int(np.flatnonzero(inside.any(axis=1))[0])
        raise EiKerasError(
            f"t row {row}: NaN is allowed only as padding after the row's last reading")
    readings = t[~padding]
    if np.any(np.isinf(readings)):
        raise EiKerasError("t contains infinite values; give finite seconds (NaN pads a row)")
    if readings.size and readings.min() < 0:
        raise EiKerasError(f"t must be >= 0 seconds; got {readings.min()!r}")
    backwards = np.diff(t, axis=1) < 0  # False wherever NaN takes part
    if np.any(backwards):
        row, index = (int(i[0]) for i in np.nonzero(backwards))
        raise EiKerasError(
            f"t row {row} must be non-decreasing; t[{row}, {index + 1}] = "
            f"{t[row, index + 1]!r} < t[{row}, {index}] = {t[row, index]!r}; sort the times")
    return t


def simulate(conditions, t, *, totals=False, options=None):
    """Simulate the true pH of urease + urea runs at the times ``t``.

    Parameters
    ----------
    conditions : mapping
        ``substrate_mM, grams_urease_powder, volume_L, temperature_C, initial_pH`` (the
        true pH0), ``activity`` and ``k_d`` [1/s]; scalars or 1-D arrays of one length n.
    t : array_like
        1-D non-decreasing times in seconds (>= 0), shared by every case; or 2-D (n, m),
        one row of non-decreasing times per case, NaN-padded after a row's last time (each
        case read at its own times; NaN in, NaN out).
    totals : bool
        Also return the totals S (urea), N (total ammonia), C (inorganic carbon) [mol/L].
    options : mapping or SimulationOptions, optional
        Optional physics (physics.md §8); default off, matching the check values.

    Returns
    -------
    ndarray (n, m) of pH, m = len(t) or t.shape[1], or with ``totals=True`` a dict with
    ``pH, S, N, C``. A value depends only on its own case and time, so a 2-D row gives
    the same values as that case simulated alone at the row's times (to rounding).

    Raises
    ------
    EiKerasError (a ValueError) naming the bad field and the allowed range.
    """
    arrays = validate_conditions(conditions)
    t = validate_times(t)
    options = SimulationOptions.coerce(options)
    n = len(arrays["activity"])
    if t.ndim == 2 and t.shape[0] != n:
        raise EiKerasError(
            f"t has {t.shape[0]} rows but there are {n} cases; give one row of times per case")
    starts = range(0, n, CASES_PER_CHUNK)

    pH = np.empty((n, t.shape[-1]))
    result = {"pH": pH, **({key: np.empty_like(pH) for key in "SNC"} if totals else {})}

    def run_chunk(start):
        rows = slice(start, start + CASES_PER_CHUNK)
        chunk = {name: a[rows] for name, a in arrays.items()}
        table = TrajectoryTable.for_cases(
            chunk["substrate_mM"], chunk["temperature_C"], chunk["initial_pH"], options)
        enzyme = chunk["activity"] * chunk["grams_urease_powder"] / chunk["volume_L"]
        times = t[rows] if t.ndim == 2 else t
        for key, values in table.evaluate(enzyme, chunk["k_d"], times, totals=totals).items():
            result[key][rows] = values

    # Chunks keep the working set in cache; numpy releases the GIL, so threads use the cores.
    if len(starts) > 1 and (os.cpu_count() or 1) > 1:
        with ThreadPoolExecutor(min(len(starts), os.cpu_count())) as pool:
            list(pool.map(run_chunk, starts))
    else:
        for start in starts:
            run_chunk(start)
    return result if totals else pH


def warped_time(enzyme_g_per_L, k_d, t):
    """tau = E0 (1 - exp(-k_d t)) / k_d (E0 t when k_d = 0), shape (n, len(t)) [g·s/L]."""
    enzyme = np.asarray(enzyme_g_per_L, dtype=float)[:, None]
    k_d = np.asarray(k_d, dtype=float)
    t = np.asarray(t, dtype=float)
    tau = np.broadcast_to(t, (len(k_d), len(t))).copy()
    decaying = k_d > 0
    rate = k_d[decaying, None]
    tau[decaying] = -np.expm1(-rate * t) / rate
    tau *= enzyme
    return tau


@dataclass(frozen=True)
class TrajectoryTable:
    """Per-case tabulation of pH and extent against warped time; free of E0 and k_d.

    ``tau`` (n, K) is the warped time reached at each node; ``pH_cubic`` and
    ``extent_cubic`` hold, per interval (n, K - 1), the four coefficients (lowest order
    first) of the cubic Hermite polynomial in s = (tau - tau_left) / width.
    """

    tau: np.ndarray
    inverse_width: np.ndarray
    pH_cubic: tuple
    extent_cubic: tuple
    substrate0: np.ndarray
    carbon0: np.ndarray

    @classmethod
    def build(cls, substrate_mM, temperature_C, pH0, options=None) -> "TrajectoryTable":
        options = SimulationOptions.coerce(options)
        with np.errstate(divide="ignore", invalid="ignore"):
            return cls._tabulate(substrate_mM, temperature_C, pH0, options)

    @classmethod
    def for_cases(cls, substrate_mM, temperature_C, pH0, options=None) -> "TrajectoryTable":
        """:meth:`build` for each case, tabulating once the cases that share all three (a
        fit's finite-difference neighbours share all but the offset's): the same values, as
        each case's table depends only on its own conditions."""
        keys = np.stack([np.asarray(value, dtype=float)
                         for value in (substrate_mM, temperature_C, pH0)], axis=1)
        first = {}  # key -> its first case; a dict is quicker than np.unique for a few
        inverse = np.array([first.setdefault(key, len(first)) for key in map(tuple, keys)])
        if len(first) == len(keys):
            return cls.build(substrate_mM, temperature_C, pH0, options)
        return cls.build(*np.array(list(first)).T, options).take(inverse)

    def take(self, cases) -> "TrajectoryTable":
        """The table of the cases ``cases`` (indices, repeats allowed)."""
        picked = {}
        for field in fields(self):
            value = getattr(self, field.name)
            picked[field.name] = (tuple(part[cases] for part in value)
                                  if isinstance(value, tuple) else value[cases])
        return TrajectoryTable(**picked)

    @classmethod
    def _tabulate(cls, substrate_mM, temperature_C, pH0, options):
        substrate0 = np.asarray(substrate_mM, dtype=float)[:, None] / 1000.0
        temperature = np.asarray(temperature_C, dtype=float)[:, None]
        pH0 = np.asarray(pH0, dtype=float)[:, None]
        speciation = Speciation.at_start(pH0, temperature, options)
        end_pH = np.where(substrate0 > 0, _end_point_pH(speciation, substrate0), pH0)
        span = end_pH - pH0

        def along(fraction_left):
            """pH, extent, d tau / d fraction (>= 0) and d xi / d tau at the fractions."""
            pH = end_pH - span * fraction_left
            extent, extent_slope = speciation.extent_and_slope(pH)
            extent = np.clip(extent, 0.0, substrate0)
            rate = extent_rate_per_enzyme(extent, pH, substrate0, temperature, options)
            return pH, extent, extent_slope * span / rate, rate

        node_fractions = _node_fractions(speciation, end_pH, span, substrate0)
        # Gauss–Legendre per interval in log(fraction), where tau's log-divergence
        # at the end point is smooth; near pH0 log(fraction) is nearly linear in pH.
        log_lo, log_hi = np.log(node_fractions[:, :-1, None]), np.log(node_fractions[:, 1:, None])
        half = 0.5 * (log_lo - log_hi)
        points = np.exp(0.5 * (log_lo + log_hi) + half * _GAUSS_X)
        # The nodes and the quadrature points in one call (elementwise: the same values).
        nodes = node_fractions.shape[1]
        values = along(np.hstack([node_fractions, points.reshape(len(pH0), -1)]))
        pH_nodes, extent_nodes, tau_slope_nodes, rate_nodes = (v[:, :nodes] for v in values)
        tau_slope = values[2][:, nodes:].reshape(points.shape)
        increments = np.sum(tau_slope * points * half * _GAUSS_W, axis=2)
        # d tau / d pH = slope / span; its inverse is the exact Hermite slope d pH / d tau.
        dpH_dtau = np.where(span != 0, span / tau_slope_nodes, 0.0)
        _hold_unreachable_end(increments, pH_nodes, extent_nodes, dpH_dtau, rate_nodes)
        tau = np.hstack([np.zeros_like(pH0), np.cumsum(increments, axis=1)])
        static = (span == 0)[:, 0]
        tau[static] = np.arange(tau.shape[1])  # any increasing grid: nothing changes
        rate_nodes[static] = 0.0
        width = np.diff(tau, axis=1)
        table = cls(
            tau=tau,
            inverse_width=np.where(width > 0, 1.0 / width, 0.0),
            pH_cubic=_hermite_cubic(pH_nodes, dpH_dtau, width),
            extent_cubic=_hermite_cubic(extent_nodes, rate_nodes, width),
            substrate0=substrate0[:, 0],
            carbon0=speciation.carbon0[:, 0],
        )
        finite = np.isfinite(tau).all(axis=1)
        for cubic in (*table.pH_cubic, *table.extent_cubic):
            finite &= np.isfinite(cubic).all(axis=1)
        if not finite.all():  # never seen in fuzzing; refuse rather than return NaN
            row = int(np.flatnonzero(~finite)[0])
            raise EiKerasError(
                f"the simulator cannot tabulate substrate_mM={substrate0[row, 0] * 1000:g}, "
                f"temperature_C={temperature[row, 0]:g}, initial_pH={pH0[row, 0]:g} "
                f"(case {row} of this chunk): the pH change is below round-off")
        return table

    def evaluate(self, enzyme_g_per_L, k_d, t, *, totals=False) -> dict:
        """pH (and with ``totals`` S, N, C [mol/L]) at times ``t`` for these E0 and k_d.

        ``enzyme_g_per_L`` and ``k_d`` are (n,); ``t`` is a sorted 1-D array of seconds
        shared by every case, or (n, m) with one row of seconds per case, where NaN gives
        NaN. Either way the values are (n, m).
        """
        enzyme = np.asarray(enzyme_g_per_L, dtype=float)
        k_d = np.asarray(k_d, dtype=float)
        t = np.asarray(t, dtype=float)
        if t.ndim == 2:
            cases, columns = np.nonzero(~np.isnan(t))
            interval, s = self._locate_per_case(enzyme, k_d, cases, t[cases, columns])
            values = {}
            for key, flat in self._values(interval, s, cases, totals).items():
                values[key] = np.full(t.shape, np.nan)
                values[key][cases, columns] = flat
            return values
        interval, s = self._locate(enzyme, k_d, t)
        return self._values(interval, s, np.s_[:, None], totals)

    def _values(self, interval, s, cases, totals):
        """pH (and S, N, C) at flat intervals and positions; ``cases`` indexes the
        per-case totals to broadcast against them."""
        values = {"pH": _evaluate_cubic(self.pH_cubic, interval, s)}
        if totals:
            substrate0 = self.substrate0[cases]
            extent = np.clip(_evaluate_cubic(self.extent_cubic, interval, s), 0.0, substrate0)
            values.update(S=substrate0 - extent, N=2.0 * extent, C=self.carbon0[cases] + extent)
        return values

    def _locate(self, enzyme, k_d, t):
        """Flat interval index and position s in [0, 1] of every (case, time)."""
        n, intervals = self.inverse_width.shape
        tau = warped_time(enzyme, k_d, t)
        # The node index is counted in real time, where the grid ``t`` is shared by all
        # cases: one search of every node's time replaces a search per case.
        node_t = _unwarped_time(enzyme, k_d, self.tau)
        first_after = np.searchsorted(t, node_t.reshape(-1), side="left")
        first_after += np.repeat(np.arange(n) * (len(t) + 1), node_t.shape[1])
        counts = np.bincount(first_after, minlength=n * (len(t) + 1)).reshape(n, -1)
        nodes_passed = np.cumsum(counts[:, :-1], axis=1)
        interval = np.clip(nodes_passed, 1, intervals)
        interval += (np.arange(n) * intervals - 1)[:, None]
        s = tau - np.take(self.tau[:, :-1], interval)
        s *= np.take(self.inverse_width, interval)
        np.clip(s, 0.0, 1.0, out=s)
        return interval, s

    def _locate_per_case(self, enzyme, k_d, cases, times):
        """Flat interval index and position s in [0, 1] of readings at ``times`` (N,) of
        the cases ``cases`` (N,, ascending). As in :meth:`_locate`, the interval is the
        last node reached by that time in real time, so both give the same values."""
        n, intervals = self.inverse_width.shape
        node_t = _unwarped_time(enzyme, k_d, self.tau)
        bounds = np.searchsorted(cases, np.arange(n + 1))
        nodes_passed = np.empty(len(times), dtype=np.intp)
        for case in range(n):
            part = slice(bounds[case], bounds[case + 1])
            nodes_passed[part] = np.searchsorted(node_t[case], times[part], side="right")
        interval = np.clip(nodes_passed, 1, intervals)
        interval += cases * intervals - 1
        s = _warped_time_per_reading(enzyme[cases], k_d[cases], times)
        s -= np.take(self.tau[:, :-1], interval)
        s *= np.take(self.inverse_width, interval)
        np.clip(s, 0.0, 1.0, out=s)
        return interval, s


def _warped_time_per_reading(enzyme, k_d, t):
    """:func:`warped_time` with one (E0, k_d) per reading: all three are (N,)."""
    tau = t.copy()
    decaying = k_d > 0
    rate = k_d[decaying]
    tau[decaying] = -np.expm1(-rate * t[decaying]) / rate
    tau *= enzyme
    return tau


def _evaluate_cubic(cubic, interval, s):
    """Horner evaluation of the per-interval cubic; past the last node the end value holds."""
    value = np.take(cubic[3], interval)
    for coefficient in cubic[2::-1]:
        value *= s
        value += np.take(coefficient, interval)
    return value


def _unwarped_time(enzyme, k_d, tau):
    """Real time at which warped time ``tau`` (n, K) is reached; inf if never."""
    enzyme, k_d = enzyme[:, None], k_d[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = tau / enzyme
        decayed = -np.log1p(-k_d * fraction) / np.where(k_d > 0, k_d, 1.0)
        t = np.where(k_d > 0, decayed, fraction)
        t = np.where(np.isnan(t) | (k_d * fraction >= 1.0), np.inf, t)
    return np.where(tau == 0, 0.0, t)


def _hermite_cubic(values, slopes, width):
    """Coefficients of the cubic Hermite polynomial in s on each interval (n, K - 1)."""
    rise = np.diff(values, axis=1)
    slope_left, slope_right = slopes[:, :-1] * width, slopes[:, 1:] * width
    return (values[:, :-1], slope_left,
            3.0 * rise - 2.0 * slope_left - slope_right, -2.0 * rise + slope_left + slope_right)


def _node_fractions(speciation, end_pH, span, substrate0):
    """(n, NODE_INTERVALS + 1 + knots) descending fractions of the way left to the end pH."""
    fractions = _PLACEMENT_FRACTIONS[None, :]
    pH = end_pH - span * fractions
    extent = np.clip(speciation.extent_at_pH(pH), 0.0, substrate0)
    urea_left = np.maximum(substrate0 - extent, SMALLEST_FRACTION * substrate0)
    progress = (np.abs(pH - pH[:, :1]) / PROGRESS_PH_STEP
                + (np.log1p(extent / PROGRESS_EXTENT_SCALE) + np.log(substrate0 / urea_left))
                / PROGRESS_LOG_STEP)
    progress = np.maximum.accumulate(np.nan_to_num(progress, copy=False), axis=1)
    targets = _NODE_TARGETS
    nodes = np.empty((len(end_pH), NODE_INTERVALS + 1))
    for row in range(len(end_pH)):
        nodes[row] = np.interp(targets * progress[row, -1], progress[row], fractions[0])
    # K_p(pH) has kinks at its knots: make them nodes so that no interval straddles one.
    knots = (end_pH - KP_KNOTS_PH[None, :]) / np.where(span != 0, span, 1.0)
    knots = np.where((knots < 1.0) & (knots > SMALLEST_FRACTION), knots, 1.0)
    return -np.sort(-np.hstack([nodes, knots]), axis=1)


def _hold_unreachable_end(increments, pH_nodes, extent_nodes, dpH_dtau, rate_nodes):
    """Make the table finite where round-off hides the end point (in place).

    With a trace of urea against a strong buffer or an extreme pH0 (say 1e-5 mM at pH 12.8)
    the whole pH change is ~1e-6, the extent at the last nodes rounds to all of the urea,
    the rate there to 0 and the warped time to reach them to inf or NaN. The pH at those
    nodes equals the end point to round-off, so hold it: from the first bad interval on,
    the intervals keep the last finite width (any positive width would do) and pH, extent
    and their slopes stay at the values of the node before.
    """
    bad = ~np.isfinite(increments) | (increments < 0)
    np.copyto(dpH_dtau, 0.0, where=~np.isfinite(dpH_dtau))
    np.copyto(rate_nodes, 0.0, where=~np.isfinite(rate_nodes))
    for row in np.flatnonzero(bad.any(axis=1)):
        first = int(np.argmax(bad[row]))
        step = increments[row, first - 1] if first > 0 else 1.0
        increments[row, first:] = step if step > 0 else 1.0
        pH_nodes[row, first + 1:] = pH_nodes[row, first]
        extent_nodes[row, first + 1:] = extent_nodes[row, first]
        dpH_dtau[row, first + 1:] = 0.0
        rate_nodes[row, first + 1:] = 0.0


# Up to this many cases the end point takes 8 halvings per charge-balance call (255 points
# a case), beyond it 4 (15 points): for a fit's few cases the calls cost more than the
# points, for data generation's chunks the points cost more.
FEW_CASES = 16


def _end_point_pH(speciation: Speciation, substrate0, halvings=44):
    """pH once all urea is hydrolysed (N = 2 S0, C = C0 + S0): bisection on [0, 14], 44
    halvings taken k at a time (k = 8 for up to ``FEW_CASES`` cases, else 4). Each round
    evaluates the charge balance (decreasing in pH) at the 2^k - 1 inner points splitting
    the bracket into 2^k and keeps the part where it changes sign. The points are exact
    binary fractions of 14, the midpoints plain bisection would visit, so the result is
    that of 44 bisection steps in 6 or 11 calls."""
    at_once = 8 if len(substrate0) <= FEW_CASES else 4
    total_ammonia, total_carbon = 2.0 * substrate0, speciation.carbon0 + substrate0
    low = np.zeros_like(substrate0)
    width = 14.0
    while halvings > 0:
        points = 2 ** min(at_once, halvings)
        halvings -= min(at_once, halvings)
        width /= points
        above = speciation.charge_balance(
            low + width * np.arange(1, points, dtype=float), total_ammonia, total_carbon) < 0
        low = low + width * np.sum(~above, axis=1, keepdims=True)
    return low + 0.5 * width
