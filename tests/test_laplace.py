"""The local Laplace fit and the sharpening it gives, against independent references
(scipy's optimisers, hand-derived Jacobians of the coordinates)."""

import math

import numpy as np
import pytest
from scipy.optimize import least_squares, minimize

from ei_keras.inference.laplace import (
    LAPLACE_FACTORS,
    LAPLACE_WEIGHTS,
    LONG_SPAN_S,
    PRIOR_SHARE,
    SHARPEN_FROM_S,
    START_MARGIN,
    PriorSpace,
    laplace_mode,
    local_fits,
    sharpen,
    start_point,
)
from ei_keras.inference.least_squares import predict_readings
from ei_keras.simulation import KNOWN_NAMES
from ei_keras.simulation.measurement import measure
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES, simulator_conditions
from ei_keras.targets import inverse_transform, physical_moments

NOISE = 0.01
PRIOR = {"param_ranges": dict(DEFAULT_PARAM_RANGES), "noise_std": NOISE,
         "use_probe_lag": False, "use_offset": False}  # free: activity and k_d
KNOWN = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
             initial_pH=7.02)


def hand_decoded(activity, k_d, scale=0.5):
    """The network's answer for one trace, with its physical-unit summaries."""
    decoded = {"activity": {"loc": np.array([math.log10(activity)]), "scale": np.array([scale]),
                            "transform": "log10", "bounds": None},
               "k_d": {"loc": np.array([0.0]), "scale": np.array([1.2]), "transform": "logit",
                       "bounds": list(DEFAULT_PARAM_RANGES["k_d"])}}
    for d in decoded.values():
        d["mean"], d["std"] = physical_moments(d["loc"], d["scale"], d["transform"], d["bounds"])
        d["median"] = inverse_transform(d["transform"], d["loc"], d["bounds"])
    return decoded


def test_the_gauss_newton_mode_is_the_posterior_mode_scipy_finds():
    space = PriorSpace(PRIOR)
    t = np.linspace(0.0, 10.0, 30)
    truth = np.array([0.8, -0.4])
    clean = 1.0 - np.exp(-np.exp(truth[0]) * t) * (1.0 + truth[1] * t / 10.0)
    observed = clean + np.random.default_rng(0).normal(0.0, 0.02, t.size)

    def residuals(u):
        u = np.atleast_2d(u)
        return (1.0 - np.exp(-np.exp(u[:, :1]) * t) * (1.0 + u[:, 1:] * t / 10.0)
                - observed) / 0.02

    def objective(u):
        return 0.5 * np.sum(residuals(u) ** 2) - space.log_prior(u[None, :])[0]

    mode, hessian, chi2 = laplace_mode(np.zeros(2), space, residuals, max_steps=30,
                                       tolerance=1e-12, final_step=0.0)
    reference = minimize(objective, np.zeros(2), method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).x
    # The forward differences' O(step) bias moves it by under a thousandth of a posterior σ.
    sigma = np.sqrt(np.diag(np.linalg.inv(hessian)))
    assert np.all(np.abs(mode - reference) < 1e-3 * sigma), (mode - reference) / sigma
    # The defaults (stop below 0.01 in log density; a step predicted to gain under
    # FINAL_STEP taken unchecked) stop within a fifth of a posterior σ, and the unchecked
    # last step saves a simulation: the same fit with every step checked needs one more.
    simulated = []

    def counted(u):
        simulated.append(len(u))
        return residuals(u)

    rough = laplace_mode(np.zeros(2), space, counted)[0]
    calls = len(simulated)
    assert np.all(np.abs(rough - reference) < 0.2 * sigma)
    simulated.clear()
    checked = laplace_mode(np.zeros(2), space, counted, final_step=0.0)[0]
    assert len(simulated) == calls + 1
    assert np.all(np.abs(checked - reference) < 0.2 * sigma)
    assert chi2 == pytest.approx(np.sum(residuals(mode) ** 2), rel=1e-9)
    # The Hessian: JᵀJ (central differences here) plus the logistic prior's curvature.
    step = 1e-6
    jacobian = np.stack([(residuals(mode + step * e)[0] - residuals(mode - step * e)[0])
                         / (2 * step) for e in np.eye(2)], axis=1)
    prior_curvature = 2.0 / (np.exp(mode) + 2.0 + np.exp(-mode))
    np.testing.assert_allclose(hessian, jacobian.T @ jacobian + np.diag(prior_curvature),
                               rtol=1e-3)


def test_along_a_curved_ridge_the_shortened_step_carries_over_to_the_mode():
    """Rosenbrock's valley, where full Gauss–Newton steps overshoot the bend again and
    again: keeping the shortened step for the next ones, the defaults reach scipy's mode
    within a hundredth of a posterior σ in under 20 simulations (trying each full step
    first took 39, and after 31 was still 18 σ away)."""
    space = PriorSpace(PRIOR)

    def residuals(u):
        u = np.atleast_2d(u)
        return np.stack([10.0 * (u[:, 1] - u[:, 0] ** 2), 1.0 - u[:, 0]], axis=1) / 0.1

    def objective(u):
        return 0.5 * np.sum(residuals(u) ** 2) - space.log_prior(u[None, :])[0]

    simulated = []

    def counted(u):
        simulated.append(len(u))
        return residuals(u)

    start = np.array([-1.2, 1.0])
    mode, hessian, _ = laplace_mode(start, space, counted)
    reference = minimize(objective, start, method="Nelder-Mead",
                         options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 40000}).x
    sigma = np.sqrt(np.diag(np.linalg.inv(hessian)))
    assert np.all(np.abs(mode - reference) < 0.01 * sigma), (mode - reference) / sigma
    assert len(simulated) < 20


def test_the_local_fit_of_a_simulated_trace_reaches_the_least_squares_fit(monkeypatch):
    """From a poor start the local fit lands where scipy's least squares of the same
    posterior (readings and the logistic prior as residuals) lands, within a fifth of a
    posterior σ, and its best explanation misses the readings by about the noise."""
    space = PriorSpace(PRIOR)
    t = np.arange(0.0, 120.0, 1.0)
    latent = dict(activity=0.05, k_d=1e-3, tau_probe=0.0, pH_offset=0.0)
    case = {name: np.array([value]) for name, value in {**KNOWN, **latent}.items()}
    pH = measure(simulator_conditions(case), t, tau_probe=0.0, pH_offset=0.0, noise_std=NOISE,
                 rng=np.random.default_rng(3))[0]
    known_rows = np.array([[KNOWN[name] for name in KNOWN_NAMES]])
    (fit,) = local_fits(PRIOR, hand_decoded(0.03, 1e-3), t[None], pH[None], known_rows)

    def stacked(u):  # residuals whose half squared sum is the negative log posterior
        known = dict(zip(KNOWN_NAMES, known_rows[0]))
        r = (predict_readings(t, known, space.latents(space.theta(u[None, :])))[0] - pH) / NOISE
        prior = np.sqrt(2.0 * -(np.log(1 / (1 + np.exp(-u))) + np.log(1 / (1 + np.exp(u)))))
        return np.concatenate([r, prior])

    reference = least_squares(stacked, fit["mode"] + 0.3, x_scale=0.1, xtol=1e-12).x
    sigma = np.sqrt(np.diag(fit["cov"]))
    assert np.all(np.abs(fit["mode"] - reference) < 0.2 * sigma), (fit["mode"], reference, sigma)
    assert np.sqrt(np.mean((fit["best"] - pH) ** 2)) < 1.2 * NOISE
    assert fit["cov"].shape == (2, 2) and np.all(np.linalg.eigvalsh(fit["cov"]) > 0)
    # A trace shorter than min_span_s is not fitted at all (sharpen would leave it alone).
    monkeypatch.setattr("ei_keras.inference.laplace.ReadingsModel", None)
    assert local_fits(PRIOR, hand_decoded(0.03, 1e-3), t[None], pH[None], known_rows,
                      min_span_s=t[-1] + 1) == [None]


def test_a_trace_needing_only_the_misfit_verdict_stops_at_the_first_explanation(monkeypatch):
    """Below ``mode_from_s`` a trace whose network median explains its readings within
    ``explained_rms`` costs one simulation of one parameter set and gets no mode; one whose
    median misses is fitted to the mode as before, and so is every trace without
    ``explained_rms``."""
    from ei_keras.inference import laplace

    t = np.arange(0.0, 30.0, 0.5)
    k_d = float(np.mean(DEFAULT_PARAM_RANGES["k_d"]))  # hand_decoded's median (logit 0)
    case = {name: np.array([value]) for name, value in
            {**KNOWN, "activity": 0.05, "k_d": k_d, "tau_probe": 0.0, "pH_offset": 0.0}.items()}
    pH = measure(simulator_conditions(case), t, tau_probe=0.0, pH_offset=0.0, noise_std=NOISE,
                 rng=np.random.default_rng(5))[0]
    known_rows = np.array([[KNOWN[name] for name in KNOWN_NAMES]])
    simulated = []

    class Counted(laplace.ReadingsModel):
        def __call__(self, latent):
            simulated.append(len(latent["activity"]))
            return super().__call__(latent)

    monkeypatch.setattr(laplace, "ReadingsModel", Counted)

    def fit(activity, **options):
        simulated.clear()
        return local_fits(PRIOR, hand_decoded(activity, k_d), t[None], pH[None], known_rows,
                          **options)[0]

    def rms(found):
        return float(np.sqrt(np.mean((found - pH) ** 2)))

    verdict = dict(mode_from_s=60.0, explained_rms=2.5 * NOISE)
    near = fit(0.05, **verdict)
    assert simulated == [1] and near["mode"] is None and near["cov"] is None
    median = predict_readings(t, KNOWN, {"activity": np.array([0.05]), "k_d": np.array([k_d])})[0]
    np.testing.assert_array_equal(near["best"], median)
    assert rms(median) <= 2.5 * NOISE
    assert near["chi2"] == pytest.approx(np.sum(((median - pH) / NOISE) ** 2))
    far = fit(0.005, **verdict)  # a median 10x off: fitted to the mode
    assert len(simulated) > 2 and far["mode"] is not None and far["cov"] is not None
    assert rms(far["best"]) < 1.2 * NOISE
    for options in ({}, dict(verdict, mode_from_s=t[-1])):  # no verdict-only: the full fit
        full = fit(0.05, **options)
        assert full["mode"] is not None and len(simulated) > 1
        assert rms(full["best"]) <= rms(median)


def test_a_median_outside_the_prior_range_starts_the_fit_just_inside_its_edge():
    """The network answers activity in log10, unbounded: a median below the prior's range
    starts the fit START_MARGIN of the range inside its lower edge, not at the prior's
    median (from there fits of traces at the edge stopped far from it)."""
    space = PriorSpace(PRIOR)
    low, high = DEFAULT_PARAM_RANGES["activity"]
    edge = math.log(START_MARGIN / (1.0 - START_MARGIN))
    below, above = start_point(space, hand_decoded(low / 3, 1e-3), 0), \
        start_point(space, hand_decoded(high * 3, 1e-3), 0)
    assert below[0] == pytest.approx(edge) and above[0] == pytest.approx(-edge)
    inside = start_point(space, hand_decoded(0.03, 1e-3), 0)
    fraction = (math.log(0.03) - math.log(low)) / math.log(high / low)
    assert inside[0] == pytest.approx(math.log(fraction / (1.0 - fraction)))
    assert below[1] == inside[1] == 0.0  # k_d's median (logit 0) is the prior's median


def test_sharpen_answers_from_the_fit_only_where_the_readings_pin_a_parameter_down():
    space = PriorSpace(PRIOR)
    # activity: the readings carry nearly all its precision (prior share 0.5 × 0.01);
    # k_d: the prior carries it all (share 0.5 × 4 > PRIOR_SHARE).
    fit = {"space": space, "mode": np.zeros(2), "cov": np.diag([0.01, 4.0]), "chi2": 1.0,
           "best": None, "span_s": SHARPEN_FROM_S, "readings": 100}
    decoded = hand_decoded(0.03, 1e-3)
    before = {name: {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                     for k, v in d.items()} for name, d in decoded.items()}
    assert sharpen(decoded, [fit]) == [["activity"]]
    assert 2.0 * 0.25 * 4.0 > PRIOR_SHARE > 2.0 * 0.25 * 0.01
    low, high = (math.log(v) for v in DEFAULT_PARAM_RANGES["activity"])
    # u = 0 is the middle of log activity's range; dz/du = width · ¼ / ln 10.
    assert decoded["activity"]["loc"][0] == pytest.approx((low + high) / 2 / math.log(10))
    # σ = f · σ_fit^w · σ_net^(1 − w), σ_net the network's 0.5.
    weight = LAPLACE_WEIGHTS["activity"]
    fit_sigma = 0.1 * (high - low) * 0.25 / math.log(10)
    assert decoded["activity"]["scale"][0] == pytest.approx(
        LAPLACE_FACTORS["activity"][0] * fit_sigma ** weight * 0.5 ** (1.0 - weight))
    # A trace spanning LONG_SPAN_S or more gets the factor calibrated on such traces.
    longer = hand_decoded(0.03, 1e-3)
    sharpen(longer, [{**fit, "span_s": LONG_SPAN_S}])
    assert longer["activity"]["scale"][0] / decoded["activity"]["scale"][0] == pytest.approx(
        LAPLACE_FACTORS["activity"][1] / LAPLACE_FACTORS["activity"][0])
    # Its physical summaries follow: the median is 10 ** loc, the mean that of a log-normal.
    sharpened = decoded["activity"]
    assert sharpened["median"][0] == pytest.approx(10 ** sharpened["loc"][0])
    sigma_ln = sharpened["scale"][0] * math.log(10)
    assert sharpened["mean"][0] == pytest.approx(
        sharpened["median"][0] * math.exp(sigma_ln**2 / 2))
    assert decoded["k_d"]["loc"][0] == before["k_d"]["loc"][0]
    assert decoded["k_d"]["scale"][0] == before["k_d"]["scale"][0]
    # A network sharper than the fit is answered from the fit too (its σ blended up): on
    # held-out traces the narrower of the two was too narrow.
    narrow = hand_decoded(0.03, 1e-3, scale=0.01)
    assert sharpen(narrow, [fit]) == [["activity"]]
    assert narrow["activity"]["scale"][0] == pytest.approx(
        LAPLACE_FACTORS["activity"][0] * fit_sigma ** weight * 0.01 ** (1.0 - weight))
    assert narrow["activity"]["loc"][0] == decoded["activity"]["loc"][0]  # the mode
    # With weight 1 (k_d, say) the fit's σ alone; with 0 the network's, both times f.
    for w, expected in ((1.0, fit_sigma), (0.0, 0.01)):
        alone = hand_decoded(0.03, 1e-3, scale=0.01)
        sharpen(alone, [fit], factors={"activity": (1.0, 1.0)}, weights={"activity": w})
        assert alone["activity"]["scale"][0] == pytest.approx(expected)
    # A fit whose mode misses the readings by more than the misfit threshold (RMS 2.5× the
    # noise, χ² 6.25 per reading) stopped short of the mode: it answers nothing.
    assert sharpen(hand_decoded(0.03, 1e-3), [{**fit, "chi2": 6.25 * 100}]) == [["activity"]]
    assert sharpen(hand_decoded(0.03, 1e-3), [{**fit, "chi2": 6.3 * 100}]) == [[]]
    # No finite Hessian, or a trace too short for the local Gaussian: nothing sharpened.
    assert sharpen(hand_decoded(0.03, 1e-3), [{**fit, "cov": None}]) == [[]]
    assert sharpen(hand_decoded(0.03, 1e-3), [{**fit, "span_s": SHARPEN_FROM_S - 1}]) == [[]]
