"""Live early inference: follow a run reading by reading and say when the answer has settled.

:class:`LiveInference` keeps the readings of one run as they arrive. Each
:meth:`LiveInference.update` appends readings, runs the network once on everything so far
(exactly what :func:`ei_keras.infer` answers for that prefix), forecasts the rest of the
run from draws of that same posterior, and applies a :class:`SettleRule`: has the answer
stopped moving? :class:`CsvTail` reads a CSV that a logger is still appending to (for
``ei-keras watch``, and for any other face that follows a file).

Cost per update (see README, "Live runs"): the network and a small forecast — 100 posterior
draws through the simulator on 401 times — about 20–30 ms on one CPU core, whatever the
number of readings; the domain guard's misfit check (9 simulations at every reading time)
runs every ``check_fit_every_s`` seconds of the run instead of at every update, and its
verdict is carried between checks. The trace is NaN-padded to a few widths so that jax
compiles the network once per width, not at every new length. The forecast uses the same
random numbers at every update (``seed``), so its band moves only when the posterior does.
"""

import csv
import math
import os
import time
from pathlib import Path

import numpy as np

from ei_keras.errors import EiKerasError
from ei_keras.inference.domain import (
    MISFIT_RATIO,
    PH_RANGE,
    check_traces,
    finish,
    misfit_flags,
    trained_noise,
)
from ei_keras.inference.least_squares import validate_known
from ei_keras.inference.laplace import exact_prior, local_fits
from ei_keras.inference.posterior import (
    _batch_inputs,
    answer,
    forecast_from_draws,
    load_model,
    misfit_candidates,
)
from ei_keras.inference.settle import SettleRule
from ei_keras.inference.trace_csv import PH_HEADERS, TIME_HEADERS, _column
from ei_keras.models import decode_predictions, model_info, predict_batch
from ei_keras.simulation import KNOWN_NAMES
from ei_keras.targets import draw_latents

MIN_READINGS = 3


def check_new_readings(t_new, pH_new, after=None):
    """``(t, pH)`` float arrays of new readings, or a one-line EiKerasError.

    Times must be finite, >= 0, strictly increasing and later than ``after`` (the last
    reading already held); pH finite and within 3–12.
    """
    t_new = np.atleast_1d(np.asarray(t_new, dtype=float))
    pH_new = np.atleast_1d(np.asarray(pH_new, dtype=float))
    if t_new.ndim != 1 or t_new.shape != pH_new.shape:
        raise EiKerasError(f"t and pH must be scalars or 1-D of the same length; got shapes "
                           f"{t_new.shape} and {pH_new.shape}")
    if not (np.all(np.isfinite(t_new)) and np.all(np.isfinite(pH_new))):
        raise EiKerasError("a new reading is NaN or infinite; give finite times and pH")
    if t_new.size == 0:
        raise EiKerasError("no new readings given; pass at least one time and pH")
    if t_new[0] < 0:
        raise EiKerasError(f"times must be >= 0 s; got {t_new[0]:g} s")
    if np.any(np.diff(t_new) <= 0) or (after is not None and t_new[0] <= after):
        previous = np.concatenate([[after] if after is not None else [], t_new])
        bad = int(np.argmax(np.diff(previous) <= 0))
        raise EiKerasError(f"times must keep increasing: {previous[bad + 1]:g} s comes after "
                           f"{previous[bad]:g} s; readings not added")
    low, high = PH_RANGE
    if np.any((pH_new < low) | (pH_new > high)):
        raise EiKerasError(f"pH readings must lie within {low:g}–{high:g} for this chemistry; got "
                           f"{pH_new.min():.3g}–{pH_new.max():.3g}; readings not added")
    return t_new, pH_new


def _padded_width(m):
    """The width a trace of ``m`` readings is padded to: 32, then steps of about 25 %
    (multiples of 32), so padding costs at most a quarter more work."""
    width = 32
    while width < m:
        width = 32 * math.ceil(width * 1.25 / 32)
    return width


def _fraction(value):
    return f"{100 * value:.3g} %" if math.isfinite(value) else "inf"


class LiveInference:
    """Inference on a run while it happens: append readings, get the answer so far.

    Args:
        known: the five known inputs (``initial_pH`` as measured), scalars.
        model: an any-format ``keras.Model`` or ``.keras`` path (default: the shipped model).
        threshold: forecast the time the measured pH reaches this value.
        t_max: forecast horizon [s].
        settle_window_s, settle_tolerance, settle_min_p_reached: the :class:`SettleRule`.
        n_draws, n_times: posterior draws and forecast times of the live forecast (fewer
            than :func:`ei_keras.forecast`'s 200 and 1001, for speed; its time step
            ``t_max / (n_times - 1)`` is 5 s by default).
        seed: random numbers of the forecast draws, the same at every update.
        check_fit_every_s: run the domain guard's misfit check when this many seconds of
            the run have passed since the last check (and at the first answer); 0 checks
            at every update, None never. Between checks the last verdict is carried.
        allow_extrapolation: answer (flagged) known inputs outside the trained ranges.

    Example::

        live = LiveInference(known, "runs/any/best.keras")
        for t, pH in readings:                  # as the logger writes them
            result = live.update(t, pH)
            if not result["waiting"]:
                print(result["activity"]["median"], result["settle"]["note"])
        live.history_table()["time_to_threshold_hi"]   # the band, update by update
    """

    def __init__(self, known, model=None, *, threshold=8.5, t_max=2000.0, settle_window_s=60.0,
                 settle_tolerance=0.05, settle_min_p_reached=0.5, n_draws=100, n_times=401,
                 seed=0, check_fit_every_s=10.0, allow_extrapolation=False):
        from ei_keras.inference.default_model import default_model_path

        self.known = validate_known(known)
        if not (math.isfinite(t_max) and t_max > 0):
            raise EiKerasError(f"t_max must be a positive number of seconds; got {t_max!r}")
        if int(n_draws) < 20 or int(n_times) < 2:
            raise EiKerasError(f"the live forecast needs n_draws >= 20 and n_times >= 2; got "
                               f"{n_draws} and {n_times}")
        if check_fit_every_s is not None and not check_fit_every_s >= 0:
            raise EiKerasError(f"check_fit_every_s must be >= 0 or None; got "
                               f"{check_fit_every_s!r}")
        self.rule = SettleRule(float(settle_window_s), float(settle_tolerance),
                               float(settle_min_p_reached))
        self.model = load_model(default_model_path() if model is None else model)
        info = model_info(self.model)
        if not info["any_format"]:
            raise EiKerasError(
                f"live inference needs an any-format model (one trained with --prefix-length "
                f"any); this one reads only fixed {info['time_scale']:g} s prefixes")
        self.info, self.prior = info, exact_prior(self.model)
        self.domain, self.targets = info["domain"], list(info["target_names"])
        self.allow_extrapolation = bool(allow_extrapolation)
        # Refuse known inputs outside the trained ranges now, not at the third reading.
        row = np.array([[self.known[name] for name in KNOWN_NAMES]], dtype=np.float32)
        check_traces(self.domain, np.array([[0.0, 1.0, 2.0]]), np.full((1, 3), 7.0), row,
                     allow_extrapolation=self.allow_extrapolation)
        self.threshold, self.t_max = float(threshold), float(t_max)
        self.n_draws, self.seed = int(n_draws), int(seed)
        self.grid = np.linspace(0.0, self.t_max, int(n_times))
        self.check_fit_every_s = check_fit_every_s
        self.history = []
        self.last = None
        self.settled_at = None
        self.unsettled_at = []
        self._t = np.empty(256)
        self._pH = np.empty(256)
        self._n = 0
        self._misfit = None  # the last misfit verdict: at_s, flags, misfit_rms, noise_std
        self._settled_since = None

    # -- readings ---------------------------------------------------------------------
    @property
    def t(self):
        """Reading times so far [s] (a copy)."""
        return self._t[:self._n].copy()

    @property
    def pH(self):
        """Readings so far (a copy)."""
        return self._pH[:self._n].copy()

    @property
    def n_readings(self):
        return self._n

    @property
    def settled(self):
        return bool(self.last and self.last.get("settled"))

    def _append(self, t_new, pH_new):
        need = self._n + len(t_new)
        if need > len(self._t):
            size = max(need, 2 * len(self._t))
            self._t = np.concatenate([self._t[:self._n], np.empty(size - self._n)])
            self._pH = np.concatenate([self._pH[:self._n], np.empty(size - self._n)])
        self._t[self._n:need], self._pH[self._n:need] = t_new, pH_new
        self._n = need

    # -- one update -------------------------------------------------------------------
    def update(self, t_new, pH_new) -> dict:
        """Append readings (scalars or 1-D arrays) and return the answer so far.

        Returns, once there are 3 readings, a dict with what :func:`ei_keras.infer` returns
        for the trace so far (per parameter ``median, mean, std, lo50..hi95`` as floats,
        ``attention`` (m,), ``domain``), ``forecast`` (as one element of
        :func:`ei_keras.forecast`: ``t, median, lo, hi, threshold, time_to_threshold,
        domain``), ``settled``, ``settled_at`` (the first time the rule held, seconds, or
        None), ``settle`` (the rule's quantity, change, and a ``note`` such as "settled at
        t = 212 s"), ``elapsed_s`` (time of the last reading), ``n_readings``,
        ``compute_s`` and ``waiting: False``. Before that, ``{"waiting": True, "status":
        ..., "n_readings", "elapsed_s", "settled": False, "settled_at": None}``.

        Raises EiKerasError (one line; nothing is added) when times do not keep increasing,
        a value is not finite or pH lies outside 3–12, or the model refuses the trace.
        """
        started = time.perf_counter()
        after = self._t[self._n - 1] if self._n else None
        t_new, pH_new = check_new_readings(t_new, pH_new, after)
        n = self._n + len(t_new)
        if n < MIN_READINGS:
            self._append(t_new, pH_new)
            elapsed = float(self._t[self._n - 1]) if self._n else 0.0
            return {"waiting": True, "n_readings": n, "elapsed_s": elapsed,
                    "status": f"waiting for readings: {n} of {MIN_READINGS}",
                    "settled": False, "settled_at": None}
        t = np.concatenate([self._t[:self._n], t_new])
        pH = np.concatenate([self._pH[:self._n], pH_new])
        result, self._misfit = self._answer(t, pH)  # raises before anything is stored
        self._append(t_new, pH_new)
        self._settle(result)
        result["compute_s"] = time.perf_counter() - started
        self.history[-1]["compute_s"] = result["compute_s"]
        self.last = result
        return result

    def _network(self, t, pH):
        """What ``posterior._run(check_fit=False)`` computes for one trace (and its local
        fits, which the misfit check reuses when it is due), with the trace
        NaN-padded (the binned encoding ignores padding) to one of a few widths: a backend
        that compiles per input shape (jax) then compiles once per width, not at every
        reading (on jax about 1 s per new length; padded, under a millisecond)."""
        t, pH, known_rows = _batch_inputs(t, pH, self.known)
        t, pH, reports = check_traces(self.domain, t, pH, known_rows,
                                      allow_extrapolation=self.allow_extrapolation)
        m = t.shape[1]
        width = _padded_width(m)
        pad = [(0, 0), (0, width - m)]
        outputs = predict_batch(self.model, {
            "pH": np.pad(pH, pad, constant_values=np.nan),
            "t": np.pad(t, pad, constant_values=np.nan), "known": known_rows})
        outputs["attention"] = np.asarray(outputs["attention"], dtype=float)[:, :m]
        decoded = decode_predictions(self.model, outputs)
        summaries, fits = answer(self.info, self.prior, decoded, t, pH, known_rows, reports,
                                 check_fit=False, sharpen=True)
        outputs.update(domain=finish(reports), t=t, summaries=summaries)
        return decoded, outputs, known_rows, fits

    def _answer(self, t, pH):
        decoded, outputs, known_rows, fits = self._network(t, pH)
        report = outputs["domain"][0]
        now = float(t[-1])
        every = self.check_fit_every_s
        misfit = self._misfit
        if every is not None and (misfit is None or now - misfit["at_s"] >= every):
            before = len(report["flags"])
            used = outputs["t"]
            readings = np.where(np.isfinite(used), pH[None, :].astype(np.float32), np.nan)
            noise = trained_noise(self.domain)
            if fits[0] is None:  # too short to be sharpened, so not fitted until now
                fits = local_fits(self.prior, decoded, used, readings, known_rows,
                                  mode_from_s=math.inf, explained_rms=MISFIT_RATIO * noise)
            misfit_flags(self.domain, readings,
                         misfit_candidates(decoded, used, readings, known_rows, noise, fits),
                         [report])
            misfit = {"at_s": now, "flags": report["flags"][before:],
                      "misfit_rms": report["misfit_rms"], "noise_std": report["noise_std"]}
        elif misfit is not None:
            report["checked"].append("fit to the chemistry")
            report["flags"] += misfit["flags"]
            report["misfit_rms"], report["noise_std"] = misfit["misfit_rms"], misfit["noise_std"]
        if misfit is not None:
            report["misfit_checked_at_s"] = misfit["at_s"]
        finish([report])
        draws = draw_latents(decoded, self.n_draws, np.random.default_rng(self.seed))[0]
        # The known inputs as the network saw them (float32), as ei_keras.forecast does.
        fan = forecast_from_draws(dict(zip(KNOWN_NAMES, known_rows[0].astype(float))), draws,
                                  self.grid, threshold=self.threshold)
        fan["domain"] = report
        result = {name: {key: float(value[0]) for key, value in summary.items()}
                  for name, summary in outputs["summaries"].items()}
        result.update(attention=np.asarray(outputs["attention"], dtype=float)[0], domain=report,
                      forecast=fan, elapsed_s=now, n_readings=int(len(t)), waiting=False)
        return result, misfit

    def _settle(self, result):
        reach = result["forecast"]["time_to_threshold"]
        entry = {"elapsed_s": result["elapsed_s"], "n_readings": result["n_readings"]}
        for name in self.targets:
            for key in ("median", "lo90", "hi90"):
                entry[f"{name}_{key}"] = result[name][key]
        for key in ("median", "lo", "hi", "p_reached"):
            entry[f"time_to_threshold_{key}"] = reach[key]
        entry["time_to_threshold_width_s"] = reach["hi"] - reach["lo"]
        entry["log10_activity_width"] = math.log10(result["activity"]["hi90"]
                                                   / result["activity"]["lo90"])
        entry["domain_ok"] = result["domain"]["ok"]
        self.history.append(entry)

        quantity, change = self.rule.assess(self.history, t_max=self.t_max,
                                            time_floor=float(self.grid[1] - self.grid[0]))
        settled = change < self.rule.tolerance
        now = result["elapsed_s"]
        if settled and self.settled_at is None:
            self.settled_at = now
        if settled and self._settled_since is None:
            self._settled_since = now
        if not settled and self._settled_since is not None:
            self.unsettled_at.append(now)
            self._settled_since = None
        entry.update(settle_quantity=quantity, settle_change=change, settled=settled)
        result["settled"], result["settled_at"] = settled, self.settled_at
        result["settle"] = {
            "quantity": quantity, "change": change, "window_s": self.rule.window_s,
            "tolerance": self.rule.tolerance, "since_s": self._settled_since,
            "unsettled_at_s": list(self.unsettled_at), "note": self._note(settled, change)}

    def _note(self, settled, change):
        window = f"{self.rule.window_s:g} s"
        if self.settled_at is None:
            if not math.isfinite(change):
                return f"not settled yet (needs {window} of updates)"
            return (f"not settled yet (the band moved {_fraction(change)} over the last "
                    f"{window}; settles below {_fraction(self.rule.tolerance)})")
        text = f"settled at t = {self.settled_at:g} s"
        if self.unsettled_at:
            text += f", unsettled at t = {self.unsettled_at[-1]:g} s"
            if settled:
                text += f", settled again since t = {self._settled_since:g} s"
            else:
                text += " (not settled now)"
        return text

    def history_table(self) -> dict:
        """The history as one NumPy array per key (``elapsed_s``, ``activity_lo90``,
        ``time_to_threshold_hi``, ``settled``, ...), one element per answered update."""
        if not self.history:
            return {}
        return {key: np.array([entry.get(key) for entry in self.history])
                for key in self.history[-1]}


def log_record(result, *, full=False) -> dict:
    """A JSON-able record of one update for a JSON-lines log: the summaries, the time to
    threshold (without its draws), domain and settle state; ``full`` adds the attention
    and the forecast fan (``t, median, lo, hi``)."""
    record = {"event": "waiting" if result.get("waiting") else "update"}
    for key, value in result.items():
        if key in ("forecast", "attention", "waiting"):
            continue
        record[key] = value
    if "forecast" in result:
        fan = result["forecast"]
        record["time_to_threshold"] = {key: value for key, value in
                                       fan["time_to_threshold"].items() if key != "draws"}
        record["threshold"] = fan["threshold"]
        if full:
            record["forecast"] = {key: fan[key] for key in ("t", "median", "lo", "hi")}
            record["attention"] = result["attention"]
    return record


class CsvTail:
    """Read a CSV that a logger is still appending to, like ``tail -f``.

    The first non-empty line is the header; its time and pH columns are found as
    :func:`ei_keras.inference.trace_csv.read_trace_csv` finds them (or named). Each
    :meth:`poll` reads the complete lines written since the last one (a partial last line
    waits for its newline) and returns a dict: ``readings`` (list of ``(line_number, t [s],
    pH)``), ``bad`` (list of ``(line_number, text, reason)``), ``restarted`` (None, or why
    the file was read again from its start: it was truncated or replaced) and ``missing``
    (the file does not exist now). A header that names no time or pH column raises
    EiKerasError.
    """

    def __init__(self, path, *, minutes=False, time_column=None, ph_column=None):
        self.path = Path(path)
        self.minutes = bool(minutes)
        self.time_column, self.ph_column = time_column, ph_column
        self._reset()

    def _reset(self):
        self._identity = None  # (st_dev, st_ino) of the file being read
        self._position = 0     # bytes consumed (complete lines only)
        self._seen = b""       # the last bytes consumed, to notice a rewrite
        self._line = 0         # line number of the last consumed line
        self._columns = None   # (time index, pH index) once the header is read

    def poll(self) -> dict:
        batch = {"readings": [], "bad": [], "restarted": None, "missing": False}
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            batch["missing"] = True
            return batch
        with handle:
            stat = os.fstat(handle.fileno())
            identity = (stat.st_dev, stat.st_ino)
            reason = None
            if self._identity is not None and identity != self._identity:
                reason = "was replaced"
            elif stat.st_size < self._position:
                reason = "was truncated"
            elif self._seen:
                handle.seek(self._position - len(self._seen))
                if handle.read(len(self._seen)) != self._seen:
                    reason = "was rewritten"
            if reason:
                self._reset()
                batch["restarted"] = f"{self.path} {reason}: starting over from its first line"
            self._identity = identity
            handle.seek(self._position)
            data = handle.read()
        end = data.rfind(b"\n")
        if end < 0:
            return batch
        complete = data[:end + 1]
        self._position += len(complete)
        self._seen = (self._seen + complete)[-64:]
        for raw in complete.split(b"\n")[:-1]:
            self._line += 1
            self._parse(raw, batch)
        return batch

    def _parse(self, raw, batch):
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if self._line == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            return
        try:
            row = next(csv.reader([text]))
        except (csv.Error, StopIteration) as error:
            batch["bad"].append((self._line, text, f"not a CSV row ({error})"))
            return
        if self._columns is None:
            header = [cell.strip().lower() for cell in row]
            self._columns = (_column(header, self.time_column, TIME_HEADERS, "time", self.path),
                             _column(header, self.ph_column, PH_HEADERS, "pH", self.path))
            return
        time_index, ph_index = self._columns
        try:
            t, pH = float(row[time_index]), float(row[ph_index])
        except (ValueError, IndexError):
            batch["bad"].append((self._line, text, "needs a number in the time and pH columns"))
            return
        batch["readings"].append((self._line, t * 60.0 if self.minutes else t, pH))
