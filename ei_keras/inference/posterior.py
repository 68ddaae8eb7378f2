"""Posterior inference and forecasts from a trained ei_keras model.

``infer`` maps raw probe readings and the known conditions to per-parameter posterior
summaries in physical units (and the attention over the readings); ``forecast`` draws
from that posterior and runs the simulator to the end of the run.
"""

import math
from pathlib import Path

import keras
import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.inference.model_file import check_model_archive
from ei_keras.inference.domain import (
    MISFIT_DRAWS,
    MISFIT_RATIO,
    check_traces,
    finish,
    misfit_flags,
    prior_edge_flags,
    rms_misses,
    trained_noise,
)
from ei_keras.inference.laplace import SHARPEN_FROM_S, exact_prior, local_fits
from ei_keras.inference.laplace import sharpen as sharpen_answers
from ei_keras.inference.least_squares import predict_readings, validate_known, validate_trace
from ei_keras.models import decode_predictions, model_info, predict_batch
from ei_keras.simulation import KNOWN_NAMES
from ei_keras.targets import draw_latents, latents_at, summarize

def load_model(model_or_path):
    """A ready ei_keras model: pass a loaded model through, or load a ``.keras`` file.

    Files are loaded in Keras safe mode (no arbitrary code) and without the optimizer.
    """
    if isinstance(model_or_path, keras.Model):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise EiKerasError(f"no model file at {path}; give the path of a .keras file")
    check_model_archive(path)  # sizes and zip structure, before Keras reads anything
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
        model_info(model)
    except Exception as error:  # a foreign or corrupt file: say so in one line
        raise EiKerasError(f"{path} is not a readable ei_keras model ({error})") from None
    return model


def trained_prefix_length(model) -> float:
    """The longest reading time the model was trained on (its time scale), in seconds."""
    return float(model_info(model)["time_scale"])


def _unpadded_length(t, pH):
    """Readings before the trailing NaN padding (in both t and pH) of one batch row."""
    padding = ~(np.isfinite(t) | np.isfinite(pH))
    return len(t) - int(np.argmin(padding[::-1])) if not padding.all() else 0


def _batch_inputs(t, pH, known):
    """Validate one trace or a batch; return float32 arrays (n, m), (n, m), (n, 5)."""
    pH = np.asarray(pH, dtype=float)
    t = np.asarray(t, dtype=float)
    if pH.ndim == 1:
        pH = pH[None, :]
    if pH.ndim != 2:
        raise EiKerasError(f"pH must be (m,) or (n, m); got shape {pH.shape}")
    t = np.broadcast_to(t, pH.shape) if t.ndim == 1 and t.shape[0] == pH.shape[1] else t
    if t.shape != pH.shape:
        raise EiKerasError(f"t must be (m,) or (n, m) matching pH {pH.shape}; got {t.shape}")
    single = pH.shape[0] == 1
    for row in range(pH.shape[0]):
        # A batch may pad shorter traces with NaN after their last reading (as
        # load_any_format returns them); one trace is taken as it is.
        length = len(pH[row]) if single else _unpadded_length(t[row], pH[row])
        try:
            validate_trace(t[row, :length], pH[row, :length])
        except EiKerasError as error:
            raise EiKerasError(error.args[0] if single else f"trace {row}: {error}") from None
    if not hasattr(known, "keys"):
        raise EiKerasError(f"known must be a mapping with keys {list(KNOWN_NAMES)}")
    columns = []
    for name in KNOWN_NAMES:
        if name not in known:
            raise EiKerasError(f"known inputs: missing {name!r}; expected {list(KNOWN_NAMES)}")
        value = np.asarray(known[name], dtype=float)
        if value.ndim > 1 or (value.ndim == 1 and value.size != pH.shape[0]):
            raise EiKerasError(
                f"known {name!r} must be a scalar or have one value per trace "
                f"({pH.shape[0]}); got shape {value.shape}")
        if not np.all(np.isfinite(value)):
            raise EiKerasError(f"known {name!r} is NaN or infinite")
        columns.append(np.broadcast_to(value, (pH.shape[0],)))
    return (t.astype(np.float32), pH.astype(np.float32),
            np.stack(columns, axis=1).astype(np.float32))


def misfit_candidates(decoded, t, pH, known_rows, noise_std, fits, seed=0):
    """Per trace, the noise-free readings ``(k, m)`` at its own times (NaN where the time is
    padding) of the plausible answers the misfit check looks at, in two stages.

    First the best explanation the local fit's simulations found (``fits``, from
    :func:`~ei_keras.inference.laplace.local_fits`: the network's median and, on a trace it
    does not explain within ``MISFIT_RATIO × noise_std`` or one to be sharpened, the
    Gauss–Newton steps from it to the mode); only if that misses the readings ``pH`` by more
    than ``MISFIT_RATIO × noise_std`` (RMS), also ``MISFIT_DRAWS`` posterior draws (seeded by
    ``seed`` and the trace's row). One good explanation clears the trace, so most traces need
    no more simulations than the local fit's, and a short one, whose median explains it, one.
    """
    n_params = len(decoded)
    predicted = []
    for row, fit in enumerate(fits):
        found = fit["best"][None, :]
        valid = np.isfinite(pH[row]) & np.isfinite(found[0])
        if not valid.any() or rms_misses(found[:, valid], pH[row, valid])[0] > \
                MISFIT_RATIO * noise_std:
            given = np.isfinite(t[row])
            known = dict(zip(KNOWN_NAMES, known_rows[row].astype(float)))
            draws = np.random.default_rng([seed, row]).standard_normal((MISFIT_DRAWS, n_params))
            more = np.full((MISFIT_DRAWS, t.shape[1]), np.nan)
            more[:, given] = predict_readings(t[row, given].astype(float), known,
                                              latents_at(decoded, row, draws))
            found = np.vstack([found, more])
        predicted.append(found)
    return predicted


def answer(info, prior, decoded, t, pH, known_values, reports, *, check_fit, sharpen):
    """From the network's answer ``decoded`` for the checked traces, what ``infer``
    returns: the local fit (:mod:`ei_keras.inference.laplace`) that sharpens it where the
    readings pin a parameter down (``sharpen``; ``decoded`` changed in place and a note in
    the report), the summaries, the prior-edge flags and (``check_fit``) the misfit check.
    Returns the summaries and the local fits (None when neither is asked for; without
    ``check_fit``, None for a trace too short to be sharpened)."""
    fits = None
    noise = trained_noise(info["domain"])
    if check_fit or sharpen:  # the misfit check reads every trace's fit, sharpen long ones'
        fits = local_fits(prior, decoded, t, pH, known_values,
                          min_span_s=0.0 if check_fit else SHARPEN_FROM_S,
                          mode_from_s=SHARPEN_FROM_S if sharpen else math.inf,
                          explained_rms=MISFIT_RATIO * noise)
    sharpened = sharpen_answers(decoded, fits) if sharpen else [[] for _ in reports]
    for report, names in zip(reports, sharpened):
        report["sharpened"] = names
        if names:
            report["notes"].append(
                f"the readings pin down {' and '.join(names)}: "
                f"{'its interval comes' if len(names) == 1 else 'their intervals come'} "
                f"from the simulator's local fit to them (centred on the posterior mode)")
    summaries = summarize(decoded)
    prior_edge_flags(info["domain"], summaries,
                     {name: d["transform"] for name, d in decoded.items()}, reports)
    if check_fit:
        misfit_flags(info["domain"], pH,
                     misfit_candidates(decoded, t, pH, known_values, noise, fits), reports)
    return summaries, fits


def _run(model_or_path, t, pH, known, *, allow_extrapolation=False, check_fit=True,
         sharpen=True):
    """Validate, guard the domain, run the model once, sharpen and check its answer
    (:func:`answer`).

    Returns ``(decoded, outputs, known_rows)``; ``outputs["domain"]`` holds one domain
    report per trace (see :mod:`ei_keras.inference.domain`) and ``outputs["t"]`` the
    times actually used (readings past the trained maximum are cut).
    """
    model = load_model(model_or_path)
    t, pH, known_values = _batch_inputs(t, pH, known)
    info = model_info(model)
    if not info["any_format"]:
        longest = float(info["time_scale"])
        if t[:, -1].max() > longest * 1.01:
            raise EiKerasError(
                f"the trace runs to {t[:, -1].max():g} s but the model was trained on "
                f"prefixes of {longest:g} s; pass only the first {longest:g} s or use a model "
                f"for longer prefixes")
    t, pH, reports = check_traces(info["domain"], t, pH, known_values,
                                  allow_extrapolation=allow_extrapolation)
    outputs = predict_batch(model, {"pH": pH, "t": t, "known": known_values})
    decoded = decode_predictions(model, outputs)
    summaries, _ = answer(info, exact_prior(model), decoded, t, pH, known_values, reports,
                          check_fit=check_fit, sharpen=sharpen)
    outputs["domain"], outputs["t"], outputs["summaries"] = finish(reports), t, summaries
    return decoded, outputs, known_values


def infer(model_or_path, t, pH, known, *, allow_extrapolation=False, check_fit=True,
          sharpen=True) -> dict:
    """Posterior of the latent parameters from raw readings.

    Parameters
    ----------
    model_or_path : keras.Model or path of a ``.keras`` file
    t : array_like
        Reading times in seconds, (m,) shared or (n, m).
    pH : array_like
        Measured pH readings, (m,) for one trace or (n, m).
    known : mapping
        The five known inputs (``initial_pH`` as measured), scalars or (n,) arrays.
    allow_extrapolation : bool
        Answer (flagged) when known inputs lie outside the model's training ranges,
        instead of refusing.
    check_fit : bool
        Flag traces that even the best explanation found misses by far more than the
        noise: the network's median, the Gauss–Newton steps from it to the posterior mode
        (where the median does not explain the readings, or the trace is sharpened), and
        only if none of these explains the readings, 16 posterior draws (see
        :func:`misfit_candidates`). One explanation within 2.5× the noise settles it, so
        ``misfit_rms`` is the miss of the best explanation looked at, not of the mode.
    sharpen : bool
        On a trace spanning 60 s or more, where the readings pin a parameter down (the
        prior carries under 30 % of its precision at the local fit's mode), answer that
        parameter from the fit: centred on the posterior mode, its σ the Laplace σ blended
        with the network's (:func:`ei_keras.inference.laplace.sharpen`; a few small
        simulator calls per trace, shared with ``check_fit``). False: the network's answer
        alone.

    Returns
    -------
    dict
        Per latent parameter name a dict of (n,) arrays in physical units: ``median,
        mean, std, lo50, hi50, lo90, hi90, lo95, hi95``; ``attention`` (n, m), the
        weights the model put on each reading (rows sum to 1; 0 on readings past the
        trained maximum, and on those a trace with more than 1.25× the readings the model was
        trained on left out: it is answered from one reading in k); and ``domain``: for a single
        1-D trace a dict ``{"ok": bool, "flags": [one sentence each], "notes": [what was
        done that needs no flag, e.g. thinning or sharpening], "checked": [...],
        "length_s", "reading_interval_s", "readings" (those used), "sharpened" (the
        parameters answered from the local fit), "misfit_rms", "noise_std"}``, for a batch
        a list of such dicts.

    Raises
    ------
    EiKerasError
        Fewer than 3 readings, times not increasing, pH outside 3–12, known inputs
        outside the trained ranges (unless ``allow_extrapolation``).
    """
    _, outputs, _ = _run(model_or_path, t, pH, known, allow_extrapolation=allow_extrapolation,
                         check_fit=check_fit, sharpen=sharpen)
    result = dict(outputs["summaries"])
    result["attention"] = np.asarray(outputs["attention"], dtype=float)
    single = np.ndim(pH) == 1
    result["domain"] = outputs["domain"][0] if single else outputs["domain"]
    return result


def forecast_from_draws(known, draws, t, *, threshold=8.5, options=None) -> dict:
    """Fan chart and time-to-threshold of the measured pH over parameter ``draws``.

    ``known`` holds the five known inputs (scalars) of one trace; ``draws`` maps latent
    names to (d,) arrays (missing nuisance parameters are 0). The forecast is of what the
    probe will read (lag and offset included, no noise). The time to reach ``threshold`` is
    ``inf`` in draws that never reach it within ``t``.
    """
    known = validate_known(known)
    t = np.asarray(t, dtype=float)
    readings = predict_readings(t, known, draws, options=options)
    reach = time_to_threshold(t, readings, threshold)
    reached = np.isfinite(reach)
    quantile = dict(method="inverted_cdf")  # exact order statistics, inf-safe
    return {
        "t": t,
        "median": np.median(readings, axis=0),
        "lo": np.percentile(readings, 5, axis=0),
        "hi": np.percentile(readings, 95, axis=0),
        "threshold": float(threshold),
        "time_to_threshold": {
            "draws": reach,
            "p_reached": float(np.mean(reached)),
            "median": float(np.percentile(reach, 50, **quantile)),
            "lo": float(np.percentile(reach, 5, **quantile)),
            "hi": float(np.percentile(reach, 95, **quantile)),
        },
    }


def reach_text(reach, threshold, t_max):
    """The time to ``threshold`` (``forecast(...)["time_to_threshold"]``) in words: a time
    no draw reached by the horizon ``t_max`` reads "later than t_max"."""
    if reach["p_reached"] == 0:
        return f"pH {threshold:g} is not reached within {t_max:g} s in any posterior draw"

    def at(value):
        return f"{value:.0f} s" if np.isfinite(value) else f"later than {t_max:g} s"

    low, high = reach["lo"], reach["hi"]
    if np.isfinite(high):
        band = f"{low:.0f}–{high:.0f} s"
    elif np.isfinite(low):
        band = f"{at(low)} to {at(high)}"
    else:
        band = at(low)
    return (f"time to pH {threshold:g}: median {at(reach['median'])}, 90 % band {band}; "
            f"reached within {t_max:g} s in {100 * reach['p_reached']:.0f} % of the posterior "
            f"draws")


def time_to_threshold(t, readings, threshold):
    """First time each row of ``readings`` (d, T) reaches ``threshold`` (linear between
    samples; 0 if it starts there; inf if never)."""
    above = readings >= threshold
    first = np.argmax(above, axis=1)
    reached = above.any(axis=1)
    rows = np.arange(readings.shape[0])
    previous = np.maximum(first - 1, 0)
    y0, y1 = readings[rows, previous], readings[rows, first]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(y1 > y0, (threshold - y0) / (y1 - y0), 0.0)
    crossing = t[previous] + np.clip(fraction, 0.0, 1.0) * (t[first] - t[previous])
    crossing = np.where(first == 0, t[0], crossing)
    return np.where(reached, crossing, np.inf)


def forecast(model_or_path, t, pH, known, *, t_max=2000.0, n_times=1001, threshold=8.5,
             n_draws=200, seed=0, options=None, allow_extrapolation=False,
             check_fit=True, sharpen=True, exact=False) -> list:
    """Forecast each trace to ``t_max``: draws from the posterior through the simulator.

    Returns one :func:`forecast_from_draws` dict per trace (median and 5–95 % band of the
    measured pH on ``linspace(0, t_max, n_times)``, and the distribution of the time to
    reach ``threshold``), computed with a ``numpy.random.default_rng(seed)``; each also
    carries the trace's ``domain`` report (see :func:`infer`). With ``exact=True`` the
    draws come from each trace's exact posterior (:func:`ei_keras.refine`, importance
    sampling; about a second per trace) instead of the network's. ``allow_extrapolation``,
    ``check_fit`` and ``sharpen`` as in :func:`infer`.
    """
    decoded, outputs, known_rows = _run(model_or_path, t, pH, known,
                                        allow_extrapolation=allow_extrapolation,
                                        check_fit=check_fit, sharpen=sharpen)
    if exact:
        from ei_keras.inference.exact_posterior import exact_draws
        draws = exact_draws(model_or_path, t, pH, known, n_draws, seed=seed, options=options,
                            allow_extrapolation=allow_extrapolation)
    else:
        draws = draw_latents(decoded, n_draws, np.random.default_rng(seed))
    grid = np.linspace(0.0, float(t_max), int(n_times))
    fans = [forecast_from_draws(dict(zip(KNOWN_NAMES, known_rows[row].astype(float))),
                                trace, grid, threshold=threshold, options=options)
            for row, trace in enumerate(draws)]
    for fan, report in zip(fans, outputs["domain"]):
        fan["domain"] = report
    return fans
