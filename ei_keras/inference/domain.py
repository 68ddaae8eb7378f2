"""The domain guard: is a trace one the model can vouch for?

A model carries what it was trained on (:func:`training_domain`, stored in its
``GaussianPosterior`` layer). Before answering, :func:`check_traces` refuses what no model
of the chemistry could answer (pH outside 3–12, known inputs outside the training ranges
unless extrapolation is allowed) and cuts a trace longer than the trained maximum; after
answering, :func:`misfit_flags` compares the readings with what the posterior median
predicts. Every answer carries ``{"ok", "flags", ...}``: ``ok`` is False when any flag
was raised, and each flag is one sentence a user can act on.
"""

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES

PH_RANGE = (3.0, 12.0)
# Misfit flag: the readings scatter around the posterior median's prediction by more
# than this many times the training noise (root mean square).
MISFIT_RATIO = 2.5
# Relative slack on the trained ranges of length, spacing and known inputs.
RANGE_SLACK = 1e-6


def training_domain(data):
    """What a dataset covers, as stored in a model for its domain guard.

    Args:
        data: a ``PrefixData`` (fixed or any-format).

    Returns:
        JSON-able dict: ``param_ranges`` (known inputs and latents, the training prior),
        ``noise_std``, ``use_probe_lag``, ``use_offset``, and the trained formats
        ``prefix_length_s``, ``reading_interval_s`` and ``readings`` as ``[min, max]``.
    """
    config = data.config or {}
    model = config.get("measurement_model", {})
    valid = np.isfinite(data.t) & np.isfinite(data.pH)
    readings = valid.sum(axis=1)
    last = np.nanmax(np.where(valid, data.t, np.nan), axis=1)
    first = np.nanmin(np.where(valid, data.t, np.nan), axis=1)
    spacing = (last - first) / np.maximum(readings - 1, 1)
    ranges = config.get("param_ranges", {})
    return {
        "param_ranges": {name: [float(v) for v in ranges[name]]
                         for name in KNOWN_NAMES + LATENT_NAMES if name in ranges},
        "noise_std": float(model.get("noise_std", 0.01)),
        "use_probe_lag": bool(model.get("use_probe_lag", True)),
        "use_offset": bool(model.get("use_offset", True)),
        "prefix_length_s": [float(np.min(last)), float(np.max(last))],
        "reading_interval_s": [float(np.min(spacing)), float(np.max(spacing))],
        "readings": [int(np.min(readings)), int(np.max(readings))],
    }


def _outside(value, bounds):
    low, high = bounds
    slack = RANGE_SLACK * max(abs(low), abs(high), 1.0)
    return value < low - slack or value > high + slack


def _range_text(bounds):
    return f"{bounds[0]:g}–{bounds[1]:g}"


def check_traces(domain, t, pH, known, *, allow_extrapolation=False):
    """Refuse what the model cannot answer; cut long traces; flag unusual formats.

    Args:
        domain: the model's training domain (None for models saved before it existed:
            only the pH range is checked).
        t, pH: ``(n, m)`` float arrays of valid traces (checked by ``validate_trace``).
        known: ``(n, 5)`` known inputs in the order of ``KNOWN_NAMES``.
        allow_extrapolation: answer (flagged) when known inputs are outside the trained
            ranges instead of refusing.

    Returns:
        ``(t, pH, reports)``: the traces with readings past the trained maximum length set
        to NaN (padding), and per trace a dict ``{"ok", "flags", "checked"}``.

    Raises:
        EiKerasError: pH outside 3–12, or known inputs outside the trained ranges without
            ``allow_extrapolation``.
    """
    t, pH = np.array(t, dtype=np.float32), np.array(pH, dtype=np.float32)
    n = len(pH)
    low, high = PH_RANGE
    if np.any((pH < low) | (pH > high)):
        raise EiKerasError(
            f"pH readings must lie within {low:g}–{high:g} for this chemistry; got "
            f"{np.nanmin(pH):.3g}–{np.nanmax(pH):.3g}; check the pH column")
    reports = [{"ok": True, "flags": [], "checked": []} for _ in range(n)]
    if not domain:
        return t, pH, reports
    ranges = domain.get("param_ranges", {})
    for column, name in enumerate(KNOWN_NAMES):
        if name not in ranges:
            continue
        for row in range(n):
            value = float(known[row, column])
            if not _outside(value, ranges[name]):
                continue
            text = (f"{name} = {value:g} is outside the range the model was trained on "
                    f"({_range_text(ranges[name])})")
            if not allow_extrapolation:
                raise EiKerasError(f"{text}; the answer would be an extrapolation. Pass "
                                   f"allow_extrapolation=True (CLI: --allow-extrapolation) "
                                   f"to get it anyway, flagged")
            reports[row]["flags"].append(text + "; the answer is an extrapolation")
    longest = domain["prefix_length_s"][1]
    for row in range(n):
        report = reports[row]
        report["checked"] += ["pH range", "known inputs", "trace length", "reading interval"]
        valid = np.isfinite(t[row])
        cut = valid & (t[row] > longest * (1 + RANGE_SLACK))
        if cut.any():
            report["flags"].append(
                f"the trace runs to {np.nanmax(t[row]):g} s; only its first {longest:g} s "
                f"(the longest the model was trained on) were used, {int(cut.sum())} later "
                f"readings were not")
            t[row, cut], pH[row, cut] = np.nan, np.nan
            valid &= ~cut
        times = t[row, valid]
        if len(times) < 3:
            raise EiKerasError(
                f"only {len(times)} readings lie within the first {longest:g} s the model "
                f"was trained on; give at least 3")
        length = float(times[-1])
        spacing = float((times[-1] - times[0]) / (len(times) - 1))
        if _outside(length, domain["prefix_length_s"]):
            report["flags"].append(
                f"the trace spans {length:g} s, outside the lengths the model was trained on "
                f"({_range_text(domain['prefix_length_s'])} s); if the times are in minutes, "
                f"say so (CLI: --minutes)")
        if _outside(spacing, domain["reading_interval_s"]):
            report["flags"].append(
                f"one reading every {spacing:.3g} s is outside the reading intervals the "
                f"model was trained on ({_range_text(domain['reading_interval_s'])} s)")
        most = domain.get("readings", [0, np.inf])[1]
        if len(times) > most:
            report["flags"].append(
                f"{len(times)} readings is more than the model was trained on ({most}); its "
                f"intervals may be wider than these data allow")
        report["length_s"], report["reading_interval_s"] = length, spacing
        report["readings"] = int(len(times))
    return t, pH, reports


def misfit_flags(domain, t, pH, predicted, reports):
    """Flag traces that the posterior median's simulated readings miss by far more than
    the noise: "this trace does not look like the model's chemistry".

    ``predicted`` holds the noise-free readings of the posterior median at ``t`` (NaN
    where ``t`` is padding). Adds ``misfit_rms`` and ``noise_std`` to each report.
    """
    noise = float((domain or {}).get("noise_std", 0.01)) or 0.01
    for row, report in enumerate(reports):
        valid = np.isfinite(pH[row]) & np.isfinite(predicted[row])
        rms = float(np.sqrt(np.mean((pH[row, valid] - predicted[row, valid]) ** 2)))
        report["checked"].append("fit to the chemistry")
        report["misfit_rms"], report["noise_std"] = rms, noise
        if rms > MISFIT_RATIO * noise:
            report["flags"].append(
                f"the readings miss the model's best explanation by {rms:.3g} pH (RMS), "
                f"{rms / noise:.1f}× the noise it was trained on: this trace does not look "
                f"like the model's chemistry (wrong units, inputs or a different reaction?)")
    for report in reports:
        report["ok"] = not report["flags"]
    return reports
