"""The classical baseline (physics.md §10): bounded least squares of the measured pH.

Trust-region-reflective least squares over log10 activity, k_d and whichever nuisance
parameters are switched on, each of which enters the measurement model: tau_probe through
the probe lag, pH_offset through every reading *and* through the true pH0 = measured
initial pH − offset. The Jacobian is taken by forward differences evaluated as one batched
simulator call (all perturbed parameter sets at once), so a fit costs a few dozen batched
simulations instead of hundreds of ODE solves.
"""

import numpy as np
from scipy.optimize import least_squares

from ei_keras.errors import EiKerasError
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.chemistry import SimulationOptions
from ei_keras.simulation.measurement import ReadingTimes
from ei_keras.simulation.readings_kernel import KERNEL_CASES, case_constants, probe_readings
from ei_keras.simulation.simulator import CONDITION_NAMES
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES

FIT_DEFAULT = ("activity", "k_d")


def validate_trace(t, pH, *, min_points=3):
    """Return (t, pH) as float arrays of one probe trace, or raise a one-line EiKerasError."""
    t = np.asarray(t, dtype=float)
    pH = np.asarray(pH, dtype=float)
    if t.ndim != 1 or pH.shape != t.shape:
        raise EiKerasError(
            f"t and pH must be 1-D of the same length; got shapes {t.shape} and {pH.shape}")
    if t.size < min_points:
        raise EiKerasError(f"the trace has {t.size} readings; give at least {min_points}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(pH))):
        raise EiKerasError("the trace contains NaN or infinite values; remove those readings")
    if t[0] < 0 or np.any(np.diff(t) <= 0):
        raise EiKerasError(
            "times must start at >= 0 s and strictly increase (no duplicates); sort the trace")
    if np.any((pH < 0) | (pH > 14)):
        raise EiKerasError("pH readings must lie within 0–14; check the units of the pH column")
    return t, pH


def validate_known(known) -> dict:
    """The five known inputs as floats; ``initial_pH`` is the measured initial pH."""
    if not hasattr(known, "keys"):
        raise EiKerasError(f"known must be a mapping with keys {list(KNOWN_NAMES)}")
    missing = [name for name in KNOWN_NAMES if name not in known]
    unknown = sorted(set(known) - set(KNOWN_NAMES))
    if missing or unknown:
        raise EiKerasError(
            f"known inputs: missing {missing}, unknown {unknown}; expected {list(KNOWN_NAMES)}")
    return {name: float(np.asarray(known[name], dtype=float)) for name in KNOWN_NAMES}


def predict_readings(t, known, latent, *, options=None):
    """Noise-free measured pH at ``t`` for each parameter set in ``latent``.

    ``latent`` maps each of activity, k_d, tau_probe, pH_offset to a (b,) array (a missing
    nuisance parameter is 0); ``known`` holds scalars. Returns (b, len(t)).
    """
    return ReadingsModel(t, known, options=options)(latent)


class ReadingsModel:
    """:func:`predict_readings` at one trace's times ``t`` and known inputs, for many
    parameter sets in turn (a fit's steps): the times are checked and placed on the probe's
    grid once (:class:`~ei_keras.simulation.measurement.ReadingTimes`). Up to
    ``KERNEL_CASES`` parameter sets a call runs the compiled kernel
    (:mod:`ei_keras.simulation.readings_kernel`, ~4× faster than the numpy simulator for a
    fit's few sets, the same readings to rounding); more, or anything the kernel leaves to
    numpy, run the numpy simulator, where sets that share an offset, so an initial pH,
    share one tabulation of the chemistry."""

    def __init__(self, t, known, *, options=None):
        self.times = ReadingTimes(t)
        self.options = SimulationOptions.coerce(options)
        self.known = {}
        for name in KNOWN_NAMES:
            try:
                self.known[name] = float(known[name])
            except (TypeError, ValueError):
                raise EiKerasError(f"{name} must be a number; got {known[name]!r}") from None
        # One column of the simulator's conditions; activity and k_d are filled per call.
        self._conditions = np.array([self.known.get(name, np.nan) for name in CONDITION_NAMES])
        self._constants = case_constants(self.known, self.options)  # the kernel's

    def __call__(self, latent):
        """(b, len(t)) readings for ``latent`` as :func:`predict_readings` takes it."""
        activity = np.atleast_1d(np.asarray(latent["activity"], dtype=float))
        b = activity.size
        offset = np.broadcast_to(np.asarray(latent.get("pH_offset", 0.0), dtype=float), (b,))
        tau = np.broadcast_to(np.asarray(latent.get("tau_probe", 0.0), dtype=float), (b,))
        conditions = np.repeat(self._conditions[:, None], b, axis=1)
        rows = dict(zip(CONDITION_NAMES, conditions))
        rows["initial_pH"] -= offset
        rows["activity"][:] = activity
        rows["k_d"][:] = np.asarray(latent["k_d"], dtype=float)
        if b <= KERNEL_CASES:
            probe = self._kernel(conditions, tau)
            if probe is not None:
                return probe + offset[:, None]
        probe = self.times.response(rows, tau, options=self.options)[1]
        return probe + offset[:, None]

    def _kernel(self, conditions, tau):
        """The kernel's readings, or None where it leaves the case to the numpy simulator."""
        times = self.times
        # A writable copy: one array type whatever ``tau`` was, so one compiled signature.
        readings, ok = probe_readings(
            conditions, np.array(tau, dtype=float), self._constants, times.times, times.grid,
            times.on_grid, times.at_readings, times.before, times.step[:, 0])
        return readings if ok else None


def compile_kernel():
    """Compile :class:`ReadingsModel`'s kernel into numba's cache now; ``make install`` does
    it, so that the first ``infer`` of a new install does not wait ~12 s for it."""
    known = {"substrate_mM": 50.0, "grams_urease_powder": 0.1, "volume_L": 0.1,
             "temperature_C": 25.0, "initial_pH": 7.0}
    predict_readings(np.linspace(0.0, 60.0, 61), known,
                     {"activity": np.array([0.05]), "k_d": np.array([1e-3]),
                      "tau_probe": np.array([5.0])})


def fit_least_squares(t, pH, known, *, fit=FIT_DEFAULT, param_ranges=None, n_starts=3,
                      options=None, return_details=False):
    """Best-fit latent parameters of one probe trace by bounded TRF least squares.

    Parameters
    ----------
    t, pH : array_like
        The readings: strictly increasing seconds from 0 and measured pH.
    known : mapping
        substrate_mM, grams_urease_powder, volume_L, temperature_C and the *measured*
        initial_pH.
    fit : sequence of str
        Parameters to fit: activity and k_d, plus tau_probe and/or pH_offset when the
        probe lag / offset are part of the measurement model (others are held at 0).
    param_ranges : mapping, optional
        ``name -> (low, high)`` bounds; defaults to the priors of physics.md §7.
    n_starts : int
        Starts spread over log10 activity; the lowest cost wins.
    options : mapping, optional
        Simulator options.
    return_details : bool
        Also return a dict with ``rmse``, ``cost``, ``n_evaluations``, ``success``.

    Returns
    -------
    dict mapping each fitted name to its value in physical units (activity, k_d [1/s],
    tau_probe [s], pH_offset [pH]); with ``return_details``, ``(values, details)``.
    """
    t, pH = validate_trace(t, pH)
    known = validate_known(known)
    fit = tuple(fit)
    if not {"activity", "k_d"} <= set(fit) or not set(fit) <= set(LATENT_NAMES) or len(
            set(fit)) != len(fit):
        raise EiKerasError(
            f"fit must contain activity and k_d and optionally tau_probe, pH_offset; got {fit}")
    ranges = {**DEFAULT_PARAM_RANGES, **(param_ranges or {})}
    lower = np.array([np.log10(ranges[n][0]) if n == "activity" else ranges[n][0] for n in fit])
    upper = np.array([np.log10(ranges[n][1]) if n == "activity" else ranges[n][1] for n in fit])
    width = upper - lower

    def latent(x):  # x: (b, p) in fitting coordinates
        values = {name: x[:, i] for i, name in enumerate(fit)}
        values["activity"] = 10.0 ** values["activity"]
        return values

    readings_at = ReadingsModel(t, known, options=options)

    def residuals(x):
        return readings_at(latent(x[None, :]))[0] - pH

    def jacobian(x):
        step = 1e-6 * width
        step = np.where(x + step > upper, -step, step)
        points = np.vstack([x, x + np.diag(step)])
        predicted = readings_at(latent(points))
        return ((predicted[1:] - predicted[0]) / step[:, None]).T

    # Starts: activity spread over its range; k_d low, tau_probe a third in, offset central.
    start_fractions = {"activity": 0.5, "k_d": 0.2, "tau_probe": 0.3, "pH_offset": 0.5}
    start = lower + width * np.array([start_fractions[name] for name in fit])
    best, evaluations = None, 0
    for fraction in (np.arange(n_starts) + 0.5) / n_starts:
        start[0] = lower[0] + fraction * width[0]
        result = least_squares(residuals, start, jac=jacobian, bounds=(lower, upper),
                               method="trf", x_scale=width, xtol=1e-10, ftol=1e-10)
        evaluations += result.nfev
        if best is None or result.cost < best.cost:
            best = result
    values = {name: float(value) for name, value in zip(fit, best.x)}
    values["activity"] = float(10.0 ** best.x[0])
    if not return_details:
        return values
    return values, {"rmse": float(np.sqrt(2 * best.cost / t.size)), "cost": float(best.cost),
                    "n_evaluations": int(evaluations), "success": bool(best.success)}
