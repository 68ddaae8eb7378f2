"""``ei-keras watch``: follow a run as the logger writes it, and say when the answer has settled."""

import json
import math
import signal
import time

import numpy as np

from ei_keras.cli.infer import add_trace_arguments, known_inputs
from ei_keras.errors import EiKerasError
from ei_keras.inference.default_model import default_model_path
from ei_keras.jsonutil import dumps_strict

_NAP = 0.05  # seconds between looks at the stop flag while waiting


def add_parser(subparsers):
    from ei_keras.inference.settle import SettleRule

    rule = SettleRule()
    parser = subparsers.add_parser(
        "watch", help="follow a pH trace CSV while it is written; live inference",
        description="Follow a CSV that a logger is still appending to (like tail -f): at every "
        "new reading, the posterior of activity and k_d and the forecast time to the threshold, "
        "and whether the answer has settled. Ctrl-C (or SIGTERM) stops it with the log intact "
        "and a summary.")
    parser.add_argument("--model", help="an any-format .keras model (default: the shipped model)")
    add_trace_arguments(parser)
    parser.add_argument("--log", metavar="OUT.jsonl",
                        help="write every update (and every restart, bad line and the summary) "
                             "as one strict-JSON line, flushed at once; replaces OUT.jsonl")
    parser.add_argument("--log-full", action="store_true",
                        help="log lines also carry the attention and the forecast fan (large)")
    parser.add_argument("--replay", type=float, metavar="SPEED",
                        help="play a finished CSV at SPEED times real time, then stop")
    parser.add_argument("--poll", type=float, default=0.5, metavar="SECONDS",
                        help="look for new lines this often (default 0.5)")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="stop when no new line arrived for this long (default: never)")
    parser.add_argument("--settle-window", type=float, default=rule.window_s, metavar="SECONDS",
                        help=f"settled: the 90%% band held still over this many seconds of the "
                             f"run (default {rule.window_s:g})")
    parser.add_argument("--settle-tolerance", type=float, default=rule.tolerance,
                        metavar="FRACTION", help=f"... moving each end by less than this "
                        f"fraction of its value (default {rule.tolerance:g})")
    parser.add_argument("--check-fit-every", type=float, default=10.0, metavar="SECONDS",
                        help="run the misfit check every this many seconds of the run "
                             "(default 10; 0: at every update)")
    parser.set_defaults(func=run)


class _Stop:
    """SIGINT/SIGTERM set a flag that the loop reads between updates, so a log line is
    never cut in half."""

    def __init__(self):
        self.reason = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.reason = f"stopped by {signal.Signals(signum).name}"

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while self.reason is None and time.monotonic() < end:
            time.sleep(min(_NAP, max(end - time.monotonic(), 0.0)))


def _seconds(value, t_max):
    return f"{value:.0f}" if math.isfinite(value) else f">{t_max:g}"


def _reach_line(reach, threshold, t_max):
    if reach["p_reached"] == 0:
        return f"pH {threshold:g}: not by {t_max:g} s"
    text = (f"pH {threshold:g} at {_seconds(reach['median'], t_max)} s "
            f"[{_seconds(reach['lo'], t_max)}–{_seconds(reach['hi'], t_max)}]")
    if reach["p_reached"] < 1:
        text += f" ({100 * reach['p_reached']:.0f}% reach it)"
    return text


def update_line(result, threshold, t_max) -> str:
    """One printed line per update: elapsed time, activity and k_d with 90 % intervals,
    the time to threshold with its band, settled yes/no, and the first domain flag."""
    head = f"{result['elapsed_s']:8.1f} s  n={result['n_readings']:<5}"
    if result["waiting"]:
        return f"{head} {result['status']}"
    activity, k_d = result["activity"], result["k_d"]
    settled = "yes" if result["settled"] else "no"
    if result["settled_at"] is not None and not result["settled"]:
        settled += f" (was at {result['settled_at']:g} s)"
    elif result["settled"]:
        settled += f" (at {result['settled_at']:g} s)"
    text = (f"{head} activity {activity['median']:.3g} [{activity['lo90']:.3g}–"
            f"{activity['hi90']:.3g}]  k_d {k_d['median']:.2e} [{k_d['lo90']:.1e}–"
            f"{k_d['hi90']:.1e}] 1/s  "
            f"{_reach_line(result['forecast']['time_to_threshold'], threshold, t_max)}  "
            f"settled: {settled}")
    if not result["domain"]["ok"]:
        text += f"  FLAGGED: {result['domain']['flags'][0]}"
    return text


class _Watch:
    """The state of one watch: the run being followed, its log, its counters."""

    def __init__(self, args, model, log):
        self.args, self.model, self.log = args, model, log
        self.live = None
        self.updates = self.bad_lines = self.restarts = self.refused = 0
        self.costs = []

    def write(self, record):
        if self.log is not None:
            self.log.write(dumps_strict(record) + "\n")
            self.log.flush()

    def restart(self, reason):
        print(reason, flush=True)
        self.restarts += 1
        self.live = None
        self.write({"event": "restart", "reason": reason})

    def bad(self, line, text, reason):
        print(f"line {line}: skipped ({reason}): {text[:80]!r}", flush=True)
        self.bad_lines += 1
        self.write({"event": "bad_line", "line": line, "text": text, "reason": reason})

    def readings(self, rows):
        """Check each new row against the ones before it, then one update for the good ones."""
        from ei_keras.inference.live import check_new_readings

        after = float(self.live.t[-1]) if self.live and self.live.n_readings else None
        good = []
        for line, t, pH in rows:
            try:
                check_new_readings(t, pH, good[-1][1] if good else after)
            except EiKerasError as error:
                self.bad(line, f"{t:g},{pH:g}", str(error))
                continue
            good.append((line, t, pH))
        if not good:
            return
        if self.live is None:
            self.start(good[0][2])
        t = np.array([row[1] for row in good])
        pH = np.array([row[2] for row in good])
        try:
            result = self.live.update(t, pH)
        except EiKerasError as error:
            self.refused += 1
            print(f"lines {good[0][0]}–{good[-1][0]}: not used ({error})", flush=True)
            self.write({"event": "refused", "lines": [good[0][0], good[-1][0]],
                        "reason": str(error)})
            return
        from ei_keras.inference.live import log_record

        self.updates += 1
        if not result["waiting"]:
            self.costs.append(result["compute_s"])
        print(update_line(result, self.args.threshold, self.args.t_max), flush=True)
        record = log_record(result, full=self.args.log_full)
        record["lines"] = [good[0][0], good[-1][0]]
        self.write(record)

    def start(self, first_reading):
        from ei_keras.inference.live import LiveInference

        known, notes = known_inputs(self.args, first_reading)
        self.live = LiveInference(
            known, self.model, threshold=self.args.threshold, t_max=self.args.t_max,
            settle_window_s=self.args.settle_window, settle_tolerance=self.args.settle_tolerance,
            check_fit_every_s=self.args.check_fit_every,
            allow_extrapolation=self.args.allow_extrapolation)
        for note in notes:
            print(f"note: {note}", flush=True)
        self.write({"event": "run", "known": self.live.known, "notes": notes})

    def summary(self, reason):
        live = self.live
        last = live.last if live else None
        lines = [f"stopped: {reason}"]
        record = {"event": "summary", "reason": reason, "wall_time": time.time(),
                  "updates": self.updates,
                  "bad_lines": self.bad_lines, "restarts": self.restarts,
                  "refused_updates": self.refused}
        if live is not None and live.n_readings:
            lines.append(f"{live.n_readings} readings over {live.t[-1]:g} s, {self.updates} "
                         f"updates, {self.bad_lines} bad lines skipped, {self.restarts} restarts")
            record.update(n_readings=live.n_readings, elapsed_s=float(live.t[-1]))
        else:
            lines.append("no readings")
        if self.costs:
            lines.append(f"compute per update: median {1e3 * np.median(self.costs):.0f} ms, "
                         f"max {1e3 * np.max(self.costs):.0f} ms")
            record["compute_s"] = {"median": float(np.median(self.costs)),
                                   "max": float(np.max(self.costs))}
        if last is not None:
            lines.append("answer: " + update_line(last, self.args.threshold,
                                                  self.args.t_max).strip())
            lines.append(last["settle"]["note"])
            record.update(settled=last["settled"], settled_at=last["settled_at"],
                          unsettled_at=last["settle"]["unsettled_at_s"],
                          note=last["settle"]["note"], last=_compact(last))
        if self.args.log:
            lines.append(f"log: {self.args.log}")
        print("\n".join(lines), flush=True)
        self.write(record)


def _compact(result):
    from ei_keras.inference.live import log_record

    return {key: value for key, value in log_record(result).items() if key != "event"}


def run(args):
    from ei_keras.inference.live import CsvTail, LiveInference
    from ei_keras.inference.posterior import load_model

    if args.replay is not None and not (math.isfinite(args.replay) and args.replay > 0):
        raise EiKerasError(f"--replay SPEED must be a positive number; got {args.replay:g}")
    if not (math.isfinite(args.poll) and args.poll > 0):
        raise EiKerasError(f"--poll must be a positive number of seconds; got {args.poll:g}")
    if args.idle_exit is not None and not args.idle_exit > 0:
        raise EiKerasError(f"--idle-exit must be a positive number of seconds; got "
                           f"{args.idle_exit:g}")
    if args.check_fit_every < 0:
        raise EiKerasError("--check-fit-every must be >= 0 seconds")
    with _Stop() as stop:
        try:
            known, _ = known_inputs(args, 7.0)  # --known and flags, checked before any wait
        except json.JSONDecodeError as error:
            raise EiKerasError(f"--known is not valid JSON ({error})") from None
        model = load_model(args.model or default_model_path())
        # Model format, known-input ranges and settle settings, refused now, not later.
        LiveInference(known, model, threshold=args.threshold, t_max=args.t_max,
                      settle_window_s=args.settle_window, settle_tolerance=args.settle_tolerance,
                      check_fit_every_s=args.check_fit_every,
                      allow_extrapolation=args.allow_extrapolation)
        tail = CsvTail(args.csv, minutes=args.minutes, time_column=args.time_column,
                       ph_column=args.ph_column)
        log = open(args.log, "w", encoding="utf-8") if args.log else None
        try:
            watch = _Watch(args, model, log)
            watch.write({"event": "start", "csv": str(args.csv),
                         "model": str(args.model or default_model_path()),
                         "threshold": args.threshold, "t_max": args.t_max,
                         "settle": {"window_s": args.settle_window,
                                    "tolerance": args.settle_tolerance},
                         "replay": args.replay, "wall_time": time.time()})
            reason = (_replay(tail, watch, stop, args) if args.replay
                      else _follow(tail, watch, stop, args))
            watch.summary(reason)
        finally:
            if log is not None:
                log.close()
    return 0


def _follow(tail, watch, stop, args):
    """Poll the file until stopped or idle; one update per poll that brought readings."""
    last_news = time.monotonic()
    missing_said = False
    while stop.reason is None:
        batch = tail.poll()
        if batch["missing"]:
            if not missing_said:
                print(f"waiting for {args.csv} to appear", flush=True)
                missing_said = True
        else:
            missing_said = False
        if batch["restarted"]:
            watch.restart(batch["restarted"])
        news = batch["readings"] or batch["bad"] or batch["restarted"]
        for line, text, reason in batch["bad"]:
            watch.bad(line, text, reason)
        if batch["readings"]:
            watch.readings(batch["readings"])
        if news:
            last_news = time.monotonic()
            continue
        if args.idle_exit is not None and time.monotonic() - last_news >= args.idle_exit:
            return f"no new line for {args.idle_exit:g} s"
        stop.sleep(args.poll)
    return stop.reason


def _replay(tail, watch, stop, args):
    """Play a finished CSV: a reading is released ``(t - t_first) / speed`` seconds after
    the start; all readings due at once go into one update."""
    batch = tail.poll()
    if batch["missing"]:
        raise EiKerasError(f"no CSV file at {args.csv}")
    events = sorted([(line, "bad", (text, reason)) for line, text, reason in batch["bad"]]
                    + [(line, "reading", (t, pH)) for line, t, pH in batch["readings"]])
    if not batch["readings"]:
        raise EiKerasError(f"{args.csv} holds no readings to replay")
    first = batch["readings"][0][1]
    started = time.monotonic()
    index = 0
    while index < len(events) and stop.reason is None:
        now = (time.monotonic() - started) * args.replay + first
        due = []
        while index < len(events):
            line, kind, payload = events[index]
            if kind == "reading" and payload[0] > now:
                break
            if kind == "bad":
                if due:
                    watch.readings(due)
                    due = []
                watch.bad(line, *payload)
            else:
                due.append((line, *payload))
            index += 1
        if due:
            watch.readings(due)
            continue
        if index < len(events):
            wait = (events[index][2][0] - now) / args.replay
            stop.sleep(min(max(wait, 0.0), args.poll))
    return stop.reason or f"replayed {args.csv} at {args.replay:g}x"

