"""Strict JSON for every file and answer ei_keras writes.

Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON: browsers,
``jq`` and most other languages refuse them. Everything ei_keras writes goes through
:func:`dumps_strict`, which turns every non-finite float into ``null`` (a missing or
undefined number: a NaN loss, a best score not yet set, a threshold never reached) and
NumPy scalars and arrays into plain Python numbers and lists.
"""

import json
import math

import numpy as np


def to_jsonable(value):
    """``value`` with non-finite floats as None, NumPy types as Python, tuples as lists."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps_strict(value, **kwargs) -> str:
    """``json.dumps`` of :func:`to_jsonable` (``value``), refusing anything left non-JSON.

    Keyword arguments go to ``json.dumps`` (e.g. ``indent=2``); ``allow_nan`` is always
    False, so the text is strict JSON (RFC 8259).
    """
    kwargs["allow_nan"] = False
    return json.dumps(to_jsonable(value), **kwargs)
