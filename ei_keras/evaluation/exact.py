"""How sharp and honest is the network? Its posterior against the exact one, on test traces.

:func:`exact_check` runs :func:`ei_keras.refine` (the exact posterior by importance
sampling) on the first test traces and compares, per parameter, the network's posterior
with the exact one — in the space the network predicts in (log10 activity, logit or
identity for the others) — and both with the truth.
"""

import time

import numpy as np
from tqdm.auto import tqdm

from ei_keras.inference.least_squares import predict_readings
from ei_keras.inference.posterior import _run, forecast_from_draws, load_model
from ei_keras.targets import draw_latents
from ei_keras.inference.exact_posterior import refine, refined_draws
from ei_keras.inference.laplace import network_z
from ei_keras.simulation import KNOWN_NAMES

_Z90 = 1.6448536269514722


def _quantiles(values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return {"median": None, "p90": None}
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def error_ratio(network, exact):
    """RMS of the network's errors over that of the exact posterior's (None without)."""
    if not network or not np.any(exact):
        return None
    return float(np.sqrt(np.mean(np.square(network)) / np.mean(np.square(exact))))


def _weighted_std(values, weights):
    keep = np.isfinite(values) & (weights > 0)
    w = weights[keep] / weights[keep].sum()
    mean = w @ values[keep]
    return float(np.sqrt(w @ (values[keep] - mean) ** 2))


def exact_check(model_or_path, data, n, *, prefix_length=None, n_samples=2000, seed=0,
                forecast=True, n_draws=200, threshold=8.5, t_max=2000.0, n_times=401,
                allow_extrapolation=False, progress=False) -> dict:
    """Network vs exact posterior on the first ``n`` traces of a test set.

    Parameters
    ----------
    model_or_path : keras.Model or path of a ``.keras`` file
    data : path of a test dataset, or loaded test data (``t, pH, known, latent,
        latent_names``; NaN-padded rows are fine)
    n : int
        Traces to check (the first ones).
    prefix_length : float, optional
        The prefix group of the file to use (default as ``ei-keras evaluate``).
    n_samples, seed : passed to :func:`ei_keras.refine` (seed + row per trace).
    forecast : bool
        Also forecast each trace to ``t_max`` from both posteriors (``n_draws`` draws) and
        score the median forecast against the noise-free measured pH of the truth.
    allow_extrapolation : bool
        As for ``ei-keras evaluate``: traces whose known inputs are outside the trained
        ranges are left out, or with it checked and marked ``extrapolated``.

    Returns
    -------
    dict (JSON-able)
        ``n`` (traces checked), ``domain`` (the counts of
        :func:`~ei_keras.evaluation.evaluate.extrapolation_rows`), ``n_reliable`` (traces
        whose exact answer is not ``unreliable``), ``verdicts`` (count per verdict),
        ``ess`` (median, min), ``seconds_per_trace``, and per parameter over the reliable
        traces: ``std_ratio`` (network σ / exact σ in the network's space:
        median and 90th percentile), ``offset_sigma`` (|network median − exact median| /
        exact σ: median and 90th percentile), ``width_ratio90`` (90 % interval widths),
        ``coverage90`` of the truth by the ``network`` and the ``exact`` 90 % intervals,
        ``error_ratio`` (RMS error of the network's median over that of the exact median,
        against the truth);
        with ``forecast``, ``forecast_rmse`` of the ``network`` and ``exact`` median
        forecasts (pH, over 0–``t_max``, reliable traces); and ``traces``, one short record
        per trace (with the per-parameter values above for reliable traces, and the
        squared forecast errors' means ``forecast_mse``), to regroup, e.g. by format.
    """
    from ei_keras.evaluation.evaluate import extrapolation_rows, load_test_data

    model = load_model(model_or_path)
    data_path = "the test data"
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        data_path, data = data, load_test_data(model, data, prefix_length)
    n = int(min(n, len(data.pH)))
    rows, extrapolated, domain = extrapolation_rows(model, data, n, allow_extrapolation,
                                                    data_path)
    latent = {name: np.asarray(data.latent[:n, j], dtype=float)
              for j, name in enumerate(data.latent_names)}
    grid = np.linspace(0.0, float(t_max), int(n_times))
    rng = np.random.default_rng(seed)
    records, per_parameter, fans = [], {}, {"network": [], "exact": [], "truth": []}
    for row, outside in tqdm(zip(rows, extrapolated), total=len(rows), desc="exact check",
                             disable=not progress):
        row = int(row)
        valid = np.isfinite(data.t[row]) & np.isfinite(data.pH[row])
        t, pH = np.asarray(data.t[row][valid], float), np.asarray(data.pH[row][valid], float)
        known = dict(zip(KNOWN_NAMES, np.asarray(data.known[row], dtype=float)))
        started = time.perf_counter()
        result = refine(model, t, pH, known, n_samples=n_samples, seed=seed + row,
                        allow_extrapolation=True)
        seconds = time.perf_counter() - started
        reliable = result["verdict"] != "unreliable"
        records.append({"row": row, "readings": int(t.size), "length_s": float(t[-1]),
                        "ess": result["ess"], "verdict": result["verdict"],
                        "seconds": seconds, "extrapolated": bool(outside)})
        decoded = _run(model, t, pH, known, allow_extrapolation=True, check_fit=False)[0]
        for name, d in decoded.items():
            transform, bounds = d["transform"], d.get("bounds")
            net, exact = result["network"][name], result[name]

            def z(value):
                with np.errstate(all="ignore"):
                    return float(network_z(transform, np.float64(value), bounds))
            exact_sigma = _weighted_std(network_z(transform, result["draws"][name], bounds),
                                        result["weights"])
            entry = per_parameter.setdefault(name, {key: [] for key in (
                "std_ratio", "offset_sigma", "width_ratio90", "covered_network",
                "covered_exact", "error_network", "error_exact")})
            if not reliable:
                continue
            truth = latent[name][row]
            values = {
                "std_ratio": float(d["scale"][0]) / exact_sigma if exact_sigma > 0 else np.nan,
                "offset_sigma": abs(float(d["loc"][0]) - z(exact["median"])) / exact_sigma
                if exact_sigma > 0 else np.nan,
                "width_ratio90": result["comparison"].get(name, {}).get("width_ratio", np.nan),
                "covered_network": bool(net["lo90"] <= truth <= net["hi90"]),
                "covered_exact": bool(exact["lo90"] <= truth <= exact["hi90"]),
                "error_network": float(d["loc"][0]) - z(truth),
                "error_exact": z(exact["median"]) - z(truth)}
            for key, value in values.items():
                entry[key].append(value)
            records[-1].setdefault("parameters", {})[name] = values
        if forecast and reliable:
            truth_latent = {name: np.array([latent[name][row]]) for name in latent}
            fans["truth"].append(predict_readings(grid, known, truth_latent)[0])
            network_draws = draw_latents(decoded, n_draws, rng)[0]
            fans["network"].append(forecast_from_draws(known, network_draws, grid,
                                                       threshold=threshold)["median"])
            fans["exact"].append(forecast_from_draws(known, refined_draws(result, n_draws, rng),
                                                     grid, threshold=threshold)["median"])
            records[-1]["forecast_mse"] = {
                which: float(np.mean((fans[which][-1] - fans["truth"][-1]) ** 2))
                for which in ("network", "exact")}

    verdicts = [record["verdict"] for record in records]
    report = {
        "n": len(records), "domain": domain,
        "n_reliable": int(sum(v != "unreliable" for v in verdicts)),
        "n_samples": int(n_samples),
        "verdicts": {label: verdicts.count(label) for label in
                     ("agrees", "sharper", "wider", "shifted", "unreliable")},
        "ess": {"median": float(np.median([r["ess"] for r in records])),
                "min": float(np.min([r["ess"] for r in records]))} if records else None,
        "seconds_per_trace": float(np.mean([r["seconds"] for r in records])) if records
        else None,
        "note": "ratios and offsets in the space the network predicts in (log10 activity); "
                "over the traces whose exact answer is reliable",
        "parameters": {},
    }
    for name, entry in per_parameter.items():
        report["parameters"][name] = {
            "std_ratio": _quantiles(entry["std_ratio"]),
            "offset_sigma": _quantiles(entry["offset_sigma"]),
            "width_ratio90": _quantiles(entry["width_ratio90"]),
            "coverage90": {
                "network": float(np.mean(entry["covered_network"]))
                if entry["covered_network"] else None,
                "exact": float(np.mean(entry["covered_exact"]))
                if entry["covered_exact"] else None},
            "error_ratio": error_ratio(entry["error_network"], entry["error_exact"]),
        }
    if forecast and fans["truth"]:
        truth = np.array(fans["truth"])
        report["forecast_rmse"] = {
            which: float(np.sqrt(np.mean((np.array(fans[which]) - truth) ** 2)))
            for which in ("network", "exact")}
        report["forecast_rmse"]["t_max_s"] = float(t_max)
    report["traces"] = records
    return report
