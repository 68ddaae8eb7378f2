"""Posterior summaries, forecasts and infer() on a real (tiny, untrained) saved model."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from ei_keras import EiKerasError
from ei_keras.inference import infer, predict_readings
from ei_keras.inference.posterior import forecast_from_draws, time_to_threshold
from ei_keras.models import build_model, fit_normalization
from ei_keras.targets import draw_latents, summarize_gaussian

KNOWN = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
             initial_pH=7.05)
KNOWN_NAMES = list(KNOWN)


def test_log10_summary_matches_scipy_lognormal():
    loc, scale = np.array([-1.3, -2.0]), np.array([0.2, 0.05])
    summary = summarize_gaussian(loc, scale, "log10")
    dist = stats.lognorm(s=scale * np.log(10), scale=10**loc)
    np.testing.assert_allclose(summary["median"], dist.median())
    np.testing.assert_allclose(summary["mean"], dist.mean())
    np.testing.assert_allclose(summary["std"], dist.std())
    for level in (50, 90, 95):
        lo, hi = dist.interval(level / 100)
        np.testing.assert_allclose(summary[f"lo{level}"], lo)
        np.testing.assert_allclose(summary[f"hi{level}"], hi)


def test_identity_summary_matches_scipy_normal():
    summary = summarize_gaussian(np.array([2e-3]), np.array([1e-3]), "identity")
    lo, hi = stats.norm(2e-3, 1e-3).interval(0.9)
    assert summary["lo90"][0] == pytest.approx(lo) and summary["hi90"][0] == pytest.approx(hi)
    assert summary["mean"][0] == summary["median"][0] == pytest.approx(2e-3)


def test_logit_summary_matches_quadrature_and_stays_inside_bounds():
    from scipy import integrate
    loc, scale, high = np.array([-3.0, 0.4, -8.0]), np.array([2.0, 0.3, 4.0]), 5e-3
    summary = summarize_gaussian(loc, scale, "logit", [0.0, high])
    for j in range(3):  # an independent logistic map, integrated adaptively
        value = lambda z: high / (1 + np.exp(-(loc[j] + scale[j] * z)))  # noqa: E731
        weight = stats.norm.pdf
        mean = integrate.quad(lambda z: value(z) * weight(z), -40, 40, epsabs=1e-15)[0]
        second = integrate.quad(lambda z: value(z) ** 2 * weight(z), -40, 40, epsabs=1e-17)[0]
        assert summary["mean"][j] == pytest.approx(mean, rel=1e-4)
        assert summary["std"][j] == pytest.approx(np.sqrt(second - mean**2), rel=1e-4)
        for level in (50, 90, 95):
            z = stats.norm.ppf(0.5 + level / 200)
            assert summary[f"hi{level}"][j] == pytest.approx(value(z), rel=1e-9)
            assert 0 < summary[f"lo{level}"][j] < summary[f"hi{level}"][j] < high


def test_time_to_threshold_against_a_loop():
    t = np.linspace(0, 100, 11)
    readings = np.array([np.linspace(7, 9, 11), np.full(11, 7.0), np.full(11, 9.0)])
    reach = time_to_threshold(t, readings, 8.5)
    assert reach[0] == pytest.approx(75.0)  # 7 + 2 t / 100 = 8.5
    assert reach[1] == np.inf and reach[2] == 0.0


def test_forecast_from_draws_is_the_simulated_measured_pH():
    draws = {"activity": np.array([0.02, 0.05, 0.2]), "k_d": np.array([0.0, 1e-3, 2e-3]),
             "pH_offset": np.array([0.05, 0.0, -0.05])}
    t = np.linspace(0, 2000, 201)
    out = forecast_from_draws(KNOWN, draws, t, threshold=8.0)
    direct = predict_readings(t, KNOWN, draws)
    np.testing.assert_allclose(out["median"], np.median(direct, axis=0))
    assert np.all(out["lo"] <= out["median"]) and np.all(out["median"] <= out["hi"])
    # offset included: the first predicted reading is the measured initial pH
    assert out["median"][0] == pytest.approx(KNOWN["initial_pH"])
    reach = out["time_to_threshold"]
    np.testing.assert_allclose(reach["draws"], time_to_threshold(t, direct, 8.0))
    assert 0.0 <= reach["p_reached"] <= 1.0


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, m = 32, 50
    t = np.tile(np.linspace(0, 30, m), (n, 1))
    pH = 7 + np.cumsum(rng.uniform(0, 0.02, (n, m)), axis=1)
    known = np.column_stack([rng.uniform(1, 100, n), rng.uniform(0.01, 0.5, n),
                             rng.uniform(0.1, 1, n), rng.uniform(20, 40, n), pH[:, 0]])
    targets = np.column_stack([10 ** rng.uniform(-3, 0, n), rng.uniform(0, 5e-3, n)])
    model = build_model(fit_normalization(t, pH, known, targets))
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


@pytest.mark.backend
def test_infer_shapes_intervals_and_attention(saved_model):
    t = np.linspace(0, 30, 40)
    pH = np.vstack([7.05 + 0.3 * np.log1p(t) / 4, 7.05 + 0.1 * np.log1p(t) / 4])
    result = infer(saved_model, t, pH, KNOWN)
    assert set(result) == {"activity", "k_d", "attention", "domain"}
    assert len(result["domain"]) == 2 and all("ok" in d for d in result["domain"])
    for name in ("activity", "k_d"):
        r = result[name]
        assert all(r[key].shape == (2,) for key in r)
        assert np.all(r["lo95"] <= r["lo90"]) and np.all(r["lo90"] <= r["lo50"])
        assert np.all(r["lo50"] <= r["median"]) and np.all(r["median"] <= r["hi50"])
        assert np.all(r["hi50"] <= r["hi90"]) and np.all(r["hi90"] <= r["hi95"])
    assert result["attention"].shape == (2, 40)
    np.testing.assert_allclose(result["attention"].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.backend
def test_infer_in_a_fresh_process_matches(saved_model):
    t = np.linspace(0, 30, 40)
    pH = 7.05 + 0.3 * np.log1p(t) / 4
    here = infer(saved_model, t, pH, KNOWN)["activity"]["median"][0]
    script = (
        "import json, numpy as np, ei_keras\n"
        "from ei_keras.inference import infer\n"
        f"t = np.linspace(0, 30, 40); pH = 7.05 + 0.3 * np.log1p(t) / 4\n"
        f"r = infer({str(saved_model)!r}, t, pH, {KNOWN!r})\n"
        "print(json.dumps(float(r['activity']['median'][0])))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pytest.approx(here, rel=1e-5)


@pytest.mark.parametrize("t, pH, message", [
    (np.linspace(0, 60, 40), np.full(40, 7.1), "trained on prefixes of 30 s"),
    (np.linspace(0, 30, 40)[::-1], np.full(40, 7.1), "increase"),
    (np.linspace(0, 30, 40), np.full(40, np.nan), "NaN"),
    (np.linspace(0, 30, 40), np.full(40, 17.0), "0–14"),
])
def test_infer_rejects_bad_traces(saved_model, t, pH, message):
    with pytest.raises(EiKerasError, match=message):
        infer(saved_model, t, pH, KNOWN)


def test_infer_rejects_a_foreign_file(tmp_path):
    bogus = tmp_path / "not_a_model.keras"
    bogus.write_bytes(b"definitely not a zip archive")
    with pytest.raises(EiKerasError, match="not a .keras archive"):
        infer(bogus, [0, 1, 2], [7, 7, 7], KNOWN)


def test_draws_from_a_very_wide_posterior_stay_simulable():
    decoded = {"activity": {"loc": np.array([0.0]), "scale": np.array([5.0]), "transform": "log10"},
               "k_d": {"loc": np.array([0.0]), "scale": np.array([1.0]), "transform": "identity"}}
    draws = draw_latents(decoded, 500, np.random.default_rng(0))[0]
    assert draws["activity"].max() <= 1000 and draws["k_d"].min() >= 0
    out = forecast_from_draws(KNOWN, draws, np.linspace(0, 2000, 11))
    assert np.all(np.isfinite(out["median"]))
