"""A Live page run in ``st.session_state``: ``ei_keras.LiveInference`` fed by a replay
clock (a trace played at 1–100x) or by a CSV file a logger is writing (``CsvTail``).

Streamlit may run the page's ticking fragment on one thread while a button's full rerun
runs on another, so every change of a run's state (tick, pause, resume) holds the run's
``"lock"``; the page holds it too while it draws, so what it shows is one moment of the run.
"""

import threading
import time

import numpy as np

from dashboard.words import domain_in_words, in_dashboard_words
from ei_keras.errors import EiKerasError
from ei_keras.inference.live import CsvTail, LiveInference

LIVE_SPEED = (1.0, 100.0)  # replay speed: run seconds per wall second
LIVE_TICK_S = 0.5          # how often the Live page looks for new readings [s]
LIVE_LENGTH_S = (5.0, 600.0)


def live_start(model, known: dict, *, trace=None, csv_path=None, speed=10.0, threshold=8.5,
               t_max=2000.0, allow_extrapolation=False, minutes=False, now=None) -> dict:
    """A live run's state for ``st.session_state``: replay ``trace`` (``t``, ``pH``, as
    from ``ei_keras.inference.traces``) at ``speed`` run seconds per wall second, or follow the
    growing CSV ``csv_path`` (``ei_keras.inference.live.CsvTail``). Feed it with
    :func:`live_tick`. Raises EiKerasError (dashboard words) for a refused model or inputs."""
    if (trace is None) == (csv_path is None):
        raise EiKerasError("a live run replays a trace or follows a CSV file: give one")
    if not LIVE_SPEED[0] <= float(speed) <= LIVE_SPEED[1]:
        raise EiKerasError(f"speed must lie within {LIVE_SPEED[0]:g}–{LIVE_SPEED[1]:g}x; "
                           f"got {speed!r}")
    settings = dict(known=dict(known), trace=trace, csv_path=csv_path, speed=float(speed),
                    threshold=float(threshold), t_max=float(t_max),
                    allow_extrapolation=bool(allow_extrapolation), minutes=bool(minutes))
    try:
        live = LiveInference(known, model, threshold=float(threshold), t_max=float(t_max),
                             allow_extrapolation=bool(allow_extrapolation))
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None
    now = time.monotonic() if now is None else now
    return {"model": model, "settings": settings, "live": live,
            "tail": CsvTail(csv_path, minutes=minutes) if csv_path is not None else None,
            "position": 0, "clock_s": 0.0, "anchor": now, "paused": False, "done": False,
            "result": None, "messages": [], "ticks": 0, "updates": 0,
            "lock": threading.RLock()}


def live_restart(state: dict, now=None) -> dict:
    """The same run (source and settings) from its beginning."""
    settings = dict(state["settings"])
    return live_start(state["model"], settings.pop("known"), now=now, **settings)


def live_played_s(state: dict, now=None) -> float:
    """Seconds of the run played so far by the replay clock."""
    if state["anchor"] is None:
        return state["clock_s"]
    now = time.monotonic() if now is None else now
    return state["clock_s"] + (now - state["anchor"]) * state["settings"]["speed"]


def live_pause(state: dict, now=None) -> None:
    """Stop the replay clock (after an update in flight on another thread has landed)."""
    with state["lock"]:
        if not state["paused"]:
            state["clock_s"] = live_played_s(state, now)
            state["anchor"], state["paused"] = None, True


def live_resume(state: dict, now=None) -> None:
    with state["lock"]:
        if state["paused"]:
            state["anchor"] = time.monotonic() if now is None else now
            state["paused"] = False


def live_running(state) -> bool:
    """Whether the page should keep looking for readings."""
    return bool(state) and not state["paused"] and not state["done"]


def _live_note(state, text):
    state["messages"] = (state["messages"] + [text])[-5:]


def live_tick(state: dict, now=None) -> bool:
    """One look for readings: every reading due since the last tick (replay: up to the
    replay clock; file: the complete lines written since) goes into one
    ``LiveInference.update``. Returns whether an update ran; the answer is in
    ``state["result"]`` (domain flags in the dashboard's words)."""
    with state["lock"]:
        return _tick(state, now)


def _tick(state, now):
    if not live_running(state):
        return False
    state["ticks"] += 1
    if state["tail"] is not None:
        batch = state["tail"].poll()
        if batch["restarted"]:
            fresh = live_restart(state, now)
            fresh["tail"] = state["tail"]  # it already starts over from the first line
            fresh["messages"] = state["messages"]
            fresh["lock"] = state["lock"]  # held now, and by any thread waiting on this run
            state.update(fresh)
            _live_note(state, batch["restarted"])
        for line, text, reason in batch["bad"]:
            _live_note(state, f"line {line} skipped ({reason}): {text[:60]}")
        state["missing"] = batch["missing"]
        if not batch["readings"]:
            return False
        t_new = np.array([reading[1] for reading in batch["readings"]])
        pH_new = np.array([reading[2] for reading in batch["readings"]])
    else:
        t, pH = state["settings"]["trace"]["t"], state["settings"]["trace"]["pH"]
        due = int(np.searchsorted(t, t[0] + live_played_s(state, now) + 1e-9, side="right"))
        start = state["position"]
        state["position"] = max(due, start)
        if state["position"] >= len(t):
            state["done"] = True
        if due <= start:
            return False
        t_new, pH_new = t[start:due], pH[start:due]
    try:
        result = state["live"].update(t_new, pH_new)
    except EiKerasError as error:
        _live_note(state, f"{len(t_new)} readings not added: {in_dashboard_words(str(error))}")
        return False
    if not result.get("waiting"):
        result["domain"] = domain_in_words(result["domain"])
    state["result"] = result
    state["updates"] += 1
    return True
