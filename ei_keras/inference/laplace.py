"""The local Laplace approximation of one trace's posterior, and the sharpening it gives.

Coordinates and prior are those of the exact posterior
(:mod:`ei_keras.inference.exact_posterior`): each free latent θ in its *prior coordinate*
u (the logit of its position in its prior range, of log θ for the log-uniform activity),
where the prior is the standard logistic. :func:`laplace_mode` finds the posterior mode in
u by damped Gauss–Newton on the simulator's readings and returns the Hessian there.

Why sharpen. The network's posterior is amortised: on long, informative traces it leaves
information unused (held out, its σ was up to 2–3× the exact posterior's at 300–600 s).
Where the readings pin a parameter down, the posterior is close to Gaussian about its
mode, and the likelihood's curvature there gives its width. :func:`local_fits` runs
Gauss–Newton from the network's median to the mode; :func:`sharpen` then answers a
parameter of a trace spanning at least ``SHARPEN_FROM_S`` from that fit where the readings
carry most of its precision (the prior's share below ``PRIOR_SHARE``): centred on the mode,
with the Laplace σ blended with the network's and scaled as calibrated on held-out traces
(``LAPLACE_WEIGHTS``, ``LAPLACE_FACTORS``); elsewhere (short traces, parameters the
readings leave open, where the posterior is far from Gaussian) the network's answer stands.
The same simulations are the misfit check's first look (the best explanation they found).
"""

import math

import numpy as np
from scipy.special import expit, log_expit
from tqdm.auto import tqdm

from ei_keras.errors import EiKerasError
from ei_keras.inference.domain import MISFIT_RATIO
from ei_keras.inference.least_squares import ReadingsModel
from ei_keras.models import model_info
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES, LOG_UNIFORM_NAMES
from ei_keras.targets import forward_transform, inverse_transform, physical_moments

# Training noise σ (pH) assumed for a model that does not record its domain.
DEFAULT_NOISE_STD = 0.01
_NUISANCE_SWITCHES = {"tau_probe": "use_probe_lag", "pH_offset": "use_offset"}
# Damped Gauss–Newton: at most MAX_STEP in u per step. A step that does not lower the
# negative log posterior is tried again at SHORTEN of its length, and the fraction of the
# Gauss–Newton step taken is kept for the next steps, grown back by GROW after each
# accepted one: along a curved ridge (activity against the probe lag, k_d against the
# offset) the full steps overshoot again and again, and trying each one first cost two
# wasted simulations a time (a fifth of the fits, half of all their simulations). Below
# MIN_FRACTION the fit stops.
MAX_STEP = 3.0
SHORTEN = 0.25
GROW = 2.0
MIN_FRACTION = 0.01
# A step predicted to gain less than this (in log density) is the last, and is taken
# without simulating it: its Hessian is the one it was computed from. Near the mode a
# Gauss–Newton step is reliable, and checking it cost a simulation per fit. On 400
# held-out traces of 60–600 s (benchmarks/local_fit_convergence.py --data
# data/test_grid.h5) a fit takes 3.75 simulations (4.37 with every step checked; 5.47 with
# differences of 1e-4 below; 6.8 on the 300–600 s traces with the step search before), and
# its mode lies within 0.05 posterior σ of a far tighter fit's in 9 of 10 fits, within 0.3 σ
# in all but one (0.75 σ, as with every step checked).
FINAL_STEP = 0.1
# Forward-difference step in u of the Jacobian. The simulator's readings carry round-off of
# ~1e-8 pH that moves with the offset (the node grid follows the initial pH); at 1e-4 that
# put errors of a few per cent into the offset's gradient near the mode, enough to send
# Gauss–Newton back and forth along the flat k_d–offset direction.
DIFFERENCE_STEP = 1e-3
# A network median outside the prior range starts the fit this share of the range inside
# its nearer edge. Started from the prior's median instead, the fits of traces whose truth
# lay at the edge (activity 0.001) stopped far from it, missing the readings by 60–80× the
# noise where the network's answer was right.
START_MARGIN = 1e-3
# Simulated Gauss–Newton tries from the network's median at most (it stops once
# converged). Held out, a fit stopped after one or two steps was too narrow for its error
# (its interval centred off the mode); run to the mode, the Laplace σ matched the errors.
SHARPEN_STEPS = 20
# A parameter is answered from the local fit only when the prior carries less than this
# share of its marginal precision there (the readings carry the rest). At 0.1 the offset was
# answered from the fit on 1 long trace in 6 (calibration set) and elsewhere kept the
# network's σ, up to 2–3× the exact posterior's; at 0.3 on 1 in 3, the fit's intervals as
# well calibrated (its factor below absorbs the prior's non-Gaussian share).
PRIOR_SHARE = 0.3
# Only traces spanning at least this long are sharpened. Up to 60 s the network already
# agrees with the exact posterior (median σ ratio per format cell 0.94–1.19), and there the
# local Gaussian can mislead: held out, sharpening 10 s traces raised the forecast RMSE from
# 0.195 to 0.264 pH (the activity–probe-lag trade-off is far from Gaussian that early).
SHARPEN_FROM_S = 60.0
# Where a parameter is answered from the fit, its σ is f · σ_fit^w · σ_net^(1 − w): the
# Laplace σ blended geometrically with the network's, times a factor. On the calibration set
# (benchmarks/sharpen_calibration.py --data data/calib.h5, 20 000 traces, never a test set)
# where the two disagree the truth's scatter lies between them for activity and the probe
# lag (the fit too wide where it is the wider, too narrow where it is far the narrower), while
# for k_d and the offset the fit (nearly) alone is right: LAPLACE_WEIGHTS are the w that give
# the truths the highest likelihood. Taking the narrower of the two instead, as before, left
# the intervals too narrow where the network was the overconfident one (74 % of the k_d and
# 70 % of the offset truths inside its 90 % intervals on such traces). LAPLACE_FACTORS, f,
# make the 90 % intervals hold 90 % of the truths, per parameter for traces spanning less
# than LONG_SPAN_S and as long or longer: above 1 where the posterior is curved or skewed,
# wider than the curvature at the mode says, as k_d's is until the run is long enough for
# the enzyme's decay to show (on the calibration set k_d needs 1.21 below 200 s and 1.05
# from 200 s on; banded by readings instead, 1.10 / 1.09, its 120 s cells held 87 %). Set
# again with the local fit of 2026-11-30 (its modes closer to the true ones); to 2 decimals.
LONG_SPAN_S = 200.0
LAPLACE_WEIGHTS = {"activity": 0.75, "k_d": 1.0, "tau_probe": 0.75, "pH_offset": 0.9}
LAPLACE_FACTORS = {"activity": (0.86, 0.85), "k_d": (1.21, 1.05), "tau_probe": (0.96, 0.94),
                   "pH_offset": (1.07, 1.06)}


def exact_prior(model, domain=None) -> dict:
    """The prior :func:`refine` uses: the model's training domain with ``domain`` over it.

    Returns ``{"param_ranges": {latent: (lo, hi)}, "noise_std", "use_probe_lag",
    "use_offset"}``. A model that does not record its domain gets the default priors of
    physics.md §7, σ = 0.01 and both nuisance parameters switched on: with them on, the
    exact posterior marginalises over a lag or offset that may be absent (τ = 0 and
    offset 0 lie inside the prior), so it can only be wider than needed, never too sharp.
    ``domain`` may override any key (``param_ranges`` per name).
    """
    recorded = dict(model_info(model).get("domain") or {})
    override = dict(domain or {})
    ranges = {**DEFAULT_PARAM_RANGES, **(recorded.get("param_ranges") or {}),
              **(override.get("param_ranges") or {})}
    prior = {"param_ranges": {name: (float(ranges[name][0]), float(ranges[name][1]))
                              for name in LATENT_NAMES}}
    for key, default in (("noise_std", DEFAULT_NOISE_STD), ("use_probe_lag", True),
                         ("use_offset", True)):
        value = override.get(key, recorded.get(key))
        prior[key] = default if value is None else value
    prior["noise_std"] = float(prior["noise_std"])
    for name, (low, high) in prior["param_ranges"].items():
        if not (math.isfinite(low) and math.isfinite(high) and low <= high) or (
                name in LOG_UNIFORM_NAMES and low <= 0):
            raise EiKerasError(f"prior range of {name} must be finite with low <= high "
                               f"(low > 0 for a log-uniform one); got {(low, high)}")
    return prior


class PriorSpace:
    """The free latents, their prior coordinates u and the fixed ones.

    A latent is fixed (at 0) when its nuisance switch is off, or at ``low`` when its prior
    range is a single point; the rest are free, uniform or log-uniform on their range.
    """

    def __init__(self, prior):
        self.fixed, self.names, lows, widths, logs = {}, [], [], [], []
        for name in LATENT_NAMES:
            low, high = prior["param_ranges"][name]
            if name in _NUISANCE_SWITCHES and not prior[_NUISANCE_SWITCHES[name]]:
                self.fixed[name] = 0.0
            elif low == high:
                self.fixed[name] = low
            else:
                log = name in LOG_UNIFORM_NAMES
                self.names.append(name)
                logs.append(log)
                lows.append(math.log(low) if log else low)
                widths.append(math.log(high / low) if log else high - low)
        if not self.names:
            raise EiKerasError("every latent parameter is fixed by the prior; nothing to infer")
        self.log = np.array(logs)
        self.low, self.width = np.array(lows), np.array(widths)

    def theta(self, u):
        """(b, d) prior coordinates → (b, d) physical values, always inside the range."""
        x = self.low + self.width * expit(u)
        return np.where(self.log, np.exp(x), x)

    def u(self, j, theta, *, margin=None):
        """Physical values of free latent ``j`` → its prior coordinate; nan outside the
        open range, or with ``margin`` moved inside it by at least that share of it (nan
        only for nan)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log(theta) if self.log[j] else theta
            fraction = (x - self.low[j]) / self.width[j]
            if margin is not None:
                fraction = np.clip(fraction, margin, 1.0 - margin)
            u = np.log(fraction) - np.log1p(-fraction)
        return np.where(np.isfinite(u), u, np.nan)

    def log_prior(self, u):
        """Log prior density in u (standard logistic per free latent), (b,)."""
        return np.sum(log_expit(u) + log_expit(-u), axis=1)

    def log_dtheta_du(self, u, theta):
        """log |dθ/du| per free latent, (b, d)."""
        log = np.log(self.width) + log_expit(u) + log_expit(-u)
        return np.where(self.log, log + np.log(np.where(self.log, theta, 1.0)), log)

    def latents(self, theta):
        """(b, d) free values → the dict of all four latents ``predict_readings`` takes."""
        values = {name: theta[:, j] for j, name in enumerate(self.names)}
        for name, value in self.fixed.items():
            values[name] = np.full(theta.shape[0], value)
        return values


def log_dz_dtheta(transform, theta, bounds):
    """log |dz/dθ| of the network's transform z(θ); -inf where z is undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if transform == "identity":
            return np.zeros_like(theta)
        if transform == "log10":
            return np.where(theta > 0, -np.log(theta) - math.log(math.log(10.0)), -np.inf)
        if transform == "logit":
            low, high = bounds
            inside = (theta > low) & (theta < high)
            return np.where(inside, math.log(high - low) - np.log(theta - low)
                            - np.log(high - theta), -np.inf)
    raise EiKerasError(f"refine does not know the Jacobian of the {transform!r} transform")


def network_z(transform, theta, bounds):
    """z(θ) without the logit's clipping: nan outside the bounds."""
    if transform == "logit":
        low, high = bounds
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log(theta - low) - np.log(high - theta)
        return np.where((theta > low) & (theta < high), z, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return forward_transform(transform, theta, bounds)


def curvature(points, residuals, step=DIFFERENCE_STEP):
    """Gauss–Newton terms of the negative log posterior at each of ``points`` (k, d):
    χ² (k,), gradient (k, d) and Hessian (k, d, d), from one batched simulation of the
    points and their forward-difference neighbours. The Hessian is JᵀJ plus the logistic
    prior's curvature 2 σ(u) σ(−u), so it is positive definite even along a direction the
    readings do not constrain."""
    k, d = points.shape
    shifted = points[:, None, :] + step * np.eye(d)[None]
    r = residuals(np.concatenate([points, shifted.reshape(k * d, d)]))
    r0, r1 = r[:k], r[k:].reshape(k, d, -1)
    jacobian = (r1 - r0[:, None, :]) / step
    sig = expit(points)
    gradient = np.einsum("kdm,km->kd", jacobian, r0) - (1.0 - 2.0 * sig)
    hessian = np.einsum("kdm,kem->kde", jacobian, jacobian) + \
        np.eye(d)[None] * (2.0 * sig * (1.0 - sig))[:, None, :]
    return np.sum(r0**2, axis=1), gradient, hessian


def laplace_mode(start, space, residuals, *, max_steps=20, tolerance=1e-2,
                 final_step=FINAL_STEP, step=DIFFERENCE_STEP):
    """Mode of the posterior in u by damped Gauss–Newton from ``start``, and the Hessian
    there; ``residuals(u (k, d)) -> (k, m)`` standardised residuals.

    Each try simulates a step together with its forward-difference neighbours (one small
    batched simulation, which also gives the next step's Hessian; ``step``: the
    differences' step). A try that does not lower the negative log posterior is retried
    shorter (``SHORTEN``), and the shortened fraction of the Gauss–Newton step carries over
    to the next steps (grown back by ``GROW`` after each accepted one). It stops when the
    step's predicted decrease is below ``tolerance`` (in log density), when the fraction
    falls below ``MIN_FRACTION``, or after ``max_steps`` tries; a step predicted to gain
    less than ``final_step`` is taken unchecked as the last (its Hessian the one it came
    from). Returns ``(mode, hessian, chi2)``, χ² at the last point simulated (the mode, or
    the point the unchecked step left); the Hessian is None where it is not finite."""
    u = np.asarray(start, dtype=float)

    def objective(points, chi):
        return np.where(np.isfinite(chi), 0.5 * chi - space.log_prior(points), np.inf)

    chi, gradient, hessian = (value[0] for value in curvature(u[None, :], residuals, step))
    current = float(objective(u[None, :], np.array([chi]))[0])
    fraction = 1.0
    for _ in range(max_steps):
        if not (np.all(np.isfinite(hessian)) and np.all(np.isfinite(gradient))):
            return u, None, float(chi)
        delta = -np.linalg.solve(hessian, gradient)
        gain = -0.5 * gradient @ delta
        if gain < tolerance:
            break
        delta *= min(1.0, MAX_STEP / max(np.max(np.abs(delta)), 1e-300))
        if gain < final_step:
            return u + delta, hessian, float(chi)
        trial = u + fraction * delta
        moved = curvature(trial[None, :], residuals, step)
        value = float(objective(trial[None, :], moved[0])[0])
        if value < current - 1e-6:
            u, current = trial, value
            chi, gradient, hessian = (entry[0] for entry in moved)
            fraction = min(1.0, GROW * fraction)
        else:
            fraction *= SHORTEN
            if fraction < MIN_FRACTION:
                break
    return u, hessian, float(chi)


def start_point(space, decoded, row):
    """The network's median of trace ``row`` in u, moved inside the prior range by at least
    ``START_MARGIN`` of it (the network answers activity in an unbounded space); 0 (the
    prior's median) for a latent the network does not infer."""
    u = np.zeros(len(space.names))
    for j, name in enumerate(space.names):
        if name in decoded:
            d = decoded[name]
            theta = inverse_transform(d["transform"], np.float64(d["loc"][row]), d.get("bounds"))
            value = float(space.u(j, theta, margin=START_MARGIN))
            u[j] = value if math.isfinite(value) else 0.0
    return u


def local_fits(prior, decoded, t, pH, known_rows, *, steps=SHARPEN_STEPS, min_span_s=0.0,
               mode_from_s=0.0, explained_rms=None, progress=False) -> list:
    """Per trace, the local Laplace fit of the posterior from the network's median (up to
    ``steps`` simulated Gauss–Newton tries; it stops once converged); None, with no
    simulation, for a trace spanning less than ``min_span_s`` (``SHARPEN_FROM_S`` where only
    :func:`sharpen` will read the fits).

    A trace spanning less than ``mode_from_s`` needs no mode, only the misfit check's
    verdict (:func:`ei_keras.inference.posterior.misfit_candidates`): where the network's
    median alone explains its readings within ``explained_rms`` (RMS, pH), that one
    simulation is its fit (``mode`` and ``cov`` None) and the check is settled; elsewhere
    it is fitted to the mode like the rest.

    ``prior`` as :func:`exact_prior` returns it; ``decoded`` the network's answer (a
    :meth:`~ei_keras.targets.TargetCodec.decode` result); ``t``, ``pH`` (n, m) with NaN
    where a trace has no reading; ``known_rows`` (n, 5). Returns per trace a dict:
    ``space`` (the :class:`PriorSpace`), ``mode`` (d,) and ``cov`` (d, d) in u (``cov`` None
    where the Hessian is not finite; scaled by χ²/(m − d) where the readings scatter more
    than the trained noise), ``chi2`` at the mode (at the median where only the verdict
    was needed) and ``best``, the noise-free readings (m,) of the best explanation any of
    its simulations gave (NaN where ``pH`` is), ``span_s`` (the time from its first reading
    to its last) and ``readings`` (m). ``progress``: show a progress bar (for a whole test
    set)."""
    space = PriorSpace(prior)
    sigma = prior["noise_std"]
    fits = []
    for row in tqdm(range(len(t)), desc="local fits", disable=not progress):
        valid = np.isfinite(t[row]) & np.isfinite(pH[row])
        times, readings = t[row, valid].astype(float), pH[row, valid].astype(float)
        span = float(times[-1] - times[0]) if times.size else 0.0
        if span < min_span_s:
            fits.append(None)
            continue
        known = dict(zip(KNOWN_NAMES, np.asarray(known_rows[row], dtype=float)))
        best = {"chi2": np.inf, "readings": None}
        start = start_point(space, decoded, row)

        readings_at = ReadingsModel(times, known)

        def residuals(u):
            predicted = readings_at(space.latents(space.theta(u)))
            standardised = (predicted - readings) / sigma
            chi = np.sum(standardised**2, axis=1)
            chi = np.where(np.isfinite(chi), chi, np.inf)
            if chi.min() < best["chi2"]:
                best["chi2"], best["readings"] = chi.min(), predicted[int(np.argmin(chi))]
            return standardised

        mode, cov = None, None
        if explained_rms is not None and span < mode_from_s:
            chi2 = float(np.sum(residuals(start[None, :]) ** 2))
        if mode_from_s <= span or explained_rms is None or \
                not sigma * math.sqrt(chi2 / readings.size) <= explained_rms:
            mode, hessian, chi2 = laplace_mode(start, space, residuals, max_steps=steps)
            if hessian is not None and np.all(np.isfinite(hessian)):
                dof = readings.size - len(space.names)
                cov = np.linalg.inv(hessian) * (max(1.0, chi2 / dof) if dof > 0 else 1.0)
        found = np.full(t.shape[1], np.nan)
        if best["readings"] is not None:
            found[valid] = best["readings"]
        fits.append({"space": space, "mode": mode, "cov": cov, "chi2": chi2, "best": found,
                     "span_s": span, "readings": int(readings.size)})
    return fits


def _replace_answer(d, row, loc, scale):
    """Set one row of a decoded parameter to the Gaussian (loc, scale) in its space, with the
    physical-unit summaries that go with it (where ``d`` carries them)."""
    d["loc"][row], d["scale"][row] = loc, scale
    if "median" in d:
        loc, scale = np.array([loc]), np.array([scale])
        mean, std = physical_moments(loc, scale, d["transform"], d.get("bounds"))
        d["median"][row] = inverse_transform(d["transform"], loc, d.get("bounds"))[0]
        d["mean"][row], d["std"][row] = mean[0], std[0]


def sharpen(decoded, fits, factors=None, weights=None) -> list:
    """Answer each parameter of a trace spanning at least ``SHARPEN_FROM_S`` from its local
    fit (:func:`local_fits`) where the readings carry most of its precision (the prior's
    share under ``PRIOR_SHARE``): ``decoded``'s ``loc`` becomes the mode there, in place, and
    its ``scale`` f · σ_fit^w · σ_net^(1 − w), the Laplace σ (delta method into the network's
    space) blended with the network's σ by its weight w (``weights``, default
    ``LAPLACE_WEIGHTS``) times its factor f (``factors``, default ``LAPLACE_FACTORS``: per
    name, the factors for traces spanning less than ``LONG_SPAN_S`` and as long or longer),
    and its ``median, mean, std`` to match. Only a fit whose mode explains the readings (RMS
    miss within ``MISFIT_RATIO`` × the noise) answers: one that stopped short of the mode
    would give a wrong centre. Returns per trace the names of the parameters answered so."""
    factors = LAPLACE_FACTORS if factors is None else factors
    weights = LAPLACE_WEIGHTS if weights is None else weights
    sharpened = []
    for row, fit in enumerate(fits):
        names = []
        if fit is not None and fit["cov"] is not None and fit["span_s"] >= SHARPEN_FROM_S \
                and fit["chi2"] <= MISFIT_RATIO ** 2 * fit["readings"]:
            space, mode = fit["space"], fit["mode"]
            theta = space.theta(mode[None, :])
            dtheta_du = np.exp(space.log_dtheta_du(mode[None, :], theta))[0]
            band = int(fit["span_s"] >= LONG_SPAN_S)
            for j, name in enumerate(space.names):
                d = decoded.get(name)
                variance = fit["cov"][j, j]
                if d is None or not 2.0 * expit(mode[j]) * expit(-mode[j]) * variance < \
                        PRIOR_SHARE:
                    continue
                bounds = d.get("bounds")
                z = float(network_z(d["transform"], np.float64(theta[0, j]), bounds))
                dz_dtheta = float(np.exp(log_dz_dtheta(d["transform"], theta[0, j:j + 1],
                                                       bounds)[0]))
                weight = weights.get(name, 1.0)
                sigma = factors.get(name, (1.0, 1.0))[band] * \
                    (math.sqrt(variance) * dtheta_du[j] * dz_dtheta) ** weight * \
                    float(d["scale"][row]) ** (1.0 - weight)
                if math.isfinite(z) and 0.0 < sigma < math.inf:
                    _replace_answer(d, row, z, sigma)
                    names.append(name)
        sharpened.append(names)
    return sharpened
