"""What the Analyse page computes for one model and one trace, through the package:
the model's description, the posterior with its domain report and per-reading
information, the forecast and the exact check, all messages in the dashboard's words."""

import hashlib
import json

import numpy as np

from dashboard.jobs import RUNNING, list_runs
from dashboard.words import domain_in_words, in_dashboard_words
from dashboard.workspace import default_model, mtime
from ei_keras.config import resolve_dataset_config
from ei_keras.errors import EiKerasError
from ei_keras.inference import forecast, infer, refine
from ei_keras.inference.information import attention_agreement, reading_information
from ei_keras.models import model_info


def available_models() -> list[dict]:
    """Models to analyse with: the shipped default, then the best model of each run."""
    models = []
    path = default_model()
    if path is not None:
        models.append({"label": "Shipped default model", "path": str(path)})
    for run in list_runs():
        if run["best_model"] and run["state"] != RUNNING:
            text = f"Run {run['id']} ({run['state']}, {run['dataset']}"
            if run["best_val_loss"] is not None:
                text += f", best val_loss {run['best_val_loss']:.3g}"
            models.append({"label": text + ")", "path": run["best_model"]})
    return models


def describe_model(model) -> dict:
    """What a model reads and infers (``ei_keras.models.model_info``): ``any_format``,
    ``domain`` (None for models saved before the domain guard), ``prefix_length`` (the
    longest time trained on [s]), target names, transforms, bounds, known inputs, and
    ``n_params``."""
    info = model_info(model)
    return {"prefix_length": float(info["time_scale"]), "any_format": bool(info["any_format"]),
            "domain": info["domain"], "target_names": list(info["target_names"]),
            "transforms": list(info["transforms"]), "bounds": list(info["bounds"]),
            "known_names": list(info["known_names"]), "n_params": int(model.count_params())}


def model_reads(info: dict) -> str:
    """One sentence: the traces a model was trained on (``info`` from describe_model)."""
    domain, longest = info["domain"], info["prefix_length"]
    if not domain:
        return (f"Reads traces up to **{longest:g} s** (a model saved before the domain "
                "guard: only the pH range and the fit to the chemistry are checked).")
    (short, long_), (fine, coarse) = domain["prefix_length_s"], domain["reading_interval_s"]
    if info["any_format"]:
        return (f"Reads **any trace of 3 or more readings**: trained on {short:.3g}–"
                f"{long_:.3g} s at one reading every {fine:.3g}–{coarse:.3g} s; a longer trace "
                f"is cut at {long_:.3g} s, and any trace outside these formats is flagged.")
    return (f"Trained on **{long_:g} s** traces of {domain['readings'][1]} readings (one every "
            f"{coarse:.3g} s); reads traces up to {long_:g} s.")


def analyse_trace(model, trace, *, allow_extrapolation=False) -> dict:
    """``ei_keras.infer`` of one trace: ``posterior`` (per target one float per
    statistic), ``attention``, ``domain`` (flags in the dashboard's words), ``used`` (the
    readings the model read) and :func:`information_about`'s keys. EiKerasError (in the
    dashboard's words) when the package refuses the trace."""
    try:
        result = infer(model, trace["t"], trace["pH"], trace["known"],
                       allow_extrapolation=allow_extrapolation)
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None
    summary = {name: {key: float(values[0]) for key, values in stats.items()}
               for name, stats in result.items() if name not in ("attention", "domain")}
    domain = domain_in_words(result["domain"])
    used = int(domain.get("readings", len(trace["t"])))
    attention = np.asarray(result["attention"][0], dtype=float)
    analysis = {"posterior": summary, "attention": attention, "domain": domain, "used": used}
    analysis.update(information_about(model, trace, summary, attention, used))
    return analysis


def information_about(model, trace, posterior, attention, used) -> dict:
    """What each of the first ``used`` readings tells about each parameter at the
    posterior median (``ei_keras.inference.information``): ``information`` (per target,
    over the used readings), ``agreement`` (Spearman correlation with the attention, per
    target and ``"all"``) and ``information_note`` (why they are None, or None)."""
    info = describe_model(model)
    names = info["target_names"]
    noise = ((info["domain"] or {}).get("noise_std")
             or resolve_dataset_config({})["measurement_model"]["noise_std"])
    try:
        information = reading_information(
            np.asarray(trace["t"][:used], dtype=float), trace["known"],
            {name: posterior[name]["median"] for name in names},
            dict(zip(names, info["transforms"])), dict(zip(names, info["bounds"])), noise)
    except EiKerasError as error:
        return {"information": None, "agreement": None,
                "information_note": ("the information per reading cannot be computed at "
                                     f"this posterior median ({error})")}
    return {"information": information,
            "agreement": attention_agreement(np.asarray(attention[:used]), information),
            "information_note": None}


def forecast_trace(model, trace, *, threshold=8.5, t_max=2000.0, n_draws=200, seed=0,
                   n_times=1001, allow_extrapolation=False) -> dict:
    """``ei_keras.forecast`` of one trace (its fit to the chemistry was checked by
    :func:`analyse_trace`)."""
    try:
        return forecast(model, trace["t"], trace["pH"], trace["known"], t_max=t_max,
                        n_times=n_times, threshold=threshold, n_draws=n_draws, seed=seed,
                        allow_extrapolation=allow_extrapolation, check_fit=False)[0]
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None


def exact_key(model_path, trace, *, allow_extrapolation=False) -> str:
    """What an exact check answers for (model file and version, readings, known inputs,
    the extrapolation switch), as one short string."""
    digest = hashlib.sha256()
    digest.update(f"{model_path}|{mtime(model_path)}|{bool(allow_extrapolation)}|".encode())
    for name in ("t", "pH"):
        digest.update(np.ascontiguousarray(trace[name], dtype=float).tobytes())
    digest.update(json.dumps({k: float(v) for k, v in trace["known"].items()},
                             sort_keys=True).encode())
    return digest.hexdigest()[:24]


def exact_check(model, trace, *, n_samples=2000, seed=0, allow_extrapolation=False) -> dict:
    """``ei_keras.refine`` of one trace without its weighted draws: per parameter
    ``exact`` and ``network`` summaries, ``comparison``, ``ess``, ``n_draws``,
    ``noise_std``, ``seconds``, ``verdict`` and ``reason`` (in the dashboard's words)."""
    try:
        result = refine(model, trace["t"], trace["pH"], trace["known"], n_samples=n_samples,
                        seed=seed, allow_extrapolation=allow_extrapolation)
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None
    except (ArithmeticError, ValueError) as error:  # numerical (LinAlgError too)
        raise EiKerasError(f"the exact posterior could not be computed "
                           f"({type(error).__name__}: {error})") from None
    diagnostics = result["diagnostics"]
    return {"exact": {name: result[name] for name in result["network"]},
            "network": result["network"], "comparison": result["comparison"],
            "ess": float(result["ess"]), "n_draws": int(diagnostics["n_draws"]),
            "noise_std": float(diagnostics["noise_std"]),
            "seconds": float(diagnostics["seconds"]), "verdict": result["verdict"],
            "reason": in_dashboard_words(result["reason"])}


def coverage_at(result: dict, level: float, *, within_ranges=False) -> float:
    """Observed coverage of the central ``level`` % interval in one target's evaluation
    (``within_ranges``: without the extrapolated answers)."""
    curve = result["calibration_within_ranges" if within_ranges else "calibration"]
    return curve["observed"][curve["nominal"].index(level)]


def evaluation_domain_note(evaluation: dict, n_cases: int):
    """What a dataset evaluation did with cases outside the ranges the model was trained
    on: ``("info", text)`` left out, ``("warning", text)`` scored as extrapolations, or
    None when there were none."""
    domain = evaluation["domain"]
    example = in_dashboard_words(domain["example"] or "")
    if domain["n_left_out"]:
        return "info", (
            f"{domain['n_left_out']} of the {n_cases} cases have known inputs outside the "
            f"ranges the model was trained on (e.g. {example}) and are left out, as a single "
            "such trace is refused. Tick “Allow extrapolation” to include them, flagged.")
    if domain["n_extrapolated"]:
        return "warning", (
            f"{domain['n_extrapolated']} of the {evaluation['n']} cases are extrapolations: "
            f"their known inputs lie outside the ranges the model was trained on (e.g. "
            f"{example}). The charts include them; the coverage without them is given below.")
    return None
