"""Reading a real probe trace from a CSV file: time and pH columns, header detected."""

import csv
from pathlib import Path

import numpy as np

from ei_keras.errors import EiKerasError

TIME_HEADERS = ("t", "time", "t_s", "time_s", "time [s]", "time (s)", "seconds", "sec", "s",
                "t_min", "time_min", "time [min]", "time (min)", "minutes", "min")
PH_HEADERS = ("ph", "measured_ph", "ph_measured", "ph reading", "ph_reading", "reading")


def read_trace_csv(path, *, minutes=False, time_column=None, ph_column=None):
    """(t [s], pH) from a CSV with a header row naming a time and a pH column.

    Columns are found by header name (case-insensitive: ``time``, ``t``, ``seconds``, …;
    ``pH``, ``measured_pH``, …) or given explicitly. ``minutes=True`` converts the time
    column from minutes. Raises EiKerasError saying what to fix.
    """
    path = Path(path)
    if not path.is_file():
        raise EiKerasError(f"no CSV file at {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise EiKerasError(f"{path} is not a readable CSV text file ({error})") from None
    if len(rows) < 2:
        raise EiKerasError(f"{path} needs a header row and at least one reading")
    header = [cell.strip().lower() for cell in rows[0]]
    time_index = _column(header, time_column, TIME_HEADERS, "time", path)
    ph_index = _column(header, ph_column, PH_HEADERS, "pH", path)
    try:
        values = np.array([[float(row[time_index]), float(row[ph_index])] for row in rows[1:]])
    except (ValueError, IndexError):
        raise EiKerasError(f"{path}: every row needs a number in the time and pH columns") from None
    t, pH = values[:, 0], values[:, 1]
    return (t * 60.0 if minutes else t), pH


def _column(header, chosen, candidates, what, path):
    if chosen is not None:
        if chosen.lower() not in header:
            raise EiKerasError(f"{path}: no column named {chosen!r}; columns are {header}")
        return header.index(chosen.lower())
    for name in candidates:
        if name in header:
            return header.index(name)
    raise EiKerasError(
        f"{path}: cannot tell which column holds the {what}; columns are {header}; "
        f"name it with --{what.lower()}-column")
