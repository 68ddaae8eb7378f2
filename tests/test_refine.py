"""``ei_keras.refine``: the exact posterior by importance sampling, against brute force.

The reference posteriors are computed here on fine parameter grids (the exact likelihood
of the simulator + measurement model times the prior, no sampling at all). The networks
are untrained models whose zero-initialised heads output exactly their normalisation
statistics, so each test sets the network's posterior (the proposal) by hand.
"""

import json

import numpy as np
import pytest

import ei_keras
from ei_keras.inference.least_squares import predict_readings
from ei_keras.inference.posterior import forecast, infer
from ei_keras.inference.exact_posterior import compare, refine, refined_draws, weighted_quantiles
from ei_keras.models import build_model, default_normalization

from ei_keras.inference import exact_posterior as refine_module
from tiny_test_set import tiny_test_set

KNOWN = {"substrate_mM": 30.0, "grams_urease_powder": 0.2, "volume_L": 0.5,
         "temperature_C": 30.0, "initial_pH": 7.0}
SIGMA = 0.01
T = np.linspace(0.0, 30.0, 40)
# One free parameter: activity (k_d fixed by a one-point prior, lag and offset off).
ONE_FREE = {"param_ranges": {"k_d": (1e-3, 1e-3)}, "use_probe_lag": False,
            "use_offset": False, "noise_std": SIGMA}


def network(activity_loc, activity_scale, k_d_loc=0.0, k_d_scale=1.0):
    """An untrained model whose posterior is N(loc, scale²) in its transformed space
    (log10 activity, logit k_d over [0, 5e-3]) for every trace of up to 30 s."""
    stats = default_normalization()
    stats["time_scale"] = 30.0
    stats["target_loc"] = [activity_loc, k_d_loc]
    stats["target_scale"] = [activity_scale, k_d_scale]
    return build_model(stats)


def trace(activity, k_d=1e-3, tau_probe=0.0, noise=SIGMA, seed=0):
    latent = {"activity": np.array([activity]), "k_d": np.array([k_d]),
              "tau_probe": np.array([tau_probe]), "pH_offset": np.array([0.0])}
    clean = predict_readings(T, KNOWN, latent)[0]
    return clean + np.random.default_rng(seed).normal(0.0, noise, T.size)


def log_likelihood(pH, activity, k_d, tau_probe=None):
    latent = {"activity": activity, "k_d": k_d, "pH_offset": np.zeros(activity.size)}
    if tau_probe is not None:
        latent["tau_probe"] = tau_probe
    predicted = predict_readings(T, KNOWN, latent)
    return -0.5 * np.sum((predicted - pH) ** 2, axis=1) / SIGMA**2


def grid_quantiles(x, density, quantiles=(0.05, 0.5, 0.95)):
    """Quantiles of a density tabulated on an even grid (trapezoid CDF)."""
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
    return np.interp(quantiles, cdf / cdf[-1], x)


def zoom(x, log_density, margin=40.0):
    """The part of the grid x where the log density is within ``margin`` of its peak."""
    keep = np.flatnonzero(log_density > log_density.max() - margin)
    step = x[1] - x[0]
    return x[max(keep[0] - 1, 0)] - step, x[min(keep[-1] + 1, x.size - 1)] + step


def assert_matches(result, name, reference, transform=lambda v: v):
    """Exact median and 90 % interval match the grid's within 10–15 % of its width."""
    lo, median, hi = reference
    width = hi - lo
    got = [transform(result[name][key]) for key in ("lo90", "median", "hi90")]
    assert result["ess"] > 100
    assert abs(got[1] - median) < 0.10 * width, (name, got, reference)
    assert abs(got[0] - lo) < 0.15 * width, (name, got, reference)
    assert abs(got[2] - hi) < 0.15 * width, (name, got, reference)


def test_one_free_parameter_matches_a_brute_force_grid():
    pH = trace(0.02)
    model = network(np.log10(0.05), 0.3)  # the network is 0.4 decades off, 30x too wide
    x = np.linspace(-3.0, 0.0, 3001)  # log10 activity; the prior is uniform in it
    k_d = np.full(x.size, 1e-3)
    low, high = zoom(x, log_likelihood(pH, 10**x, k_d))
    x = np.linspace(low, high, 4001)
    log_post = log_likelihood(pH, 10**x, np.full(x.size, 1e-3))
    reference = grid_quantiles(x, np.exp(log_post - log_post.max()))

    result = refine(model, T, pH, KNOWN, domain=ONE_FREE, seed=1)
    assert result["verdict"] != "unreliable", result["reason"]
    assert_matches(result, "activity", reference, np.log10)
    assert result["k_d"]["median"] == result["k_d"]["lo95"] == 1e-3  # fixed, not inferred
    assert result["comparison"]["activity"]["verdict"] in ("shifted", "wider")
    assert set(result["network"]) == {"activity", "k_d"}
    json.dumps({k: v for k, v in result.items() if k not in ("draws", "weights")})


def test_two_free_parameters_through_the_logit_network_match_a_grid():
    # activity and k_d free (k_d through the network's logit transform), lag/offset off
    pH = trace(0.01, k_d=2e-3, seed=3)
    model = network(np.log10(0.012), 0.1, k_d_loc=0.0, k_d_scale=1.5)
    domain = {"use_probe_lag": False, "use_offset": False, "noise_std": SIGMA}
    x, k = np.linspace(-3.0, 0.0, 601), np.linspace(0.0, 5e-3, 11)
    X, K = np.meshgrid(x, k, indexing="ij")
    coarse = log_likelihood(pH, 10 ** X.ravel(), K.ravel()).reshape(X.shape).max(axis=1)
    low, high = zoom(x, coarse)
    x, k = np.linspace(low, high, 301), np.linspace(0.0, 5e-3, 101)
    X, K = np.meshgrid(x, k, indexing="ij")
    log_post = log_likelihood(pH, 10 ** X.ravel(), K.ravel()).reshape(X.shape)
    post = np.exp(log_post - log_post.max())  # priors: uniform in log10 activity and k_d

    result = refine(model, T, pH, KNOWN, domain=domain, seed=2)
    assert result["verdict"] != "unreliable", result["reason"]
    assert_matches(result, "activity", grid_quantiles(x, post.sum(axis=1)), np.log10)
    assert_matches(result, "k_d", grid_quantiles(k, post.sum(axis=0)))


def test_a_broad_posterior_from_the_network_round_alone_matches_a_grid():
    # Ten readings at σ = 0.3 pH say little: the posterior is near the prior, and round 1
    # (the network's proposal alone, no adaptation) carries it, so the densities of the
    # prior and of the network's log10 / logit Gaussians (their Jacobians) decide it.
    sigma = 0.3
    t = np.linspace(0.0, 30.0, 10)
    latent = {"activity": np.array([0.003]), "k_d": np.array([2e-3]),
              "tau_probe": np.zeros(1), "pH_offset": np.zeros(1)}
    pH = predict_readings(t, KNOWN, latent)[0] + np.random.default_rng(8).normal(0, sigma, 10)
    model = network(-2.0, 0.8, k_d_loc=0.5, k_d_scale=1.5)
    domain = {"use_probe_lag": False, "use_offset": False, "noise_std": sigma}
    x, k = np.linspace(-3.0, 0.0, 301), np.linspace(0.0, 5e-3, 51)
    X, K = np.meshgrid(x, k, indexing="ij")
    predicted = predict_readings(t, KNOWN, {"activity": 10 ** X.ravel(), "k_d": K.ravel()})
    log_post = (-0.5 * np.sum((predicted - pH) ** 2, axis=1) / sigma**2).reshape(X.shape)
    post = np.exp(log_post - log_post.max())

    # No prior draws mixed in: they would give the right answer even with wrong densities.
    result = refine(model, t, pH, KNOWN, domain=domain, seed=5, max_rounds=1, prior_fraction=0.0)
    assert result["diagnostics"]["rounds"] == 1 and result["ess"] > 500
    assert_matches(result, "activity", grid_quantiles(x, post.sum(axis=1)), np.log10)
    assert_matches(result, "k_d", grid_quantiles(k, post.sum(axis=0)))


def test_a_nuisance_parameter_the_network_does_not_infer_is_marginalised():
    # The network infers activity and k_d; the probe lag is on (prior 0–10 s) but not
    # inferred: refine draws it from the prior and the weights marginalise it out.
    pH = trace(0.02, tau_probe=4.0, seed=5)
    model = network(np.log10(0.02), 0.2)
    domain = {"param_ranges": {"k_d": (1e-3, 1e-3), "tau_probe": (0.0, 10.0)},
              "use_probe_lag": True, "use_offset": False, "noise_std": SIGMA}
    x, tau = np.linspace(-3.0, 0.0, 301), np.linspace(0.0, 10.0, 11)
    X, TAU = np.meshgrid(x, tau, indexing="ij")
    ones = np.full(X.size, 1e-3)
    coarse = log_likelihood(pH, 10 ** X.ravel(), ones, TAU.ravel()).reshape(X.shape)
    low, high = zoom(x, coarse.max(axis=1))
    x, tau = np.linspace(low, high, 161), np.linspace(0.0, 10.0, 81)
    X, TAU = np.meshgrid(x, tau, indexing="ij")
    ones = np.full(X.size, 1e-3)
    log_post = log_likelihood(pH, 10 ** X.ravel(), ones, TAU.ravel()).reshape(X.shape)
    post = np.exp(log_post - log_post.max())

    result = refine(model, T, pH, KNOWN, domain=domain, seed=3)
    assert result["verdict"] != "unreliable", result["reason"]
    assert_matches(result, "activity", grid_quantiles(x, post.sum(axis=1)), np.log10)
    weights, lag = result["weights"], result["draws"]["tau_probe"]
    exact_lag = weighted_quantiles(lag, weights, np.array([0.05, 0.5, 0.95]))
    reference = grid_quantiles(tau, post.sum(axis=0))
    assert np.all(np.abs(exact_lag - reference) < 0.15 * (reference[2] - reference[0]))


def test_weights_do_not_change_when_the_proposal_density_is_rescaled(monkeypatch):
    pH = trace(0.02)
    model = network(np.log10(0.03), 0.2)
    plain = refine(model, T, pH, KNOWN, domain=ONE_FREE, seed=4, max_rounds=2)
    original = refine_module._mixture_log_pdf
    for factor in (700.0, -700.0):  # the density times e^±700: beyond float range
        monkeypatch.setattr(refine_module, "_mixture_log_pdf",
                            lambda components, u, f=factor: original(components, u) + f)
        scaled = refine(model, T, pH, KNOWN, domain=ONE_FREE, seed=4, max_rounds=2)
        np.testing.assert_allclose(scaled["weights"], plain["weights"], rtol=1e-9, atol=1e-300)
        assert scaled["activity"] == pytest.approx(plain["activity"], rel=1e-9)
        assert scaled["ess"] == pytest.approx(plain["ess"], rel=1e-9)


def test_an_absurd_proposal_is_unreliable_never_confidently_wrong():
    pH = trace(0.02)
    # The network claims activity 0.8 ± 0.2 % (truth 0.02) and no prior draws are mixed in.
    model = network(np.log10(0.8), 1e-3)
    alone = refine(model, T, pH, KNOWN, domain=ONE_FREE, prior_fraction=0.0, max_rounds=1)
    assert alone["verdict"] == "unreliable", alone["reason"]
    # Adapted rounds may find the posterior (Gauss-Newton from the best draw); then the
    # answer must be right, otherwise it must still say "unreliable".
    adapted = refine(model, T, pH, KNOWN, domain=ONE_FREE, prior_fraction=0.0)
    if adapted["verdict"] != "unreliable":
        x = np.linspace(np.log10(0.015), np.log10(0.027), 2001)
        log_post = log_likelihood(pH, 10**x, np.full(x.size, 1e-3))
        assert_matches(adapted, "activity", grid_quantiles(x, np.exp(log_post - log_post.max())),
                       np.log10)
        assert adapted["verdict"] == "shifted"


def test_a_trace_the_model_cannot_describe_is_unreliable():
    pH = trace(0.02, noise=0.05, seed=6)  # five times the noise the likelihood assumes
    result = refine(network(np.log10(0.02), 0.3), T, pH, KNOWN, domain=ONE_FREE)
    assert result["verdict"] == "unreliable"
    assert "misses the readings" in result["reason"]
    # Told the real noise, the same trace is fine.
    honest = refine(network(np.log10(0.02), 0.3), T, pH, KNOWN, domain=ONE_FREE, noise_std=0.05)
    assert honest["verdict"] != "unreliable", honest["reason"]


def test_verdict_labels_and_thresholds():
    def summary(lo, median, hi):
        return {"lo90": 10.0**lo, "median": 10.0**median, "hi90": 10.0**hi}

    exact = summary(-2.1, -2.0, -1.9)
    assert compare(summary(-2.11, -2.01, -1.91), exact, "log10")["verdict"] == "agrees"
    wide = compare(summary(-2.3, -2.0, -1.7), exact, "log10")
    assert wide["verdict"] == "wider" and wide["width_ratio"] == pytest.approx(3.0)
    sharp = compare(summary(-2.02, -2.0, -1.98), exact, "log10")
    assert sharp["verdict"] == "sharper" and sharp["width_ratio"] == pytest.approx(0.2)
    shifted = compare(summary(-1.85, -1.75, -1.65), exact, "log10")
    assert shifted["verdict"] == "shifted"
    assert shifted["shift_sigma"] == pytest.approx(0.25 / (0.2 / 3.2897), rel=1e-3)
    # far off in exact sigmas but well inside its own, wide interval: "wider", not shifted
    assert compare(summary(-2.8, -1.8, -0.8), exact, "log10")["verdict"] == "wider"
    # identity and logit parameters are compared in their own spaces
    assert compare({"lo90": 1.0, "median": 2.0, "hi90": 3.0},
                   {"lo90": 1.5, "median": 2.0, "hi90": 2.5}, "identity")["width_ratio"] == 2.0
    logit = compare({"lo90": 1e-3, "median": 2.5e-3, "hi90": 4e-3},
                    {"lo90": 1e-3, "median": 2.5e-3, "hi90": 4e-3}, "logit", (0.0, 5e-3))
    assert logit["verdict"] == "agrees" and logit["width_ratio"] == pytest.approx(1.0)


def test_weighted_quantiles_and_resampling():
    rng = np.random.default_rng(0)
    values = rng.normal(size=501)
    q = np.array([0.05, 0.5, 0.95])
    np.testing.assert_allclose(weighted_quantiles(values, np.ones(501), q),
                               np.quantile(values, q, method="hazen"))
    # zero weights drop a draw; the scale of the weights does not matter
    keep = rng.random(501) < 0.5
    np.testing.assert_allclose(weighted_quantiles(values, 7.0 * keep, q),
                               np.quantile(values[keep], q, method="hazen"))
    weights = np.exp(-0.5 * (values - 1.0) ** 2)
    weights /= weights.sum()
    result = {"draws": {name: values for name in ("activity", "k_d", "tau_probe", "pH_offset")},
              "weights": weights}
    draws = refined_draws(result, 4000, rng)
    assert set(draws) == {"activity", "k_d", "tau_probe", "pH_offset"}
    assert np.mean(draws["activity"]) == pytest.approx(weights @ values, abs=0.02)


def test_forecast_from_the_exact_posterior_runs():
    pH = trace(0.02)
    model = network(np.log10(0.02), 0.2)
    fans = forecast(model, T, pH, KNOWN, exact=True, n_draws=60, n_times=101, t_max=600.0,
                    threshold=7.5)
    fan = fans[0]
    assert fan["median"].shape == (101,) and np.all(fan["lo"] <= fan["hi"])
    assert 0.0 <= fan["time_to_threshold"]["p_reached"] <= 1.0
    # both posteriors describe the trace: the fans start at the measured initial pH
    network_fan = forecast(model, T, pH, KNOWN, n_draws=60, n_times=101, t_max=600.0)[0]
    assert fan["median"][0] == pytest.approx(network_fan["median"][0], abs=1e-6)


def test_refine_on_the_shipped_model_reports_both_answers():
    model = ei_keras.inference.load_model(ei_keras.default_model_path())
    t = np.linspace(0.0, 30.0, 100)
    latent = {"activity": np.array([0.05]), "k_d": np.array([1e-3]),
              "tau_probe": np.array([5.0]), "pH_offset": np.array([0.02])}
    known = dict(KNOWN, initial_pH=7.02)
    pH = predict_readings(t, known, latent)[0] + np.random.default_rng(7).normal(0, 0.01, 100)
    result = refine(model, t, pH, known, n_samples=1000)
    network_answer = infer(model, t, pH, known)
    assert set(result["network"]) == {"activity", "k_d", "tau_probe", "pH_offset"}
    for name in result["network"]:
        assert result["network"][name]["median"] == pytest.approx(
            float(network_answer[name]["median"][0]), rel=1e-6)
        exact = result[name]
        assert exact["lo95"] <= exact["lo90"] <= exact["lo50"] <= exact["median"] \
            <= exact["hi50"] <= exact["hi90"] <= exact["hi95"]
    assert result["verdict"] in ("agrees", "sharper", "wider", "shifted", "unreliable")
    assert result["reason"] and result["ess"] > 0
    if result["verdict"] != "unreliable":
        assert result["activity"]["lo95"] < 0.05 < result["activity"]["hi95"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exact")
    return (folder, *tiny_test_set(folder, 6, 21))


def test_evaluate_exact_writes_the_comparison(tiny_set):
    from ei_keras.cli import main

    folder, data, _ = tiny_set
    out = folder / "report"
    code = main(["evaluate", "--model", str(folder / "model.keras"), "--data", str(data),
                 "--out", str(out), "--n-forecast", "2", "--n-baseline", "1", "--exact", "3",
                 "--no-progress"])
    assert code == 0
    exact = json.loads((out / "metrics.json").read_text())["exact"]
    assert exact["n"] == 3 and sum(exact["verdicts"].values()) == 3
    assert {"activity", "k_d"} <= set(exact["parameters"])
    for entry in exact["parameters"].values():
        assert {"std_ratio", "offset_sigma", "width_ratio90", "coverage90"} <= set(entry)
    reliable = [trace for trace in exact["traces"] if "parameters" in trace]
    for name, entry in exact["parameters"].items():  # against the per-trace errors
        network = [trace["parameters"][name]["error_network"] for trace in reliable]
        exact_errors = [trace["parameters"][name]["error_exact"] for trace in reliable]
        assert entry["error_ratio"] == pytest.approx(
            np.sqrt(sum(e * e for e in network) / sum(e * e for e in exact_errors)))
    assert {"network", "exact"} <= set(exact["forecast_rmse"])


def test_infer_exact_prints_both_answers_and_the_verdict(tiny_set, tmp_path, capsys):
    from ei_keras.cli import main

    folder, _, prefix = tiny_set
    csv = tmp_path / "trace.csv"
    csv.write_text("t,pH\n" + "\n".join(f"{t:.4f},{p:.5f}"
                                        for t, p in zip(prefix.t[0], prefix.pH[0])) + "\n")
    known = dict(zip(prefix.known_names, prefix.known[0].astype(float).tolist()))
    out = tmp_path / "result.json"
    assert main(["infer", "--model", str(folder / "model.keras"), "--csv", str(csv),
                 "--known", json.dumps(known), "--exact", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "network median [90%]" in printed and "exact median [90%]" in printed
    assert "verdict: " in printed and "ESS" in printed
    exact = json.loads(out.read_text())["exact"]
    assert exact["verdict"] in ("agrees", "sharper", "wider", "shifted", "unreliable")
    assert exact["activity"]["lo90"] <= exact["activity"]["median"] <= exact["activity"]["hi90"]


def test_every_proposal_density_is_normalised_for_its_own_sampler():
    from scipy.stats import multivariate_t

    prior = refine_module.exact_prior(network(0.0, 1.0), {"use_offset": False})
    space = refine_module.PriorSpace(prior)
    assert space.names == ["activity", "k_d", "tau_probe"] and space.fixed == {"pH_offset": 0.0}
    rng = np.random.default_rng(0)
    # The network's Gaussians (log10 activity, logit k_d; tau_probe from the prior), mapped
    # into the prior coordinates through their Jacobians: the mass inside the prior
    # (E_prior[q / p]) plus the share of draws that fell outside it is 1.
    decoded = {"activity": {"loc": -2.5, "scale": 0.4, "transform": "log10", "bounds": None},
               "k_d": {"loc": 0.5, "scale": 0.8, "transform": "logit", "bounds": [0.0, 5e-3]}}
    proposal = refine_module._Network(space, decoded, 1.5)
    u = rng.logistic(size=(400_000, 3))
    inside = np.mean(np.exp(proposal.log_pdf(u) - space.log_prior(u)))
    outside = np.mean(~np.all(np.isfinite(proposal.sample(rng, 400_000)), axis=1))
    assert outside > 0.02  # log10 activity 0 is 1.5 widened σ away: some draws leave
    assert inside + outside == pytest.approx(1.0, abs=0.01)
    # The adapted proposals against scipy.
    cov = np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]])
    student = refine_module._StudentT(np.array([0.1, -0.2, 0.3]), cov)
    points = rng.normal(size=(50, 3))
    np.testing.assert_allclose(
        student.log_pdf(points),
        multivariate_t(loc=[0.1, -0.2, 0.3], shape=cov, df=5.0).logpdf(points), rtol=1e-10)
    gauss = refine_module._StudentT(np.zeros(3), cov, df=np.inf)
    mixture = refine_module._Mixture([student, gauss])
    np.testing.assert_allclose(
        mixture.log_pdf(points),
        np.log(0.5 * np.exp(student.log_pdf(points)) + 0.5 * np.exp(gauss.log_pdf(points))))
