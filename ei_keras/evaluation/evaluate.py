"""Held-out evaluation of a model against the truth and the least-squares baseline.

``evaluate`` runs a trained model on a test dataset's prefixes (the prefix length the model
was trained for), scores point accuracy and calibration per parameter in the space the
network predicts in (log10 activity, k_d in 1/s, ...), forecasts a subset of traces to
the end of the run, fits the same subset by least squares, and writes ``metrics.json``
and an interactive ``report.html``.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ei_keras.data import load_any_format, load_prefix
from ei_keras.errors import EiKerasError
from ei_keras.fileio import write_json, write_text
from ei_keras.evaluation.by_format import cell_metrics, format_cells, forecast_rows_per_cell
from ei_keras.evaluation.metrics import calibration_curve, point_metrics, posterior_metrics
from ei_keras.inference.domain import known_outside, thin_dense
from ei_keras.inference.information import attention_agreement, reading_information
from ei_keras.inference.least_squares import fit_least_squares, predict_readings
from ei_keras.inference.posterior import (
    forecast_from_draws,
    infer,
    load_model,
    time_to_threshold,
    trained_prefix_length,
)
from ei_keras.inference.laplace import SHARPEN_FROM_S, exact_prior, local_fits
from ei_keras.inference.laplace import sharpen as sharpen_answers
from ei_keras.models import decode_predictions, model_info
from ei_keras.simulation import KNOWN_NAMES
from ei_keras.targets import draw_latents, forward_transform, summarize_gaussian

HORIZONS_S = (300.0, 1000.0, 2000.0)
# Traces whose attention and per-reading information the report plots.
INFORMATION_EXAMPLES = 3
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


def valid_trace(data, row):
    """The readings of one trace without its NaN padding: ``(t, pH)`` float64."""
    valid = np.isfinite(data.t[row]) & np.isfinite(data.pH[row])
    return data.t[row, valid].astype(float), data.pH[row, valid].astype(float)


def load_test_data(model, data_path, prefix_length=None):
    """The test traces a model is scored on: the file's prefix group of ``prefix_length``
    if given; otherwise every any-format trace for an any-format model, the trained prefix
    length for a fixed-format one."""
    if prefix_length is not None:
        return load_prefix(data_path, prefix_length)
    if model_info(model)["any_format"]:
        return load_any_format(data_path)
    return load_prefix(data_path, trained_prefix_length(model))


def score_parameter(truth_physical, d):
    """Posterior metrics of one parameter: calibration (NLL, CRPS, coverage, z) in the
    network's space; point metrics of the median in the README's space — log10 for
    activity, physical units for the rest (a bounded parameter's logit is no unit)."""
    truth = forward_transform(d["transform"], truth_physical, d.get("bounds"))
    scores = posterior_metrics(truth, d["loc"], d["scale"])
    if d["transform"] == "logit":
        scores.update(point_metrics(truth_physical, d["median"]))
        spread = np.var(truth_physical)
        scores["contraction"] = float(1 - np.mean(d["std"] ** 2) / spread) if spread > 0 \
            else float("nan")
    return scores


def point_space(transform, values):
    """Values in the space point errors are reported in (log10 for log10 targets)."""
    return np.log10(values) if transform == "log10" else np.asarray(values, float)


def extrapolation_rows(model, data, n, allow_extrapolation, data_path):
    """Of the first ``n`` traces of ``data``, the rows to score and per scored row whether
    its answer is an extrapolation (known inputs outside the trained ranges).

    Without ``allow_extrapolation`` such traces are left out, as :func:`ei_keras.infer`
    refuses them; with it they are scored and flagged. Returns ``(rows, extrapolated,
    report)``, ``report``: ``allow_extrapolation``, ``n_outside`` (of the ``n``),
    ``n_left_out``, ``n_extrapolated`` (scored, flagged) and ``example`` (one in words).

    Raises:
        EiKerasError: every trace is outside and extrapolation is not allowed.
    """
    if list(data.known_names) != list(KNOWN_NAMES):
        raise EiKerasError(f"{data_path}: known inputs {data.known_names} are not {KNOWN_NAMES}")
    texts = known_outside(model_info(model)["domain"], data.known[:n])
    outside = np.array([bool(row) for row in texts], dtype=bool)
    example = next((row[0] for row in texts if row), None)
    rows = np.arange(n) if allow_extrapolation else np.flatnonzero(~outside)
    if n and not len(rows):
        raise EiKerasError(
            f"{data_path}: all {n} traces have known inputs outside the ranges the model was "
            f"trained on (e.g. {example}); their answers would be extrapolations. Pass "
            f"allow_extrapolation=True (CLI: --allow-extrapolation) to score them anyway, "
            f"flagged")
    n_outside = int(outside.sum())
    report = {"allow_extrapolation": bool(allow_extrapolation), "n_outside": n_outside,
              "n_left_out": 0 if allow_extrapolation else n_outside,
              "n_extrapolated": n_outside if allow_extrapolation else 0, "example": example}
    return rows, outside[rows], report


def thinned_as_infer(model, data):
    """``data`` with each trace holding more than 1.25× the readings the model was trained
    on thinned to one reading in k, as :func:`ei_keras.infer` answers it (see
    :func:`~ei_keras.inference.domain.thin_dense`), and how many traces that touched."""
    t, pH, every = thin_dense(model_info(model)["domain"], data.t, data.pH)
    thinned = int(np.sum(every > 1))
    if not thinned:
        return data, 0
    lengths = None if data.lengths is None else np.sum(
        np.isfinite(t) & np.isfinite(pH), axis=1).astype(data.lengths.dtype)
    return dataclasses.replace(data, t=t, pH=pH, lengths=lengths), thinned


def _rows_of(data, rows):
    """``data`` (a PrefixData) with only ``rows`` of its per-trace arrays."""
    n = len(data.pH)
    return dataclasses.replace(data, **{
        field.name: getattr(data, field.name)[rows] for field in dataclasses.fields(data)
        if isinstance(getattr(data, field.name), np.ndarray)
        and len(getattr(data, field.name)) == n})


def evaluate(model_path, data_path, out_dir, *, n_forecast=100, n_baseline=50, n_draws=200,
             threshold=8.5, t_max=2000.0, n_times=1001, seed=0, progress=True,
             n_information=100, prefix_length=None, allow_extrapolation=False, sharpen=True):
    """Evaluate ``model_path`` on ``data_path``; write ``metrics.json`` and ``report.html``.

    Parameters
    ----------
    model_path : path of a ``.keras`` model
    data_path : a test dataset generated with a *different seed* than the training set
    prefix_length : score on this fixed prefix group of the file (default: the any-format
        traces for an any-format model, the trained prefix for a fixed-format one)
    out_dir : folder for ``metrics.json`` and ``report.html`` (created)
    n_forecast : traces forecast to ``t_max`` (the first ones of the file; for an
        any-format test set the first ones of every format cell)
    n_baseline : traces also fitted by least squares (the first ones of the file)
    n_information : traces on which attention is compared with per-reading information
    n_draws : posterior draws per forecast
    threshold : pH whose time of reaching is forecast
    seed : seed of the posterior draws
    allow_extrapolation : also score the traces whose known inputs lie outside the ranges
        the model was trained on (which :func:`ei_keras.infer` refuses without it); by
        default they are left out. Either way ``metrics["domain"]`` counts them (see
        :func:`extrapolation_rows`); when scored, ``model_within_ranges`` beside each
        parameter's ``model`` scores the others alone. Traces with more than 1.25× the
        readings the model was trained on are scored thinned, as ``infer`` answers them
        (``metrics["domain"]["n_thinned"]``).
    sharpen : score the answers as ``infer`` gives them, sharpened by the local fit where
        the readings pin a parameter down (``metrics["sharpened"]``: the share of traces
        per parameter); False: the network's answers alone

    Returns
    -------
    dict, the content of ``metrics.json``.
    """
    model = load_model(model_path)
    data = load_test_data(model, data_path, prefix_length)
    prefix_length = data.prefix_length
    any_format = getattr(data, "lengths", None) is not None
    rows, extrapolated, domain_report = extrapolation_rows(
        model, data, len(data.pH), allow_extrapolation, data_path)
    if len(rows) < len(data.pH):
        data = _rows_of(data, rows)
    data, domain_report["n_thinned"] = thinned_as_infer(model, data)
    latent = {name: data.latent[:, j].astype(float) for j, name in enumerate(data.latent_names)}
    decoded, attention = decode_dataset(model, data)
    share_sharpened = None
    if sharpen:
        fits = local_fits(exact_prior(model), decoded, data.t, data.pH, data.known,
                          min_span_s=SHARPEN_FROM_S, progress=progress)
        names = sharpen_answers(decoded, fits)
        share_sharpened = {name: float(np.mean([name in row for row in names]))
                           for name in decoded}
    truth = {name: forward_transform(d["transform"], latent[name], d.get("bounds"))
             for name, d in decoded.items()}

    metrics = {
        "model": str(model_path), "data": str(data_path), "prefix_length_s": prefix_length,
        "n_test": len(data.pH), "data_seed": data.config["seed"],
        "any_format": any_format,
        "note": "point metrics (MAE, RMSE, R²) of log10 activity and of the other parameters "
                "in physical units; NLL, CRPS and z-scores in the space the network predicts "
                "in (log10 activity, logit over the prior range for bounded parameters); "
                "coverage is the same in either space",
        "parameters": {}, "calibration": {}, "domain": domain_report,
        "sharpened": share_sharpened,
    }
    within = ~extrapolated
    for name, d in decoded.items():
        metrics["parameters"][name] = {
            "transform": d["transform"], "model": score_parameter(latent[name], d)}
        if extrapolated.any() and within.any():
            metrics["parameters"][name]["model_within_ranges"] = score_parameter(
                latent[name][within], {k: v[within] if isinstance(v, np.ndarray) else v
                                       for k, v in d.items()})
        metrics["calibration"][name] = calibration_curve(truth[name], d["loc"], d["scale"])

    grid = np.linspace(0.0, t_max, n_times)
    n_baseline = min(n_baseline, len(data.pH))
    if any_format:
        prefix_index, interval_index = format_cells(data)
        cells = len(set(zip(prefix_index.tolist(), interval_index.tolist())))
        forecast_rows = forecast_rows_per_cell(prefix_index, interval_index,
                                               max(1, n_forecast // cells))
    else:
        forecast_rows = list(range(min(n_forecast, len(data.pH))))
    n_forecast = len(forecast_rows)
    known_rows = [dict(zip(KNOWN_NAMES, row.astype(float))) for row in data.known]
    draws = draw_latents({name: {k: v[forecast_rows] if isinstance(v, np.ndarray) else v
                                 for k, v in d.items()} for name, d in decoded.items()},
                         n_draws, np.random.default_rng(seed))
    true_readings, fans = [], []
    for k, row in enumerate(tqdm(forecast_rows, desc="forecasts", disable=not progress)):
        true_latent = {name: np.array([latent[name][row]]) for name in latent}
        true_readings.append(predict_readings(grid, known_rows[row], true_latent)[0])
        fans.append(forecast_from_draws(known_rows[row], draws[k], grid, threshold=threshold))
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
        fitted.append(fit_least_squares(*valid_trace(data, row), known_rows[row],
                                        fit=fit_names, param_ranges=ranges))
        fit_seconds.append(time.perf_counter() - started)
    subset = slice(0, n_baseline)
    for name, d in decoded.items():
        estimate = point_space(d["transform"], [f[name] for f in fitted])
        entry = metrics["parameters"][name]
        entry["least_squares_subset"] = point_metrics(
            point_space(d["transform"], latent[name][subset]), estimate)
        entry["model_subset"] = score_parameter(
            latent[name][subset], {k: v[subset] if isinstance(v, np.ndarray) else v
                                   for k, v in d.items()})
    both_rows = [row for row in forecast_rows if row < n_baseline]
    lsq_readings = np.array([
        predict_readings(grid, known_rows[row], {k: np.array([v]) for k, v in fitted[row].items()})[0]
        for row in both_rows]).reshape(len(both_rows), len(grid))
    n_both = len(lsq_readings)
    if n_both:  # forecast rows are sorted: the first n_both are the ones also fitted
        metrics["forecast"]["least_squares_subset"] = _forecast_metrics(
            grid, true_readings[:n_both], lsq_readings,
            time_to_threshold(grid, lsq_readings, threshold), threshold)
        metrics["forecast"]["model_subset"] = _forecast_metrics(
            grid, true_readings[:n_both], model_median[:n_both],
            [fan["time_to_threshold"]["median"] for fan in fans[:n_both]], threshold)

    if any_format:
        point_truth = {name: point_space(d["transform"], latent[name])
                       for name, d in decoded.items()}
        point_estimate = {name: point_space(d["transform"], d["median"])
                          for name, d in decoded.items()}
        metrics["by_format"] = cell_metrics(
            truth, decoded, point_truth, point_estimate, prefix_index, interval_index,
            forecast_rows, [(model_median[k] - true_readings[k]) ** 2
                            for k in range(len(forecast_rows))])
    metrics["attention_information"], information_examples = _attention_agreement(
        model, data, decoded, attention, known_rows, n_information)
    metrics["seconds_per_trace"] = {
        "model": _single_trace_seconds(model, data, known_rows,
                                       allow_extrapolation=allow_extrapolation, sharpen=sharpen),
        "least_squares": float(np.mean(fit_seconds)) if fit_seconds else float("nan"),
    }
    metrics["n_forecast"], metrics["n_baseline"] = n_forecast, n_baseline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    from ei_keras.evaluation.report import build_report
    write_text(out_dir / "report.html", build_report(
        metrics, latent=latent, decoded=decoded, fitted=fitted, data=data, attention=attention,
        fans=fans, true_readings=true_readings,
        information_examples=information_examples))
    return metrics


def _attention_agreement(model, data, decoded, attention, known_rows, n_traces):
    """Median Spearman correlation, over the first ``n_traces`` traces, between the
    attention on each reading and its Fisher information about each parameter (at the
    posterior median); also ``(t, attention, information)`` of the first few traces."""
    domain = model_info(model)["domain"] or {}
    noise = domain.get("noise_std", 0.01) or 0.01
    rhos, examples = [], []
    for row in range(min(n_traces, len(data.pH))):
        valid = np.isfinite(data.t[row]) & np.isfinite(data.pH[row])
        point = {name: float(d["median"][row]) for name, d in decoded.items()}
        information = reading_information(
            data.t[row, valid], known_rows[row], point,
            {name: d["transform"] for name, d in decoded.items()},
            {name: d.get("bounds") for name, d in decoded.items()}, noise)
        rhos.append(attention_agreement(attention[row, valid], information))
        if len(examples) < INFORMATION_EXAMPLES:
            examples.append((data.t[row, valid], attention[row, valid], information))
    if not rhos:
        return {}, examples
    return {"n_traces": len(rhos),
            "median_spearman": {name: float(np.nanmedian([r[name] for r in rhos]))
                                for name in rhos[0]}}, examples


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


def _single_trace_seconds(model, data, known_rows, repeats=20, allow_extrapolation=False,
                          sharpen=True):
    """Median wall time of ``infer`` on one trace (as scored: ``sharpen``, no misfit
    check), after one warm-up call."""
    infer(model, *valid_trace(data, 0), known_rows[0], check_fit=False,
          allow_extrapolation=allow_extrapolation, sharpen=sharpen)
    times = []
    for row in range(min(repeats, len(data.pH))):
        started = time.perf_counter()
        infer(model, *valid_trace(data, row), known_rows[row], check_fit=False,
              allow_extrapolation=allow_extrapolation, sharpen=sharpen)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def evaluate_dataset(model, data_path, prefix_length=None, n_max=None, *, progress=None,
                     allow_extrapolation=False):
    """Posterior against the truth on the first ``n_max`` traces of a dataset.

    ``prefix_length``: a prefix group of the file, ``"any"`` for its any-format traces, or
    None (as :func:`load_test_data`). ``progress`` is called with the fraction done.
    ``allow_extrapolation``: also score the traces whose known inputs lie outside the
    ranges the model was trained on, flagged; without it they are left out, as
    :func:`ei_keras.infer` refuses them. Either way they are counted.

    Returns
    -------
    dict
        ``n`` (traces scored), ``extrapolated`` ((n,) bool: the scored answers that are
        extrapolations), ``domain`` (the counts of :func:`extrapolation_rows`) and per
        target: ``truth``, ``median``, ``lo90``, ``hi90`` (physical units),
        ``transform``, ``calibration`` (:func:`calibration_curve` of the network's
        Gaussian, in its own space) and ``calibration_within_ranges`` (the same without
        the extrapolated answers; None when there are none, or only those).

    Raises
    ------
    EiKerasError
        Traces longer than a fixed-format model was trained on, a target the dataset
        holds no truth for, or only traces outside the trained ranges and
        ``allow_extrapolation`` False.
    """
    model = load_model(model)
    data = (load_any_format(data_path) if prefix_length == "any"
            else load_test_data(model, data_path, prefix_length))
    if not model_info(model)["any_format"]:
        trained = trained_prefix_length(model)
        if data.prefix_length > trained * 1.01:
            raise EiKerasError(f"the traces run to {data.prefix_length:g} s but the model was "
                               f"trained on {trained:g} s prefixes; choose traces up to "
                               f"{trained:g} s")
    n = len(data.pH) if n_max is None else min(int(n_max), len(data.pH))
    scored, extrapolated, report = extrapolation_rows(model, data, n, allow_extrapolation,
                                                      data_path)
    parts = []
    for start in range(0, len(scored), BATCH):
        rows = scored[start:start + BATCH]
        batch = dataclasses.replace(data, t=data.t[rows], pH=data.pH[rows],
                                    known=data.known[rows])
        parts.append(decode_dataset(model, batch)[0])
        if progress is not None:
            progress(min(len(scored), start + BATCH) / len(scored))
    result = {"n": len(scored), "extrapolated": extrapolated, "domain": report}
    within = ~extrapolated if extrapolated.any() and not extrapolated.all() else None
    for name, d in parts[0].items():
        if name not in data.latent_names:
            raise EiKerasError(f"{data_path}: the dataset has no truth for {name}")
        loc = np.concatenate([part[name]["loc"] for part in parts])
        scale = np.concatenate([part[name]["scale"] for part in parts])
        truth = data.latent[scored, list(data.latent_names).index(name)].astype(float)
        summary = summarize_gaussian(loc, scale, d["transform"], d.get("bounds"))
        truth_space = forward_transform(d["transform"], truth, d.get("bounds"))
        result[name] = {
            "truth": truth, "median": summary["median"], "lo90": summary["lo90"],
            "hi90": summary["hi90"], "transform": d["transform"],
            "calibration": calibration_curve(truth_space, loc, scale),
            "calibration_within_ranges": None if within is None else calibration_curve(
                truth_space[within], loc[within], scale[within])}
    return result
