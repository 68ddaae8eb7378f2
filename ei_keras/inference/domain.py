"""The domain guard: is a trace one the model can vouch for?

A model carries what it was trained on (:func:`training_domain`, stored in its
``GaussianPosterior`` layer). Before answering, :func:`check_traces` refuses what no model
of the chemistry could answer (pH outside 3–12, known inputs outside the training ranges
unless extrapolation is allowed) and cuts a trace longer than the trained maximum; after
answering, :func:`misfit_flags` compares the readings with what the posterior median
predicts. Every answer carries ``{"ok", "flags", ...}``: ``ok`` is False when any flag
was raised, and each flag is one sentence a user can act on.
"""

import math

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES

PH_RANGE = (3.0, 12.0)
# Misfit flag: even the best explanation the check finds misses the readings by more than
# this many times the training noise (root mean square).
MISFIT_RATIO = 2.5
# The check looks first at what the local fit simulated (the posterior median and the
# Gauss–Newton steps from it to the mode, ei_keras.inference.laplace); only when none of
# those explains the readings does it also simulate MISFIT_DRAWS posterior draws (one good
# explanation is enough).
MISFIT_DRAWS = 16
# Relative slack on the trained ranges of known inputs (exact: they are the prior's), and
# on the trained lengths and spacings (observed in float32 data: 1 %).
RANGE_SLACK = 1e-6
FORMAT_SLACK = 1e-2


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


def _outside(value, bounds, slack=RANGE_SLACK):
    low, high = bounds
    if slack == FORMAT_SLACK:  # relative to the value's own scale
        return value < low * (1 - slack) or value > high * (1 + slack)
    margin = slack * max(abs(low), abs(high), 1.0)
    return value < low - margin or value > high + margin


def _range_text(bounds):
    return f"{bounds[0]:g}–{bounds[1]:g}"


def known_outside(domain, known):
    """Per trace, each known input outside the range the model was trained on, in words
    ("substrate_mM = 500 is outside the range the model was trained on (1–100)"): one
    list per row of ``known`` ``(n, 5)`` (in the order of ``KNOWN_NAMES``), empty when
    all are inside or the model carries no training domain."""
    ranges = (domain or {}).get("param_ranges", {})
    known = np.asarray(known, dtype=float)
    texts = [[] for _ in range(len(known))]
    for column, name in enumerate(KNOWN_NAMES):
        if name not in ranges:
            continue
        for row in range(len(known)):
            value = float(known[row, column])
            if _outside(value, ranges[name]):
                texts[row].append(f"{name} = {value:g} is outside the range the model was "
                                  f"trained on ({_range_text(ranges[name])})")
    return texts


def check_traces(domain, t, pH, known, *, allow_extrapolation=False):
    """Refuse what the model cannot answer; cut long traces, thin dense ones; flag unusual
    formats.

    Args:
        domain: the model's training domain (None for models saved before it existed:
            only the pH range is checked).
        t, pH: ``(n, m)`` float arrays of valid traces (checked by ``validate_trace``).
        known: ``(n, 5)`` known inputs in the order of ``KNOWN_NAMES``.
        allow_extrapolation: answer (flagged) when known inputs are outside the trained
            ranges instead of refusing.

    Returns:
        ``(t, pH, reports)``: the traces with readings past the trained maximum length set
        to NaN (padding), and those of a trace with more than READINGS_SLACK × the readings
        the model was trained on thinned to one in k (the others NaN in place); per trace
        a dict ``{"ok", "flags", "notes", "checked"}`` (a note says what was done that
        needs no flag).

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
    reports = [{"ok": True, "flags": [], "notes": [], "checked": []} for _ in range(n)]
    if not domain:
        return t, pH, reports
    for row, texts in enumerate(known_outside(domain, known)):
        for text in texts:
            if not allow_extrapolation:
                raise EiKerasError(f"{text}; the answer would be an extrapolation. Pass "
                                   f"allow_extrapolation=True (CLI: --allow-extrapolation) "
                                   f"to get it anyway, flagged")
            reports[row]["flags"].append(text + "; the answer is an extrapolation")
    longest = domain["prefix_length_s"][1]
    for row in range(n):
        report = reports[row]
        report["checked"] += ["pH range", "known inputs", "trace length", "reading interval",
                              "number of readings"]
        valid = np.isfinite(t[row])
        cut = valid & (t[row] > longest * (1 + FORMAT_SLACK))
        if cut.any():
            report["flags"].append(
                f"the trace runs to {np.nanmax(t[row]):g} s; only its first {longest:g} s "
                f"(the longest the model was trained on) were used, {int(cut.sum())} later "
                f"readings were not")
            t[row, cut], pH[row, cut] = np.nan, np.nan
            valid &= ~cut
        given = int(valid.sum())
        every = _thin_row(domain, t, pH, row, valid)
        if every > 1:
            report["notes"].append(
                f"used one reading in {every} ({int(valid.sum())} of {given}): the model was "
                f"trained on at most {domain['readings'][1]} readings a trace and reads more as "
                f"less noisy than they are; the intervals are a little wider than all readings "
                f"would allow")
        times = t[row, valid]
        if len(times) < 3:
            raise EiKerasError(
                f"only {len(times)} readings lie within the first {longest:g} s the model "
                f"was trained on; give at least 3")
        length = float(times[-1])
        spacing = float((times[-1] - times[0]) / (len(times) - 1))
        if _outside(length, domain["prefix_length_s"], FORMAT_SLACK):
            report["flags"].append(
                f"the trace spans {length:g} s, outside the lengths the model was trained on "
                f"({_range_text(domain['prefix_length_s'])} s); if the times are in minutes, "
                f"say so (CLI: --minutes)")
        if _outside(spacing, domain["reading_interval_s"], FORMAT_SLACK):
            report["flags"].append(
                f"one reading every {spacing:.3g} s is outside the reading intervals the "
                f"model was trained on ({_range_text(domain['reading_interval_s'])} s)")
        report["length_s"], report["reading_interval_s"] = length, spacing
        report["readings"] = int(len(times))
    return t, pH, reports


# With many more readings than any training trace the network reads their counts beyond
# what it learnt and its intervals come out too narrow: on 400 traces of 300 and 600 s at
# one reading every 0.1 s (3001 and 6001 readings; the shipped model saw at most 1171),
# 90 % intervals held 79 / 75 % of the activities and 74 / 63 % of the probe lags; thinned
# to at most READINGS_SLACK × the trained count (1001 and 1201), 0.88–0.93 for all four
# parameters, with intervals about 10 % wider than all readings would allow; at 2001 and
# 3001 readings k_d's fell to 0.85.
READINGS_SLACK = 1.25


def thinning_step(domain, n_readings):
    """The k for which one reading in k of ``n_readings`` is at most READINGS_SLACK × the
    most readings the model was trained on (1: no thinning needed)."""
    most = READINGS_SLACK * (domain or {}).get("readings", [0, np.inf])[1]
    return 1 if n_readings <= most else math.ceil(n_readings / most)


def thin_dense(domain, t, pH):
    """What :func:`check_traces` does to a trace with more than READINGS_SLACK × the
    readings the model was trained on, for a whole dataset: copies of ``(n, m)`` ``t`` and
    ``pH`` in which such a row keeps one reading in k, from its first (the others NaN).
    Returns ``(t, pH, every)``, ``every`` (n,) the k of each row (1: unchanged)."""
    t, pH = np.array(t), np.array(pH)
    every = np.array([_thin_row(domain, t, pH, row, np.isfinite(t[row]) & np.isfinite(pH[row]))
                      for row in range(len(t))], dtype=int)
    return t, pH, every


def _thin_row(domain, t, pH, row, valid):
    """Thin row ``row`` in place (``valid`` too) to one reading in k; returns k."""
    given = np.flatnonzero(valid)
    every = thinning_step(domain, len(given))
    if every > 1:
        skipped = given[np.arange(len(given)) % every != 0]
        t[row, skipped], pH[row, skipped], valid[skipped] = np.nan, np.nan, False
    return every


def trained_noise(domain):
    """The reading noise the model was trained with (0.01 pH for models without a domain)."""
    return float((domain or {}).get("noise_std", 0.01)) or 0.01


def rms_misses(predicted, pH):
    """Root mean square of ``predicted - pH`` per row of ``predicted`` (k, m)."""
    return np.sqrt(np.mean((predicted - pH) ** 2, axis=1))


def misfit_flags(domain, pH, predicted, reports):
    """Flag traces that no plausible answer explains: "this trace does not look like the
    model's chemistry".

    ``predicted`` is, per trace, a ``(k, m)`` array of noise-free readings at the trace's
    times of plausible answers (the best the local fit simulated, and posterior draws where
    it misses; NaN where the time is padding). The trace is flagged when even the best of
    them misses the readings by more than :data:`MISFIT_RATIO` × the training noise (RMS).
    Adds ``misfit_rms`` (that best RMS) and ``noise_std`` to each report.
    """
    noise = trained_noise(domain)
    for row, report in enumerate(reports):
        valid = np.isfinite(pH[row]) & np.all(np.isfinite(predicted[row]), axis=0)
        rms = float(rms_misses(predicted[row][:, valid], pH[row, valid]).min())
        report["checked"].append("fit to the chemistry")
        report["misfit_rms"], report["noise_std"] = rms, noise
        if rms > MISFIT_RATIO * noise:
            report["flags"].append(
                f"the readings miss the model's best explanation by {rms:.3g} pH (RMS), "
                f"{rms / noise:.1f}× the noise it was trained on: this trace does not look "
                f"like the model's chemistry (wrong units, inputs or a different reaction?)")
    return reports


def prior_edge_flags(domain, summaries, transforms, reports):
    """Flag answers whose 90 % interval reaches past the parameter range the model was
    trained on (possible for unbounded, e.g. log10, parameters): the trace shows more or
    less of it than any training run did. Compared with 1 % slack in the parameter's own
    space (``transforms[name]``: log10 or linear)."""
    ranges = (domain or {}).get("param_ranges", {})
    for name, summary in summaries.items():
        if name not in ranges:
            continue
        scale = np.log10 if transforms.get(name) == "log10" else np.asarray
        low, high = scale(np.asarray(ranges[name], dtype=float))
        margin = FORMAT_SLACK * (high - low)
        for row, report in enumerate(reports):
            lo, hi = summary["lo90"][row], summary["hi90"][row]
            if scale(lo) < low - margin or scale(hi) > high + margin:
                report["flags"].append(
                    f"the {name} interval [{lo:.3g}, {hi:.3g}] reaches past the range the "
                    f"model was trained on ({_range_text(ranges[name])}): the answer there is "
                    f"an extrapolation")
    return reports


def finish(reports):
    """Set ``ok``: no flag was raised."""
    for report in reports:
        report["ok"] = not report["flags"]
    return reports
