"""Held-out evaluation of a model against the truth and the least-squares baseline.

``evaluate`` runs a trained model on a test dataset's prefixes (the prefix length the model
was trained for), scores point accuracy and calibration per parameter in the space the
network predicts in (log10 activity, k_d in 1/s, ...), forecasts a subset of traces to
the end of the run, fits the same subset by least squares, and writes ``metrics.json``
and an interactive ``report.html``.
"""

import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ei_keras.data import load_prefix
from ei_keras.errors import EiKerasError
from ei_keras.evaluation.metrics import calibration_curve, point_metrics, posterior_metrics
from ei_keras.inference.least_squares import fit_least_squares, predict_readings
from ei_keras.inference.posterior import (
    draw_latents,
    forecast_from_draws,
    infer,
    load_model,
    time_to_threshold,
    trained_prefix_length,
)
from ei_keras.layers.gaussian_posterior import forward_transform
from ei_keras.models import decode_predictions
from ei_keras.simulation import KNOWN_NAMES

HORIZONS_S = (300.0, 1000.0, 2000.0)
BATCH = 512


def decode_dataset(model, data):
    """Gaussian (loc, scale) in transformed units per target, and attention, for every case."""
    posterior, attention = [], []
    for start in range(0, len(data.pH), BATCH):
        rows = slice(start, start + BATCH)
        outputs = model.predict_on_batch({"pH": data.pH[rows], "t": data.t[rows],
                                          "known": data.known[rows].astype(np.float32)})
        posterior.append(np.asarray(outputs["posterior"]))
        attention.append(np.asarray(outputs["attention"], dtype=float))
    return decode_predictions(model, np.concatenate(posterior)), np.concatenate(attention)


def evaluate(model_path, data_path, out_dir, *, n_forecast=100, n_baseline=50, n_draws=200,
             threshold=8.5, t_max=2000.0, n_times=1001, seed=0, progress=True):
    """Evaluate ``model_path`` on ``data_path``; write ``metrics.json`` and ``report.html``.

    Parameters
    ----------
    model_path : path of a ``.keras`` model
    data_path : a test dataset generated with a *different seed* than the training set
    out_dir : folder for ``metrics.json`` and ``report.html`` (created)
    n_forecast : traces forecast to ``t_max`` (the first ones of the file)
    n_baseline : traces also fitted by least squares (the first ones of the file)
    n_draws : posterior draws per forecast
    threshold : pH whose time of reaching is forecast
    seed : seed of the posterior draws

    Returns
    -------
    dict, the content of ``metrics.json``.
    """
    model = load_model(model_path)
    # The model's time scale is the longest reading time it was trained on: its prefix.
    data = load_prefix(data_path, trained_prefix_length(model))
    prefix_length = data.prefix_length
    if list(data.known_names) != list(KNOWN_NAMES):
        raise EiKerasError(f"{data_path}: known inputs {data.known_names} are not {KNOWN_NAMES}")
    latent = {name: data.latent[:, j].astype(float) for j, name in enumerate(data.latent_names)}
    decoded, attention = decode_dataset(model, data)
    truth = {name: forward_transform(d["transform"], latent[name]) for name, d in decoded.items()}

    metrics = {
        "model": str(model_path), "data": str(data_path), "prefix_length_s": prefix_length,
        "n_test": len(data.pH), "data_seed": data.config["seed"],
        "note": "parameter metrics are in the space the network predicts in "
                "(log10 activity; other parameters in physical units)",
        "parameters": {}, "calibration": {},
    }
    for name, d in decoded.items():
        metrics["parameters"][name] = {
            "transform": d["transform"], "model": posterior_metrics(truth[name], d["loc"], d["scale"])}
        metrics["calibration"][name] = calibration_curve(truth[name], d["loc"], d["scale"])

    grid = np.linspace(0.0, t_max, n_times)
    n_forecast = min(n_forecast, len(data.pH))
    n_baseline = min(n_baseline, len(data.pH))
    known_rows = [dict(zip(KNOWN_NAMES, row.astype(float))) for row in data.known]
    draws = draw_latents({name: {k: v[:n_forecast] if k != "transform" else v
                                 for k, v in d.items()} for name, d in decoded.items()},
                         n_draws, np.random.default_rng(seed))
    true_readings, fans = [], []
    for row in tqdm(range(n_forecast), desc="forecasts", disable=not progress):
        true_latent = {name: np.array([latent[name][row]]) for name in latent}
        true_readings.append(predict_readings(grid, known_rows[row], true_latent)[0])
        fans.append(forecast_from_draws(known_rows[row], draws[row], grid, threshold=threshold))
    true_readings = np.array(true_readings)
    model_median = np.array([fan["median"] for fan in fans])
    metrics["forecast"] = {"model": _forecast_metrics(grid, true_readings, model_median,
                                                      [fan["time_to_threshold"]["median"]
                                                       for fan in fans], threshold)}

    fit_names = ["activity", "k_d"] + [
        name for name, switch in (("tau_probe", "use_probe_lag"), ("pH_offset", "use_offset"))
        if data.config["measurement_model"][switch]]
    ranges = {name: tuple(data.config["param_ranges"][name]) for name in fit_names}
    fitted, fit_seconds = [], []
    for row in tqdm(range(n_baseline), desc="least squares", disable=not progress):
        started = time.perf_counter()
        fitted.append(fit_least_squares(data.t[row], data.pH[row], known_rows[row],
                                        fit=fit_names, param_ranges=ranges))
        fit_seconds.append(time.perf_counter() - started)
    subset = slice(0, n_baseline)
    for name, d in decoded.items():
        estimate = forward_transform(d["transform"], np.array([f[name] for f in fitted]))
        entry = metrics["parameters"][name]
        entry["least_squares_subset"] = point_metrics(truth[name][subset], estimate)
        entry["model_subset"] = posterior_metrics(truth[name][subset], d["loc"][subset],
                                                  d["scale"][subset])
    lsq_readings = np.array([
        predict_readings(grid, known_rows[row], {k: np.array([v]) for k, v in fitted[row].items()})[0]
        for row in range(min(n_baseline, n_forecast))])
    n_both = len(lsq_readings)
    metrics["forecast"]["least_squares_subset"] = _forecast_metrics(
        grid, true_readings[:n_both], lsq_readings,
        time_to_threshold(grid, lsq_readings, threshold), threshold)
    metrics["forecast"]["model_subset"] = _forecast_metrics(
        grid, true_readings[:n_both], model_median[:n_both],
        [fan["time_to_threshold"]["median"] for fan in fans[:n_both]], threshold)

    metrics["seconds_per_trace"] = {
        "model": _single_trace_seconds(model, data, known_rows),
        "least_squares": float(np.mean(fit_seconds)) if fit_seconds else float("nan"),
    }
    metrics["n_forecast"], metrics["n_baseline"] = n_forecast, n_baseline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=2))
    from ei_keras.evaluation.report import build_report
    write_atomically(out_dir / "report.html", build_report(
        metrics, truth=truth, decoded=decoded, fitted=fitted, data=data, attention=attention,
        grid=grid, fans=fans, true_readings=true_readings))
    return metrics


def _forecast_metrics(grid, truth, predicted, predicted_times, threshold):
    """Forecast RMSE over the run and at the horizons; time-to-threshold error."""
    error = np.asarray(predicted) - truth
    result = {"rmse": float(np.sqrt(np.mean(error**2)))}
    for horizon in HORIZONS_S:
        column = int(np.argmin(np.abs(grid - horizon)))
        result[f"rmse_at_{horizon:g}s"] = float(np.sqrt(np.mean(error[:, column] ** 2)))
    true_times = time_to_threshold(grid, truth, threshold)
    predicted_times = np.asarray(predicted_times, dtype=float)
    both = np.isfinite(true_times) & np.isfinite(predicted_times)
    result["threshold_pH"] = threshold
    result["time_to_threshold_mae_s"] = (
        float(np.mean(np.abs(predicted_times[both] - true_times[both]))) if both.any()
        else float("nan"))
    result["reached_agreement"] = float(np.mean(np.isfinite(true_times)
                                                == np.isfinite(predicted_times)))
    return result


def _single_trace_seconds(model, data, known_rows, repeats=20):
    """Median wall time of ``infer`` on one trace, after one warm-up call."""
    infer(model, data.t[0], data.pH[0], known_rows[0])
    times = []
    for row in range(min(repeats, len(data.pH))):
        started = time.perf_counter()
        infer(model, data.t[row], data.pH[row], known_rows[row])
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def write_atomically(path, text):
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
