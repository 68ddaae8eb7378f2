"""Where the Analyse and Live pages take a trace from: a dataset case, a simulated run
(``ei_keras.inference.traces``) or an uploaded CSV; what they offer by default."""

from pathlib import Path

import numpy as np

from dashboard.cache import traces_cached, trajectories_cached
from dashboard.words import in_dashboard_words
from dashboard.workspace import save_csv_upload
from ei_keras.errors import EiKerasError
from ei_keras.inference import traces
from ei_keras.config import ANY_FORMAT

# What the Simulate controls offer: trace length and reading interval [s].
SIM_LENGTH_S = (5.0, 600.0)
SIM_INTERVAL_S = (0.1, 10.0)
# Readings per trace of a model saved without its domain (the first shipped model).
UNRECORDED_READINGS = 100


def simulation_defaults(info: dict) -> tuple[float, float]:
    """Length and reading interval [s] a simulated trace starts with: two minutes at one
    reading a second for an any-format model, the trained format for a fixed one."""
    if info["any_format"]:
        length, interval = 120.0, 1.0
    else:
        readings = info["domain"]["readings"][1] if info["domain"] else UNRECORDED_READINGS
        length = info["prefix_length"]
        interval = length / max(int(readings) - 1, 1)
    return (float(np.clip(length, *SIM_LENGTH_S)), float(np.clip(interval, *SIM_INTERVAL_S)))


def dataset_formats(dataset: dict, info: dict) -> list:
    """The traces of a dataset offered: its any-format traces (:data:`ANY_FORMAT`) and
    each prefix length, the model's own kind first. The package, not this list, decides
    what a model can answer."""
    options = ([ANY_FORMAT] if dataset.get("any_format") else []) + sorted(
        dataset.get("prefix_lengths", []), reverse=True)

    def rank(option):
        if option == ANY_FORMAT:
            return 0 if info["any_format"] else 2
        return 1 if option <= info["prefix_length"] * 1.01 else 3

    return sorted(options, key=rank)


def format_label(option) -> str:
    """How :func:`dataset_formats` options read in a select box."""
    if option == ANY_FORMAT:
        return "any-format traces (each its own length and reading rate)"
    return f"{float(option):g} s prefix"


def dataset_trace(path, option, index) -> dict:
    """Case ``index`` of a dataset's traces (a prefix length or :data:`ANY_FORMAT`)."""
    return traces.dataset_trace(traces_cached(path, option), index, trajectories_cached(path),
                                source=Path(path).stem)


def uploaded_trace(data: bytes, filename: str, known: dict, *, minutes=False) -> dict:
    """The trace of an uploaded CSV (``ei_keras.inference.traces.csv_trace``); its
    problems in the dashboard's words."""
    path = save_csv_upload(data, filename)
    try:
        return traces.csv_trace(path, known, minutes=minutes, source=filename)
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error).replace(str(path), filename))) \
            from None
