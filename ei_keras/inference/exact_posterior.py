"""The exact posterior of one trace by importance sampling, beside the network's answer.

The network's posterior is a fast, amortised guess (as ``infer`` returns it: sharpened by
the local fit where the readings pin a parameter down, :mod:`ei_keras.inference.laplace`).
:func:`refine` computes the Bayesian answer it approximates — the training prior times the
Gaussian likelihood of the readings under the simulator and measurement model (physics.md
§6) — by self-normalised importance sampling, with that answer as the proposal, and says
how the two compare.

Coordinates. Every free latent parameter θ is sampled in its *prior coordinate* u: the
logit of its position in its prior range (of log θ for the log-uniform activity), so
every u in ℝ is a valid parameter and the prior density in u is the standard logistic.
All densities are taken in u; the network's Gaussian (in its own transformed space z)
enters through the Jacobian dz/du.

Proposal. Round 1 (``n_samples`` draws) is the mixture ``(1 - prior_fraction) · network +
prior_fraction · prior``, the network's Gaussian widened by ``widen`` in each of its
dimensions (latents the network does not infer, e.g. an un-inferred probe lag, come from
the prior in both components: they are nuisance parameters of the likelihood). The prior
component keeps every weight bounded (w ≤ likelihood / prior_fraction). The network's
Gaussian is diagonal, while the exact posterior of an informative trace is a narrow,
curved ridge (activity, probe lag and offset trade off, correlations ≈ 0.98), so round 1
alone often has few effective draws. While the ESS is below ``TARGET_ESS · n_samples``
(or no draw fits the readings), adapted rounds of ``n_samples`` draws follow, up to
``max_rounds`` in all, each again ``prior_fraction`` from the prior and the rest from
proposals refitted to all weighted draws so far: a Student t (5 dof) with their mean and
covariance, widened; a mixture of local Laplace approximations at the 40 heaviest draws
(Student t with the inverse Gauss–Newton Hessian there as scale), which follows a curved
ridge; and, in the first adapted round, the Laplace approximation at the
posterior mode found by damped Gauss–Newton from the best draw. All rounds are pooled
with the balance heuristic (every draw is weighted against the mixture of all proposals
used, as in adaptive multiple importance sampling). Each round is one batched
:func:`~ei_keras.inference.least_squares.predict_readings` call (the Gauss–Newton steps
and Hessians add a few small ones).
"""

import math
import time

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import log_expit, logsumexp, ndtri
from scipy.stats import chi2

from ei_keras.errors import EiKerasError
from ei_keras.inference.laplace import (
    PriorSpace,
    curvature,
    exact_prior,
    laplace_mode,
    log_dz_dtheta,
    network_z,
)
from ei_keras.inference.least_squares import ReadingsModel, validate_known, validate_trace
from ei_keras.inference.posterior import _run, load_model
from ei_keras.targets import INTERVALS, inverse_transform, summarize_gaussian
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES

WIDEN = 1.5            # the network's scale is multiplied by this in the proposal
PRIOR_FRACTION = 0.15  # share of each round's draws taken from the prior
TARGET_ESS = 0.2       # adapted rounds run while ESS < TARGET_ESS · n_samples
MIN_ESS = 100.0        # below this after the last round: "unreliable"
MAX_ROUNDS = 4         # the network's round, then up to three adapted rounds
KERNELS = 40           # local Laplace kernels per adapted round: at the heaviest draws
KERNEL_SHARE = 0.5     # their share of an adapted round's non-prior draws
STUDENT_DF = 5.0       # degrees of freedom of the refitted Student t proposals
MISFIT_P = 1e-3        # "unreliable" when the best draw's χ² exceeds its (1 - MISFIT_P) quantile
WIDTH_RATIO = 1.5      # "wider" / "sharper" beyond this ratio of 90 % interval widths
SHIFT_SIGMA = 1.0      # "shifted" beyond this many exact σ (and the network's own σ)
_Z90 = float(ndtri(0.95))


class _Prior:
    def __init__(self, space):
        self.space = space

    def sample(self, rng, n):
        return rng.logistic(size=(n, len(self.space.names)))

    def log_pdf(self, u):
        return self.space.log_prior(u)


class _Network:
    """The network's Gaussian, widened, on the latents it infers; the prior on the rest."""

    def __init__(self, space, decoded, widen):
        self.space = space
        self.dims = [(j, decoded[name]) for j, name in enumerate(space.names)
                     if name in decoded]
        self.widen = widen

    def sample(self, rng, n):
        u = rng.logistic(size=(n, len(self.space.names)))
        for j, d in self.dims:
            z = d["loc"] + self.widen * d["scale"] * rng.standard_normal(n)
            theta = inverse_transform(d["transform"], z, d["bounds"])
            u[:, j] = self.space.u(j, theta)
        return u  # nan rows: the draw fell outside the prior (weight 0)

    def log_pdf(self, u):
        theta = self.space.theta(u)
        log_jac = self.space.log_dtheta_du(u, theta)
        total = self.space.log_prior(u)
        for j, d in self.dims:
            z = network_z(d["transform"], theta[:, j], d["bounds"])
            scale = self.widen * d["scale"]
            with np.errstate(invalid="ignore"):
                log_normal = (-0.5 * ((z - d["loc"]) / scale) ** 2 - math.log(scale)
                              - 0.5 * math.log(2 * math.pi))
            term = log_normal + log_dz_dtheta(d["transform"], theta[:, j], d["bounds"]) + \
                log_jac[:, j]
            prior_j = log_expit(u[:, j]) + log_expit(-u[:, j])
            total = total - prior_j + np.where(np.isfinite(term), term, -np.inf)
        return total


class _StudentT:
    """A multivariate Student t in u (``df=inf``: a Gaussian), an adapted proposal."""

    def __init__(self, mean, cov, df=STUDENT_DF):
        self.mean, self.df = np.asarray(mean, dtype=float), float(df)
        cov = np.asarray(cov, dtype=float)
        jitter = 1e-12 * max(float(np.max(np.diag(cov))), 1e-12)
        for _ in range(8):  # a covariance estimated from few draws may be barely definite
            try:
                self.chol = np.linalg.cholesky(cov + jitter * np.eye(len(self.mean)))
                break
            except np.linalg.LinAlgError:
                jitter *= 100.0
        else:
            raise np.linalg.LinAlgError("proposal covariance is not positive definite")
        d = len(self.mean)
        self.log_norm = np.sum(np.log(np.diag(self.chol))) + (
            0.5 * d * math.log(2 * math.pi) if math.isinf(self.df) else
            math.lgamma(self.df / 2) - math.lgamma((self.df + d) / 2)
            + 0.5 * d * math.log(self.df * math.pi))

    def sample(self, rng, n):
        z = rng.standard_normal((n, len(self.mean)))
        if not math.isinf(self.df):
            z /= np.sqrt(rng.chisquare(self.df, size=(n, 1)) / self.df)
        return self.mean + z @ self.chol.T

    def log_pdf(self, u):
        white = solve_triangular(self.chol, (u - self.mean).T, lower=True)
        q = np.sum(white**2, axis=0)
        if math.isinf(self.df):
            return -0.5 * q - self.log_norm
        return -0.5 * (self.df + len(self.mean)) * np.log1p(q / self.df) - self.log_norm


class _Mixture:
    """Equal-weight mixture of proposals (the local Laplace kernels)."""

    def __init__(self, parts):
        self.parts = list(parts)

    def sample(self, rng, n):
        counts = np.bincount(rng.integers(len(self.parts), size=n), minlength=len(self.parts))
        return np.concatenate([part.sample(rng, int(c)) for part, c in zip(self.parts, counts)])

    def log_pdf(self, u):
        return logsumexp(np.stack([part.log_pdf(u) for part in self.parts]), axis=0) - \
            math.log(len(self.parts))


def _refit(u, weights, ess, widen, residuals, n_kernels=KERNELS):
    """Two proposals refitted to weighted draws in u: a Student t with their mean and
    covariance (widened), and a mixture of local Laplace approximations — a Student t at
    each of the ``n_kernels`` heaviest draws, with the inverse of the local Gauss–Newton
    Hessian as scale — which follows a curved posterior ridge. With an ESS near 1 the
    covariance gets the spread of the draws divided by ESS² (a few draws say little
    about the width)."""
    weights = weights / weights.sum()
    mean = weights @ u
    centred = u - mean
    cov = (weights[:, None] * centred).T @ centred
    cov = cov + np.diag(np.var(u, axis=0) / max(ess, 1.0) ** 2 + 1e-10)
    order = np.argsort(weights)[::-1][:n_kernels]
    centres = u[order[weights[order] > 0]]
    hessians = curvature(centres, residuals)[2]
    kernels = []
    for centre, hessian in zip(centres, hessians):
        if np.all(np.isfinite(hessian)):
            try:
                kernels.append(_StudentT(centre, np.linalg.inv(hessian)))
            except np.linalg.LinAlgError:
                continue
    return _StudentT(mean, widen**2 * cov), (_Mixture(kernels) if kernels else None)


def _mixture_log_pdf(components, u):
    """log of sum_k share_k q_k(u) over (share, component) pairs, at the valid rows."""
    shares = np.array([share for share, _ in components], dtype=float)
    shares = shares / shares.sum()
    logs = np.stack([np.log(share) + component.log_pdf(u)
                     for share, (_, component) in zip(shares, components) if share > 0])
    return logsumexp(logs, axis=0)


def _ess(log_weights):
    finite = np.isfinite(log_weights)
    if not finite.any():
        return 0.0, np.zeros_like(log_weights)
    weights = np.exp(log_weights - np.max(log_weights[finite]))
    weights[~finite] = 0.0
    weights /= weights.sum()
    return float(1.0 / np.sum(weights**2)), weights


def weighted_quantiles(values, weights, quantiles):
    """Quantiles of weighted draws (linear between mid-points of the weighted CDF)."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    cdf = (np.cumsum(weights) - 0.5 * weights) / weights.sum()
    return np.interp(quantiles, cdf, values)


def weighted_summary(values, weights) -> dict:
    """``median, mean, std, lo/hi 50/90/95`` (floats) of weighted draws."""
    weights = weights / weights.sum()
    mean = float(np.sum(weights * values))
    levels = [0.5] + [q for level in INTERVALS for q in (0.5 - level / 200, 0.5 + level / 200)]
    quantiles = weighted_quantiles(values, weights, np.array(levels))
    summary = {"median": float(quantiles[0]), "mean": mean,
               "std": float(np.sqrt(np.sum(weights * (values - mean) ** 2)))}
    for k, level in enumerate(INTERVALS):
        summary[f"lo{level}"] = float(quantiles[1 + 2 * k])
        summary[f"hi{level}"] = float(quantiles[2 + 2 * k])
    return summary


def _network_summary(d) -> dict:
    bounds = d.get("bounds")
    args = (d["loc"], d["scale"], d["transform"]) + ((bounds,) if bounds is not None else ())
    return {key: float(np.asarray(value).ravel()[0])
            for key, value in summarize_gaussian(*args).items()}


def compare(network, exact, transform, bounds=None) -> dict:
    """How the network's summary of one parameter compares with the exact one.

    Both are summaries in physical units; the comparison is made in the network's
    transformed space (log10 activity, logit or identity for the others), where its
    posterior is Gaussian. ``width_ratio`` is network / exact 90 % interval width;
    ``shift_sigma`` is |network median − exact median| in exact σ (the exact 90 % width
    / 3.29); ``shift_network_sigma`` the same shift in the network's own σ. The label:
    ``shifted`` when the shift exceeds ``SHIFT_SIGMA`` in both σ, else ``sharper`` when
    the width ratio is below 1 / ``WIDTH_RATIO``, ``wider`` above ``WIDTH_RATIO``, else
    ``agrees``.
    """
    keys = ("lo90", "median", "hi90")

    def z(summary):
        with np.errstate(divide="ignore", invalid="ignore"):
            return [float(network_z(transform, np.float64(summary[k]), bounds)) for k in keys]

    net, ex = z(network), z(exact)
    if not np.all(np.isfinite(net + ex)):  # outside the network's space: physical units
        net, ex = [network[k] for k in keys], [exact[k] for k in keys]
    exact_width, network_width = ex[2] - ex[0], net[2] - net[0]
    shift = abs(net[1] - ex[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.divide(network_width, exact_width))
        shift_sigma = float(np.divide(shift, exact_width / (2 * _Z90)))
        shift_network = float(np.divide(shift, network_width / (2 * _Z90)))
    if shift_sigma > SHIFT_SIGMA and shift_network > SHIFT_SIGMA:
        label = "shifted"
    elif ratio < 1.0 / WIDTH_RATIO:
        label = "sharper"
    elif ratio > WIDTH_RATIO:
        label = "wider"
    else:
        label = "agrees"
    return {"verdict": label, "width_ratio": ratio, "shift_sigma": shift_sigma,
            "shift_network_sigma": shift_network}


def _overall(comparison):
    """One label and a one-sentence reason from the per-parameter comparisons."""
    for label, key, pick in (("shifted", "shift_sigma", max), ("sharper", "width_ratio", min),
                             ("wider", "width_ratio", max)):
        names = [name for name, c in comparison.items() if c["verdict"] == label]
        if not names:
            continue
        name = pick(names, key=lambda n: comparison[n][key])
        c = comparison[name]
        if label == "shifted":
            reason = (f"network median {c['shift_sigma']:.1f} exact σ (and "
                      f"{c['shift_network_sigma']:.1f} of its own σ) from the exact median "
                      f"for {name}")
        elif label == "sharper":
            reason = (f"network 90 % interval {1 / c['width_ratio']:.1f}× narrower than exact "
                      f"for {name} (overconfident)")
        else:
            reason = f"network 90 % interval {c['width_ratio']:.1f}× wider than exact for {name}"
        return label, reason
    if not comparison:
        return "agrees", "no free parameter to compare"
    ratios = [c["width_ratio"] for c in comparison.values()]
    return "agrees", (f"network 90 % intervals {min(ratios):.2f}–{max(ratios):.2f}× the exact "
                      f"widths and medians within {SHIFT_SIGMA:g} exact σ for every parameter")


def refine(model_or_path, t, pH, known, *, n_samples=2000, noise_std=None, seed=0,
           widen=WIDEN, prior_fraction=PRIOR_FRACTION, min_ess=MIN_ESS, max_rounds=MAX_ROUNDS,
           domain=None, allow_extrapolation=False, options=None) -> dict:
    """The exact posterior of one trace by importance sampling, beside the network's.

    Parameters
    ----------
    model_or_path : keras.Model or path of a ``.keras`` file
    t, pH : array_like
        One trace: (m,) reading times in seconds and measured pH.
    known : mapping
        The five known inputs (``initial_pH`` as measured), scalars.
    n_samples : int
        Draws per round: the network's round, then adapted rounds while the ESS is below
        ``TARGET_ESS · n_samples`` (up to ``max_rounds`` rounds in all).
    noise_std : float, optional
        σ of the Gaussian reading noise in pH; default: the model's training σ (0.01 for
        a model that does not record it).
    seed : int
        Seed of the ``numpy.random.Generator`` of the draws.
    widen : float
        Factor on the network's scale in the proposal.
    prior_fraction : float
        Share of each round's draws taken from the prior (0 ≤ ... < 1).
    min_ess : float
        Effective sample size below which the answer is ``unreliable``.
    max_rounds : int
        Most importance-sampling rounds (1: the network's proposal only).
    domain : mapping, optional
        Overrides of the training prior (see :func:`exact_prior`).
    allow_extrapolation : bool
        Answer when known inputs lie outside the model's training ranges (as in
        :func:`~ei_keras.inference.posterior.infer`).
    options : mapping, optional
        Simulator options.

    Returns
    -------
    dict
        Per parameter the network infers, the exact posterior's ``median, mean, std,
        lo50, hi50, lo90, hi90, lo95, hi95`` (floats, physical units, weighted quantiles);
        ``network``: the network's own summaries of the same parameters; ``ess``: the
        effective sample size (Kish) of the final weights; ``verdict`` and ``reason``;
        ``comparison``: per parameter ``verdict, width_ratio, shift_sigma,
        shift_network_sigma`` (see :func:`compare`); ``diagnostics`` (draws, rounds, ESS
        per round, best χ² and its limit, σ, seconds); ``domain``: the network's domain
        report; ``draws`` (all four latents, (N,) each) and ``weights`` (N,), normalised,
        for :func:`refined_draws`. The likelihood uses every reading, also those past the
        longest trace the network was trained on (which it does not see).

    Verdicts
    --------
    ``unreliable``: ESS < ``min_ess`` (100) after the adapted rounds, or even the best
    draw misfits the readings (χ² = Σ residual² / σ² above its 1 − 1e-3 quantile for m
    readings: the trace is not described by the model at this σ, or the proposal missed
    the posterior) — the exact summaries are then not to be trusted. Otherwise per
    parameter (in the network's transformed space): ``shifted`` when the network's median
    is more than 1 exact σ *and* more than 1 of its own σ from the exact median;
    ``sharper`` when its 90 % interval is under 1/1.5 of the exact width (overconfident);
    ``wider`` when over 1.5×; ``agrees`` otherwise. The overall verdict is the first of
    shifted, sharper, wider found among the parameters, else ``agrees``.
    """
    started = time.perf_counter()
    t, pH = validate_trace(t, pH)
    known = validate_known(known)
    if not 0 <= prior_fraction < 1 or not widen > 0 or int(n_samples) < 10:
        raise EiKerasError(f"need 0 <= prior_fraction < 1, widen > 0 and n_samples >= 10; got "
                           f"{prior_fraction!r}, {widen!r}, {n_samples!r}")
    model = load_model(model_or_path)
    prior = exact_prior(model, domain)
    sigma = prior["noise_std"] if noise_std is None else float(noise_std)
    if not (math.isfinite(sigma) and sigma > 0):
        raise EiKerasError(f"noise_std must be a finite number > 0 (pH); got {sigma!r}")
    # The network sees what it was trained on (a trace past its longest is cut); the
    # likelihood below uses every reading.
    decoded, outputs, _ = _run(model, t, pH, known, allow_extrapolation=allow_extrapolation,
                               check_fit=False)
    decoded = {name: {**d, "loc": float(np.ravel(d["loc"])[0]),
                      "scale": float(np.ravel(d["scale"])[0]), "bounds": d.get("bounds")}
               for name, d in decoded.items()}
    space = PriorSpace(prior)
    prior_q = _Prior(space)
    rng = np.random.default_rng(seed)
    n_samples = int(n_samples)
    chi2_limit = float(chi2.isf(MISFIT_P, t.size))

    def draw_round(n, shares):
        """n draws: ``prior_fraction`` from the prior, the rest split over the (share,
        proposal) pairs; returns them and their (count, proposal) pairs."""
        n_prior = int(round(prior_fraction * n))
        counts = [int(round((n - n_prior) * share)) for share, _ in shares]
        counts[-1] = n - n_prior - sum(counts[:-1])
        parts = list(zip(counts, [proposal for _, proposal in shares])) + [(n_prior, prior_q)]
        return np.concatenate([q.sample(rng, count) for count, q in parts]), parts

    readings_at = ReadingsModel(t, known, options=options)

    def residuals(u):  # standardised residuals (k, m); rows of u must be finite
        return (readings_at(space.latents(space.theta(u))) - pH) / sigma

    def log_likelihood(u):
        out = np.full(u.shape[0], -np.inf)
        valid = np.all(np.isfinite(u), axis=1)
        if valid.any():
            chi = np.sum(residuals(u[valid]) ** 2, axis=1)
            out[valid] = np.where(np.isfinite(chi), -0.5 * chi, -np.inf)
        return out

    def weigh(u, log_lik, components):
        valid = np.all(np.isfinite(u), axis=1)
        log_w = np.full(u.shape[0], -np.inf)
        log_w[valid] = (space.log_prior(u[valid]) + log_lik[valid]
                        - _mixture_log_pdf(components, u[valid]))
        return _ess(log_w)

    network = _Network(space, decoded, widen)
    u, components = draw_round(n_samples, [(1.0, network)])
    log_lik = log_likelihood(u)
    ess, weights = weigh(u, log_lik, components)
    ess_per_round = [ess]
    best_chi2 = float(-2.0 * np.max(log_lik))
    # Adapted rounds while the weights are too few (or nothing fits yet): the first adds a
    # Laplace approximation at the best draw; each refits to all weighted draws so far.
    while (ess < TARGET_ESS * n_samples or best_chi2 > chi2_limit) and \
            len(ess_per_round) < max_rounds:
        valid = np.all(np.isfinite(u), axis=1)
        others = []
        if len(ess_per_round) == 1:
            log_post = np.where(valid, log_lik, -np.inf)
            log_post[valid] += space.log_prior(u[valid])
            # Every step checked (no unchecked last step): the proposal wants the mode and
            # its own Hessian, and one simulation more is nothing beside the sampling's.
            mode, hessian, mode_chi2 = laplace_mode(u[int(np.argmax(log_post))], space,
                                                    residuals, final_step=0.0)
            best_chi2 = min(best_chi2, mode_chi2)
            if hessian is not None and np.all(np.isfinite(hessian)):
                others.append(_StudentT(mode, widen**2 * np.linalg.inv(hessian)))
        student, kernels = _refit(u[valid], weights[valid], ess, widen, residuals)
        others.append(student)
        rest = 1.0 if kernels is None else 1.0 - KERNEL_SHARE
        shares = [(rest / len(others), q) for q in others]
        if kernels is not None:
            shares.append((KERNEL_SHARE, kernels))
        more_u, more = draw_round(n_samples, shares)
        u, components = np.concatenate([u, more_u]), components + more
        log_lik = np.concatenate([log_lik, log_likelihood(more_u)])
        ess, weights = weigh(u, log_lik, components)
        ess_per_round.append(ess)
        best_chi2 = min(best_chi2, float(-2.0 * np.max(log_lik)))
    rounds = len(ess_per_round)
    misfit = best_chi2 > chi2_limit

    theta = np.full(u.shape, np.nan)
    valid = np.all(np.isfinite(u), axis=1)
    theta[valid] = space.theta(u[valid])
    draws = {name: (np.full(u.shape[0], space.fixed[name]) if name in space.fixed
                    else np.nan_to_num(theta[:, space.names.index(name)]))
             for name in LATENT_NAMES}
    result = {}
    for name in decoded:
        result[name] = weighted_summary(draws[name], weights)
    result["network"] = {name: _network_summary(d) for name, d in decoded.items()}
    comparison = {name: compare(result["network"][name], result[name], d["transform"],
                                d["bounds"])
                  for name, d in decoded.items() if name in space.names}
    if misfit:
        rms = math.sqrt(best_chi2 / t.size) * sigma
        verdict, reason = "unreliable", (
            f"even the best of {u.shape[0]} draws misses the readings (RMS {rms:.3g} pH, "
            f"{rms / sigma:.1f}× the noise σ {sigma:g}): the trace is outside the model at "
            f"this σ, or the proposal missed the posterior")
    elif ess < min_ess:
        verdict, reason = "unreliable", (
            f"ESS {ess:.0f} of {u.shape[0]} draws after {rounds} rounds (need {min_ess:g}): "
            f"the proposal missed the exact posterior")
    else:
        verdict, reason = _overall(comparison)
    result.update({
        "ess": ess, "verdict": verdict, "reason": reason, "comparison": comparison,
        "diagnostics": {"n_draws": int(u.shape[0]), "rounds": rounds,
                        "ess_per_round": ess_per_round,
                        "chi2_best": best_chi2, "chi2_limit": chi2_limit,
                        "rms_best": math.sqrt(best_chi2 / t.size) * sigma, "noise_std": sigma,
                        "widen": widen, "prior_fraction": prior_fraction,
                        "fixed": dict(space.fixed),
                        "seconds": time.perf_counter() - started},
        "domain": outputs["domain"][0], "draws": draws, "weights": weights,
    })
    return result


def refined_draws(result, n_draws, rng) -> dict:
    """Resample ``n_draws`` equally weighted draws of all four latents from a
    :func:`refine` result (systematic resampling of its weighted draws)."""
    weights = np.asarray(result["weights"], dtype=float)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]  # exactly 1 at the end: a draw of weight 0 is never picked
    positions = (rng.random() + np.arange(int(n_draws))) / int(n_draws)
    index = np.searchsorted(cdf, positions, side="right")
    index = rng.permutation(index)
    return {name: np.asarray(result["draws"][name])[index] for name in LATENT_NAMES}


def exact_draws(model_or_path, t, pH, known, n_draws, *, seed=0, **kwargs) -> list:
    """Per trace, ``n_draws`` draws of the exact posterior (one :func:`refine` per trace,
    seeded ``seed + row``), in the format of
    :func:`~ei_keras.inference.posterior.draw_latents`; ``kwargs`` go to :func:`refine`."""
    model = load_model(model_or_path)
    pH = np.asarray(pH, dtype=float)
    rows = pH[None, :] if pH.ndim == 1 else pH
    t = np.broadcast_to(np.asarray(t, dtype=float), rows.shape)
    if not hasattr(known, "keys"):
        raise EiKerasError(f"known must be a mapping with keys {list(KNOWN_NAMES)}")
    per_row = {name: np.broadcast_to(np.asarray(known[name], dtype=float), (len(rows),))
               for name in KNOWN_NAMES if name in known}
    rng = np.random.default_rng(seed)
    draws = []
    for row in range(len(rows)):
        result = refine(model, t[row], rows[row],
                        {name: float(values[row]) for name, values in per_row.items()},
                        seed=seed + row, **kwargs)
        draws.append(refined_draws(result, n_draws, rng))
    return draws
