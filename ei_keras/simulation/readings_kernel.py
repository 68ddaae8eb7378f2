"""The probe readings of a few cases at one trace's times, compiled (numba).

A fit (the local Laplace fit of every ``infer``, the least-squares baseline) simulates a
handful of parameter sets at one trace's times again and again. The numpy simulator
(:mod:`ei_keras.simulation.simulator` and :mod:`~ei_keras.simulation.measurement`) spends
such a call, ~0.7 ms, almost all on the overhead of its ~100 whole-array operations, not
on the arithmetic. This module computes the same readings case by case in one compiled
function, with the same chemistry (the ``register_jitable`` formulas of
:mod:`ei_keras.simulation.chemistry`) and the same algorithm: the node placement, the
two-point Gauss–Legendre table of warped time against pH, the Hermite interpolation and
the probe lag carried exactly along the internal grid. Its readings agree with the numpy
simulator's to rounding (tests check it to 1e-9 pH); two steps differ in the order of
their operations: the end point is found by plain bisection (the numpy one takes the
same halvings several at a time) and the probe lag runs node by node (numpy: a prefix
scan). Anything out of the ordinary (a condition outside its limits, a table that is not
finite) is left to the numpy simulator, which answers or raises its usual error.

The first call in a process compiles the kernel (~12 s) or loads it from numba's cache
next to this file (a fraction of a second). numba checks a cached function against its own
file only, so the cache is also keyed on the sources the kernel compiles in from the other
two modules (:func:`_source_fingerprint`): edit a formula or a constant there and the next
call compiles afresh instead of running stale code.
"""

import hashlib
import math
from pathlib import Path

import numba
import numpy as np

from ei_keras.simulation import chemistry, simulator
from ei_keras.simulation.chemistry import (
    KP_KNOTS_PH,
    arrhenius_rate,
    charge_balance_at,
    equilibrium_constants,
    extent_and_slope_at,
    extent_at,
    ph_activity_parameters,
    rate_at,
    strong_ions_at,
)
from ei_keras.simulation.simulator import (
    _GAUSS_W,
    _GAUSS_X,
    _NODE_TARGETS,
    _PLACEMENT_FRACTIONS,
    CONDITION_LIMITS,
    CONDITION_NAMES,
    PROGRESS_EXTENT_SCALE,
    PROGRESS_LOG_STEP,
    PROGRESS_PH_STEP,
    SMALLEST_FRACTION,
)

# Up to this many parameter sets a call goes through the kernel; a larger batch (a
# forecast's draws, data generation) is what the vectorised numpy simulator is built for.
KERNEL_CASES = 16
_END_POINT_HALVINGS = 44
_LARGEST = float(np.finfo(float).max)
_LIMITS = np.array([CONDITION_LIMITS[name] for name in CONDITION_NAMES])
# IEEE arithmetic (0/0 is nan, as in numpy); no cache but the entry point's (see above).
_JIT = {"error_model": "numpy", "nogil": True}


def case_constants(known, options):
    """The constants a call shares: substrate0 [M], k(T), the pH activity's four
    parameters, K_w, K_a(NH4+), K_a1, K_a2 and the initial carbon [M], as one array."""
    temperature = np.float64(known["temperature_C"])
    kw, ka_nh4, ka1, ka2 = equilibrium_constants(temperature, options)
    return np.array([known["substrate_mM"] / 1000.0, arrhenius_rate(temperature),
                     *ph_activity_parameters(temperature, options), kw, ka_nh4, ka1, ka2,
                     options.initial_co2_uM * 1e-6], dtype=float)


@numba.njit(**_JIT)
def _end_point_pH(substrate0, kw, ka_nh4, ka1, ka2, strong, carbon0):
    """pH once all urea is hydrolysed: bisection of the charge balance on [0, 14]."""
    low, width = 0.0, 14.0
    for _ in range(_END_POINT_HALVINGS):
        width *= 0.5
        if not charge_balance_at(10.0 ** -(low + width), 2.0 * substrate0, carbon0 + substrate0,
                                 kw, ka_nh4, ka1, ka2, strong) < 0:
            low += width
    return low + 0.5 * width


@numba.njit(**_JIT)
def _node_fractions(end_pH, span, substrate0, kw, ka_nh4, ka1, ka2, strong, carbon0):
    """Descending fractions of the way left to the end pH: the nodes evenly in progress
    and the K_p knots (as ``simulator._node_fractions`` places them)."""
    count = len(_PLACEMENT_FRACTIONS)
    progress = np.empty(count)
    first = end_pH - span * _PLACEMENT_FRACTIONS[0]
    highest = -np.inf
    for i in range(count):
        pH = end_pH - span * _PLACEMENT_FRACTIONS[i]
        extent = extent_at(10.0 ** -pH, kw, ka_nh4, ka1, ka2, strong, carbon0)
        extent = min(max(extent, 0.0), substrate0) if not math.isnan(extent) else extent
        urea_left = max(substrate0 - extent, SMALLEST_FRACTION * substrate0)
        value = (abs(pH - first) / PROGRESS_PH_STEP
                 + (math.log1p(extent / PROGRESS_EXTENT_SCALE) + math.log(substrate0 / urea_left))
                 / PROGRESS_LOG_STEP)
        if not math.isfinite(value):  # as np.nan_to_num: nan to 0, ±inf to the largest float
            value = 0.0 if math.isnan(value) else math.copysign(_LARGEST, value)
        highest = max(highest, value)
        progress[i] = highest
    nodes = np.interp(_NODE_TARGETS * progress[-1], progress, _PLACEMENT_FRACTIONS)
    knots = (end_pH - KP_KNOTS_PH) / (span if span != 0 else 1.0)
    for k in range(len(knots)):
        if not (SMALLEST_FRACTION < knots[k] < 1.0):
            knots[k] = 1.0
    return -np.sort(-np.concatenate((nodes, knots)))


@numba.njit(**_JIT)
def _table(pH0, constants):
    """Warped time at each node and the Hermite cubic of pH per interval, for one pH0:
    ``(tau, inverse_width, cubic (4, K - 1), finite)``."""
    substrate0, rate_constant, pk1, pk2, alpha, beta, kw, ka_nh4, ka1, ka2, carbon0 = constants
    strong = strong_ions_at(10.0 ** -pH0, kw, ka1, ka2, carbon0)
    end_pH = pH0
    if substrate0 > 0:
        end_pH = _end_point_pH(substrate0, kw, ka_nh4, ka1, ka2, strong, carbon0)
    span = end_pH - pH0
    fractions = _node_fractions(end_pH, span, substrate0, kw, ka_nh4, ka1, ka2, strong, carbon0)
    nodes = len(fractions)

    def along(fraction):
        """pH, extent and d tau / d fraction at a fraction left."""
        pH = end_pH - span * fraction
        extent, extent_slope = extent_and_slope_at(10.0 ** -pH, kw, ka_nh4, ka1, ka2, strong,
                                                   carbon0)
        extent = min(max(extent, 0.0), substrate0) if not math.isnan(extent) else extent
        rate = rate_at(extent, pH, substrate0, rate_constant, pk1, pk2, alpha, beta)
        return pH, extent, extent_slope * span / rate

    pH_nodes, slopes = np.empty(nodes), np.empty(nodes)
    finite = True
    for k in range(nodes):
        pH_nodes[k], extent, tau_slope = along(fractions[k])
        slopes[k] = span / tau_slope if span != 0 else 0.0
        finite &= math.isfinite(extent)
    increments = np.empty(nodes - 1)
    for k in range(nodes - 1):
        log_lo, log_hi = math.log(fractions[k]), math.log(fractions[k + 1])
        half = 0.5 * (log_lo - log_hi)
        total = 0.0
        for g in range(len(_GAUSS_X)):
            point = math.exp(0.5 * (log_lo + log_hi) + half * _GAUSS_X[g])
            total += along(point)[2] * point * half * _GAUSS_W[g]
        increments[k] = total
    # Where round-off hides the end point, hold it (``simulator._hold_unreachable_end``).
    for k in range(nodes):
        if not math.isfinite(slopes[k]):
            slopes[k] = 0.0
    for k in range(nodes - 1):
        if not math.isfinite(increments[k]) or increments[k] < 0:
            step = increments[k - 1] if k > 0 else 1.0
            increments[k:] = step if step > 0 else 1.0
            pH_nodes[k + 1:] = pH_nodes[k]
            slopes[k + 1:] = 0.0
            break
    tau = np.zeros(nodes)
    if span == 0:
        tau[:] = np.arange(nodes)
    else:
        for k in range(nodes - 1):
            tau[k + 1] = tau[k] + increments[k]
    width = np.diff(tau)
    inverse_width = np.where(width > 0, 1.0 / width, 0.0)
    rise = np.diff(pH_nodes)
    slope_left, slope_right = slopes[:-1] * width, slopes[1:] * width
    cubic = np.empty((4, nodes - 1))
    cubic[0], cubic[1] = pH_nodes[:-1], slope_left
    cubic[2] = 3.0 * rise - 2.0 * slope_left - slope_right
    cubic[3] = -2.0 * rise + slope_left + slope_right
    finite &= np.isfinite(tau).all() and np.isfinite(cubic).all()
    return tau, inverse_width, cubic, finite


@numba.njit(**_JIT)
def _true_pH(tau_nodes, inverse_width, cubic, enzyme, k_d, times, out):
    """True pH at the sorted ``times`` for one (E0, k_d) into ``out``: warped time, the
    interval by the last node reached in real time, Horner evaluation."""
    intervals = len(inverse_width)
    node_t = np.empty(len(tau_nodes))  # real time at which each node is reached
    for k in range(len(tau_nodes)):
        fraction = tau_nodes[k] / enzyme
        node_t[k] = -math.log1p(-k_d * fraction) / k_d if k_d > 0 else fraction
        if math.isnan(node_t[k]) or k_d * fraction >= 1.0:
            node_t[k] = math.inf
        if tau_nodes[k] == 0:
            node_t[k] = 0.0
    passed = 0
    for j in range(len(times)):
        t = times[j]
        while passed < len(node_t) and node_t[passed] <= t:
            passed += 1
        interval = min(max(passed, 1), intervals) - 1
        warped = (-math.expm1(-k_d * t) / k_d if k_d > 0 else t) * enzyme
        s = (warped - tau_nodes[interval]) * inverse_width[interval]
        s = min(max(s, 0.0), 1.0)
        out[j] = ((cubic[3, interval] * s + cubic[2, interval]) * s + cubic[1, interval]) * s \
            + cubic[0, interval]


@numba.njit(**_JIT)
def _step_coefficients(step, rate):
    """e^{-h/tau} and the mean of e^{-s/tau} over the step (both 1 for h = 0; 0 and 0
    without lag, rate inf): as ``measurement._step_coefficients``."""
    if step == 0:
        return 1.0, 1.0
    steps = step * rate
    decayed = -math.expm1(-steps)
    return 1.0 - decayed, decayed / steps


@numba.njit(**_JIT)
def _within_limits(conditions, tau_probe):
    for i in range(conditions.shape[0]):
        for value in conditions[i]:
            if not (_LIMITS[i, 0] <= value <= _LIMITS[i, 1]):
                return False
    for value in tau_probe:
        if not (0.0 <= value < math.inf):
            return False
    return True


def _source_fingerprint():
    """SHA-256 of chemistry.py and simulator.py, whose formulas and constants the kernel
    compiles in."""
    digest = hashlib.sha256()
    for module in (chemistry, simulator):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _entry_point(fingerprint):
    """The kernel's entry point, cached by numba under ``fingerprint`` too; where numba
    finds no writable cache folder (a read-only install without a home folder), compiled
    afresh in each process instead."""

    def probe_readings(conditions, tau_probe, constants, times, grid, on_grid, at_readings,
                       before, step):
        """Lagged probe pH (b, m) of the cases ``conditions`` (7, b; rows in
        ``CONDITION_NAMES`` order, ``initial_pH`` the true pH0) with probe time constants
        ``tau_probe`` (b,), read where
        :class:`~ei_keras.simulation.measurement.ReadingTimes` places the readings
        (``times``, ``grid``, ``on_grid``, ``at_readings``, ``before``, ``step``). Returns
        ``(readings, ok)``; not ``ok`` (nothing computed) where a condition lies outside its
        limits or a table is not finite: the numpy simulator then answers or raises."""
        fingerprint  # noqa: B018 (a closure cell: numba keys the cache on its value)
        b = conditions.shape[1]
        readings = np.empty((b, len(at_readings)))
        if not _within_limits(conditions, tau_probe):
            return readings, False
        true_all, lag = np.empty(len(times)), np.empty(len(grid))
        tables_pH0 = np.empty(b)
        tables = []
        for case in range(b):
            pH0 = conditions[4, case]
            table = -1
            for other in range(len(tables)):  # a fit's neighbours share all but the offset
                if tables_pH0[other] == pH0:
                    table = other
            if table < 0:
                tau_nodes, inverse_width, cubic, finite = _table(pH0, constants)
                if not finite:
                    return readings, False
                tables_pH0[len(tables)] = pH0
                tables.append((tau_nodes, inverse_width, cubic))
                table = len(tables) - 1
            tau_nodes, inverse_width, cubic = tables[table]
            enzyme = conditions[5, case] * conditions[1, case] / conditions[2, case]
            _true_pH(tau_nodes, inverse_width, cubic, enzyme, conditions[6, case], times,
                     true_all)
            rate = 1.0 / tau_probe[case] if tau_probe[case] > 0 else math.inf
            lag[0] = true_all[on_grid[0]]
            for k in range(1, len(grid)):
                decay, mean_decay = _step_coefficients(grid[k] - grid[k - 1], rate)
                u0, u1 = true_all[on_grid[k - 1]], true_all[on_grid[k]]
                lag[k] = decay * lag[k - 1] + ((u1 - (u1 - u0) * mean_decay) - decay * u0)
            for r in range(len(at_readings)):
                decay, mean_decay = _step_coefficients(step[r], rate)
                u0, u1 = true_all[on_grid[before[r]]], true_all[at_readings[r]]
                readings[case, r] = \
                    decay * (lag[before[r]] - u0) + u1 - mean_decay * (u1 - u0)
        return readings, True

    try:
        return numba.njit(cache=True, **_JIT)(probe_readings)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**_JIT)(probe_readings)


probe_readings = _entry_point(_source_fingerprint())

