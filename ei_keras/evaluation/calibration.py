"""Calibration after training: one factor per parameter on the posterior's width.

A network trained with the regularised NLL can come out a little over- or under-confident
on the whole (an earlier shipped model's activity intervals covered 88 % of held-out
truths at 90 %, in most trace formats alike). :func:`calibrate` measures on held-out traces that
neither training nor the test sets saw how far each truth lies from the posterior median,
in posterior standard deviations of the trained space (log10, logit), and sets each
parameter's factor so that its central 90 % interval covers 90 % of them:

    std_scale = quantile(|z|, 0.90) / 1.645       (z with the uncalibrated σ)

The medians do not move; every interval, forecast draw and the exact check's proposal use
the scaled σ. The factors and what they were fitted on are stored in the model's output
layer (``std_scale`` and ``run_config["calibration"]``), so a calibrated ``.keras`` file
answers calibrated on its own.
"""

import dataclasses
import os
from pathlib import Path

import numpy as np
from scipy.special import ndtri

from ei_keras.data.shards import sha256_of
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.evaluate import decode_dataset, load_test_data
from ei_keras.evaluation.metrics import LEVELS, gaussian_nll, interval_coverage
from ei_keras.inference.posterior import load_model
from ei_keras.models import posterior_layer, save_model
from ei_keras.targets import forward_transform

LEVEL = 0.90
# Fewest held-out traces a factor is fitted on: the 90 % quantile of |z| from 500 traces
# is within about ±4 % (one standard error) of its limit.
MIN_TRACES = 500


def z_scores(model, data):
    """Per target, (truth − median) / uncalibrated σ in the trained space, (n,) arrays."""
    decoded, _ = decode_dataset(model, data)
    scales = posterior_layer(model).codec.std_scale
    latent = {name: data.latent[:, j].astype(float) for j, name in enumerate(data.latent_names)}
    z = {}
    for (name, d), factor in zip(decoded.items(), scales):
        truth = forward_transform(d["transform"], latent[name], d.get("bounds"))
        z[name] = (truth - d["loc"]) / (d["scale"] / factor)
    return z


def fit_std_scale(z, level=LEVEL):
    """The factor on σ that makes the central ``level`` interval cover ``level`` of ``z``."""
    return float(np.quantile(np.abs(z), level) / ndtri(0.5 + level / 2))


def coverage_report(z, factor):
    """Coverage at 50/90/95 % and mean NLL (in σ units) of ``z`` with σ times ``factor``."""
    zeros, scale = np.zeros_like(z), np.full_like(z, factor)
    return {**{f"coverage{level}": interval_coverage(z, zeros, scale, level)
               for level in LEVELS},
            "nll": float(np.mean(gaussian_nll(z, zeros, scale)))}


def calibrate(model_path, data_path, out_path, *, level=LEVEL):
    """Fit the σ factors of ``model_path`` on the traces of ``data_path``; save to ``out_path``.

    Args:
        model_path: a trained ``.keras`` model (an any-format model reads the file's
            any-format traces, a fixed-format one its trained prefix length).
        data_path: held-out dataset from ``ei-keras generate`` (another seed than the
            training and test sets), at least :data:`MIN_TRACES` traces.
        out_path: where the calibrated ``.keras`` file goes (written aside and renamed);
            it may not be ``model_path``.
        level: the interval whose coverage is matched (0.90).

    Returns:
        dict: per target ``{"std_scale", "before": {...}, "after": {...}}`` (coverage at
        50/90/95 % and NLL in σ units on the calibration traces), ``n`` and the paths.

    Raises:
        EiKerasError: unreadable model or data, too few traces, ``out_path`` the model.
    """
    out_path = Path(out_path)
    if out_path.exists() and Path(model_path).exists() and os.path.samefile(out_path,
                                                                           model_path):
        raise EiKerasError(f"--out {out_path} is the model itself; write the calibrated "
                           "model to a new file")
    model = load_model(model_path)
    data = load_test_data(model, data_path)
    if len(data.pH) < MIN_TRACES:
        raise EiKerasError(f"dataset {data_path}: {len(data.pH)} traces; calibration needs "
                           f"at least {MIN_TRACES} held-out traces (ei-keras generate "
                           f"--n-samples {MIN_TRACES * 4} with a seed of its own)")
    z = z_scores(model, data)
    report = {"model": os.fspath(model_path), "data": os.fspath(data_path),
              "data_seed": (data.config or {}).get("seed"), "n": len(data.pH),
              "level": level, "parameters": {}}
    layer = posterior_layer(model)
    scales = []
    for (name, values), current in zip(z.items(), layer.codec.std_scale):
        factor = fit_std_scale(values, level)
        scales.append(factor)
        report["parameters"][name] = {"std_scale": factor,
                                      "before": coverage_report(values, current),
                                      "after": coverage_report(values, factor)}
    layer.codec = dataclasses.replace(layer.codec, std_scale=tuple(scales))
    layer.run_config = {**(layer.run_config or {}), "calibration": {
        **{key: report[key] for key in ("data", "data_seed", "n", "level")},
        "data_config": data.config, "model_sha256": sha256_of(model_path),
        "std_scale": dict(zip(z, scales))}}
    save_model(model, out_path)
    report["out"] = os.fspath(out_path)
    return report
