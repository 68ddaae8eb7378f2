"""Metrics against scipy and brute-force references."""

import numpy as np
import pytest
from scipy import integrate, stats

from ei_keras.evaluation.metrics import (
    calibration_curve,
    gaussian_crps,
    gaussian_nll,
    posterior_metrics,
)


def test_nll_matches_scipy():
    y, loc, scale = np.array([0.3, -1.0]), np.array([0.0, 0.5]), np.array([0.5, 2.0])
    np.testing.assert_allclose(gaussian_nll(y, loc, scale), -stats.norm(loc, scale).logpdf(y))


def test_crps_matches_numerical_integral():
    y, loc, scale = 0.7, 0.1, 0.4
    dist = stats.norm(loc, scale)
    integral = (integrate.quad(lambda x: dist.cdf(x) ** 2, -np.inf, y)[0]
                + integrate.quad(lambda x: (1 - dist.cdf(x)) ** 2, y, np.inf)[0])
    assert gaussian_crps(y, loc, scale) == pytest.approx(integral, rel=1e-6)


def test_a_calibrated_posterior_covers_at_nominal_rates():
    rng = np.random.default_rng(0)
    n = 20000
    loc = rng.normal(0, 1, n)
    scale = rng.uniform(0.1, 0.5, n)
    y = loc + scale * rng.standard_normal(n)
    metrics = posterior_metrics(y, loc, scale)
    for level in (50, 90, 95):
        assert metrics[f"coverage{level}"] == pytest.approx(level / 100, abs=0.01)
    assert metrics["z_std"] == pytest.approx(1.0, abs=0.02)
    curve = calibration_curve(y, loc, scale)
    np.testing.assert_allclose(curve["observed"], np.array(curve["nominal"]) / 100, atol=0.015)


def test_overconfident_posterior_undercovers():
    rng = np.random.default_rng(1)
    loc = np.zeros(5000)
    y = rng.standard_normal(5000)
    metrics = posterior_metrics(y, loc, np.full(5000, 0.5))
    assert metrics["coverage90"] < 0.7 and metrics["z_std"] > 1.8
