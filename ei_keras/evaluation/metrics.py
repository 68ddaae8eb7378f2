"""Pure NumPy metrics of point accuracy and calibration for Gaussian posteriors.

Every function takes the truth ``y`` and a Gaussian (``loc``, ``scale``) in the space the
network predicts in (log10 activity, k_d as is, ...), arrays of one shape.
"""

import numpy as np
from scipy.special import ndtr, ndtri

LEVELS = (50, 90, 95)


def gaussian_nll(y, loc, scale):
    """Negative log-likelihood of ``y`` under N(loc, scale²), per sample."""
    z = (y - loc) / scale
    return 0.5 * np.log(2 * np.pi) + np.log(scale) + 0.5 * z**2


def gaussian_crps(y, loc, scale):
    """Continuous ranked probability score of N(loc, scale²) at ``y`` (closed form)."""
    z = (y - loc) / scale
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return scale * (z * (2 * ndtr(z) - 1) + 2 * pdf - 1 / np.sqrt(np.pi))


def interval_coverage(y, loc, scale, level):
    """Fraction of ``y`` inside the central ``level`` % interval."""
    half_width = ndtri(0.5 + level / 200.0) * scale
    return float(np.mean(np.abs(y - loc) <= half_width))


def point_metrics(y, estimate):
    """MAE, RMSE and R² of point estimates."""
    error = estimate - y
    total = np.sum((y - np.mean(y)) ** 2)
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "r2": float(1 - np.sum(error**2) / total) if total > 0 else float("nan"),
    }


def posterior_metrics(y, loc, scale):
    """Point metrics of the mean plus NLL, CRPS, interval coverage, z-scores, contraction.

    Contraction is 1 − mean posterior variance / variance of the truth (the prior spread
    over the test set): 0 learns nothing, 1 pins the parameter down.
    """
    z = (y - loc) / scale
    metrics = point_metrics(y, loc)
    metrics.update({
        "nll": float(np.mean(gaussian_nll(y, loc, scale))),
        "crps": float(np.mean(gaussian_crps(y, loc, scale))),
        "z_mean": float(np.mean(z)),
        "z_std": float(np.std(z)),
        "contraction": float(1 - np.mean(scale**2) / np.var(y)) if np.var(y) > 0 else float("nan"),
    })
    for level in LEVELS:
        metrics[f"coverage{level}"] = interval_coverage(y, loc, scale, level)
    return metrics


def calibration_curve(y, loc, scale, levels=np.arange(5, 100, 5)):
    """Observed coverage of the central intervals at each nominal level (percent)."""
    return {"nominal": [float(v) for v in levels],
            "observed": [interval_coverage(y, loc, scale, v) for v in levels]}
