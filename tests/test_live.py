"""Live early inference: LiveInference against infer/forecast on the same prefix, its
refusals, the settle rule, and ``ei-keras watch`` as a real process following a file."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ei_keras import EiKerasError, LiveInference, forecast, infer
from ei_keras.inference.live import CsvTail, SettleRule
from ei_keras.models import architecture_kwargs, build_model, default_normalization
from ei_keras.simulation.measurement import measure
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES, simulator_conditions

KNOWN = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
             initial_pH=7.02)
LATENT = dict(activity=0.05, k_d=1e-3, tau_probe=5.0, pH_offset=0.02)
TARGETS = ("activity", "k_d", "tau_probe", "pH_offset")
KNOWN_FLAGS = ["--substrate-mM", "30", "--grams", "0.2", "--volume-L", "0.5",
               "--temperature-C", "30", "--initial-pH", "7.02"]
LIVE = dict(n_draws=40, n_times=101, t_max=1000.0)  # small and fast; any values would do


def simulated_trace(t, seed=0):
    """Measured readings of the chemistry at ``t`` (independent of any model)."""
    case = {name: np.array([value]) for name, value in {**KNOWN, **LATENT}.items()}
    return measure(simulator_conditions(case), t, tau_probe=LATENT["tau_probe"],
                   pH_offset=LATENT["pH_offset"], noise_std=0.01,
                   rng=np.random.default_rng(seed))[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small untrained any-format model with a training domain, saved as .keras."""
    stats = default_normalization(target_names=TARGETS)
    stats.update(time_scale=600.0, dt_scale=1.0, ph_scale=0.5, domain={
        "param_ranges": {name: list(map(float, DEFAULT_PARAM_RANGES[name]))
                         for name in DEFAULT_PARAM_RANGES},
        "noise_std": 0.01, "use_probe_lag": True, "use_offset": True,
        "prefix_length_s": [1.0, 600.0], "reading_interval_s": [0.1, 20.0],
        "readings": [3, 1200]})
    model = build_model(stats, **architecture_kwargs("binned", 100))
    path = tmp_path_factory.mktemp("live_model") / "any.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    from ei_keras.inference import load_model
    return load_model(model_path)


# -- LiveInference ----------------------------------------------------------------------
@pytest.mark.backend
def test_updates_equal_infer_and_forecast_on_the_same_prefix(model):
    t = np.arange(0.0, 40.0, 1.0)
    pH = simulated_trace(t)
    live = LiveInference(KNOWN, model, check_fit_every_s=0, **LIVE)
    assert live.update(t[0], pH[0])["waiting"]
    waiting = live.update(t[1:2], pH[1:2])
    assert waiting["waiting"] and waiting["n_readings"] == 2 and not live.history
    for start, stop in [(2, 3), (3, 4), (4, 17), (17, 40)]:  # scalars and arrays
        result = live.update(t[start:stop] if stop - start > 1 else t[start],
                             pH[start:stop] if stop - start > 1 else pH[start])
        reference = infer(model, t[:stop], pH[:stop], KNOWN)
        fan = forecast(model, t[:stop], pH[:stop], KNOWN, n_draws=LIVE["n_draws"],
                       n_times=LIVE["n_times"], t_max=LIVE["t_max"], seed=0)[0]
        for name in TARGETS:
            for key, value in reference[name].items():
                assert result[name][key] == pytest.approx(float(value[0]), rel=1e-6), (name, key)
        np.testing.assert_allclose(result["attention"], reference["attention"][0], rtol=1e-6)
        assert result["domain"]["flags"] == reference["domain"]["flags"]
        assert result["domain"]["ok"] == reference["domain"]["ok"]
        assert result["domain"]["misfit_rms"] == pytest.approx(reference["domain"]["misfit_rms"])
        for key in ("t", "median", "lo", "hi"):
            np.testing.assert_allclose(result["forecast"][key], fan[key], rtol=1e-9)
        for key in ("median", "lo", "hi", "p_reached"):
            assert result["forecast"]["time_to_threshold"][key] == pytest.approx(
                fan["time_to_threshold"][key])
        assert result["n_readings"] == stop and result["elapsed_s"] == t[stop - 1]
        assert not result["waiting"] and result["compute_s"] > 0
    assert len(live.history) == 4
    table = live.history_table()
    np.testing.assert_array_equal(table["n_readings"], [3, 4, 17, 40])
    assert table["time_to_threshold_hi"].shape == (4,)


@pytest.mark.backend
def test_the_misfit_check_runs_every_n_seconds_and_its_verdict_is_carried(model):
    t = np.arange(0.0, 30.0, 1.0)
    pH = simulated_trace(t)
    live = LiveInference(KNOWN, model, check_fit_every_s=10.0, **LIVE)
    checked_at = []
    for i in range(len(t)):
        result = live.update(t[i], pH[i])
        if not result["waiting"]:
            checked_at.append(result["domain"]["misfit_checked_at_s"])
            assert "fit to the chemistry" in result["domain"]["checked"]
    assert sorted(set(checked_at)) == [2.0, 12.0, 22.0]
    reference = infer(model, t[:23], pH[:23], KNOWN)["domain"]  # checked at 22 s
    assert result["domain"]["misfit_rms"] == pytest.approx(reference["misfit_rms"])


@pytest.mark.backend
def test_times_not_increasing_is_a_one_line_error_and_leaves_the_state_unchanged(model):
    t = np.arange(0.0, 10.0, 1.0)
    pH = simulated_trace(t)
    live = LiveInference(KNOWN, model, **LIVE)
    live.update(t, pH)
    before = (live.t, live.pH, len(live.history), live.last)
    for bad_t, bad_pH, words in [(9.0, 7.1, "keep increasing"), (5.0, 7.1, "keep increasing"),
                                 ([10.0, 12.0, 11.0], [7.1] * 3, "keep increasing"),
                                 (np.nan, 7.1, "NaN"), (11.0, 13.5, "within 3–12"),
                                 ([11.0, 12.0], [7.1], "same length"), ([], [], "no new")]:
        with pytest.raises(EiKerasError, match=words) as error:
            live.update(bad_t, bad_pH)
        assert "\n" not in str(error.value)
        np.testing.assert_array_equal(live.t, before[0])
        np.testing.assert_array_equal(live.pH, before[1])
        assert len(live.history) == before[2] and live.last is before[3]
    assert live.update(10.0, pH[-1] + 0.01)["n_readings"] == 11


def test_refusals_at_construction(model, tmp_path):
    with pytest.raises(EiKerasError, match="substrate_mM = 500"):
        LiveInference({**KNOWN, "substrate_mM": 500.0}, model)
    with pytest.raises(EiKerasError, match="window_s"):
        LiveInference(KNOWN, model, settle_window_s=0)
    with pytest.raises(EiKerasError, match="any-format"):
        fixed = build_model(default_normalization(target_names=("activity", "k_d")))
        LiveInference(KNOWN, fixed)


# -- the settle rule --------------------------------------------------------------------
def test_settle_rule_on_hand_made_bands():
    rule = SettleRule(window_s=30.0, tolerance=0.05)
    times = np.arange(0.0, 101.0, 1.0)
    lo, hi = np.full_like(times, 200.0), np.full_like(times, 400.0)
    assert rule.change(times[:30], lo[:30], hi[:30]) == math.inf  # window not yet covered
    assert rule.change(times[:31], lo[:31], hi[:31]) == 0.0 and rule.settled(
        times[:31], lo[:31], hi[:31])
    hi[:50] = 440.0  # the upper end moves 10 % at t = 50 s, then holds
    change = [rule.change(times[:k + 1], lo[:k + 1], hi[:k + 1]) for k in range(len(times))]
    assert change[50] == pytest.approx(0.1) and not rule.settled(times[:51], lo[:51], hi[:51])
    assert change[79] == pytest.approx(0.1)  # the last update before the window still moved
    assert change[80] == 0.0                 # 30 s without a move
    hi[90] = 415.0  # a 3.75 % move is within tolerance
    assert rule.settled(times[:91], lo[:91], hi[:91])
    # sparse updates: the last one before the window counts
    assert rule.change([0.0, 50.0], [1.0, 1.2], [2.0, 2.0]) == pytest.approx(0.2 / 1.2)
    # small ends are compared with the floor, not with themselves
    assert rule.change([0, 40], [2.0, 3.0], [9.0, 9.0], floor=5.0) == pytest.approx(0.2)
    with pytest.raises(EiKerasError):
        SettleRule(tolerance=0)


def test_settle_rule_follows_activity_when_the_threshold_is_rarely_reached():
    rule = SettleRule(window_s=10.0, tolerance=0.05, min_p_reached=0.5)

    def entry(t, p_reached, act, reach=(100.0, math.inf)):
        return {"elapsed_s": t, "time_to_threshold_p_reached": p_reached,
                "time_to_threshold_lo": reach[0], "time_to_threshold_hi": reach[1],
                "activity_lo90": act[0], "activity_hi90": act[1]}

    # rarely reached: the activity band decides (the threshold band jumps around)
    history = [entry(0, 0.2, (0.01, 0.02), (50.0, math.inf)), entry(20, 0.3, (0.0101, 0.02))]
    assert rule.assess(history, t_max=1000.0, time_floor=5.0) == (
        "activity", pytest.approx(0.0001 / 0.0101))
    # mostly reached: the time band decides, "never" counts as t_max and does not move
    history = [entry(0, 0.8, (0.01, 0.02)), entry(20, 0.9, (0.02, 0.04), (104.0, math.inf))]
    quantity, change = rule.assess(history, t_max=1000.0, time_floor=5.0)
    assert quantity == "time_to_threshold" and change == pytest.approx(4 / 104)
    history[-1]["time_to_threshold_hi"] = 800.0  # "never" → 800 s moves the upper end 25 %
    assert rule.assess(history, t_max=1000.0, time_floor=5.0)[1] == pytest.approx(0.25)


@pytest.mark.backend
def test_settled_at_is_kept_and_unsettling_is_reported(model, monkeypatch):
    """The bookkeeping on a synthetic sequence of results (no network involved)."""
    live = LiveInference(KNOWN, model, settle_window_s=10.0, settle_tolerance=0.05, **LIVE)
    upper = {t: 500.0 + 10 * t if t < 20 else 400.0 if t < 60 else 520.0 for t in range(121)}

    def answer(t, pH):
        now = float(t[-1])
        summary = {key: 0.05 for key in ("median", "mean", "std", "lo50", "hi50", "lo95",
                                         "hi95")}
        reach = {"median": 300.0, "lo": 200.0, "hi": upper[int(now)], "p_reached": 1.0}
        result = {name: {**summary, "lo90": 0.04, "hi90": 0.06} for name in TARGETS}
        result.update(forecast={"time_to_threshold": reach}, domain={"ok": True, "flags": []},
                      elapsed_s=now, n_readings=len(t), waiting=False, attention=None)
        return result, None

    monkeypatch.setattr(live, "_answer", answer)
    results = [live.update(float(t), 7.1 + 0.001 * t) for t in range(0, 121)][2:]
    settled = {r["elapsed_s"]: r["settled"] for r in results}
    assert not settled[29] and settled[30]  # 400 since 20 s: settled 10 s later
    assert settled[59] and not settled[60] and not settled[69] and settled[70]
    assert all(r["settled_at"] == 30.0 for r in results if r["elapsed_s"] >= 30)
    assert results[-1]["settle"]["unsettled_at_s"] == [60.0]
    assert results[-1]["settle"]["note"] == (
        "settled at t = 30 s, unsettled at t = 60 s, settled again since t = 70 s")
    assert results[60 - 2]["settle"]["note"] == (
        "settled at t = 30 s, unsettled at t = 60 s (not settled now)")
    assert "not settled yet" in results[0]["settle"]["note"]
    assert [e["settled"] for e in live.history] == [r["settled"] for r in results]


# -- the CSV tail -----------------------------------------------------------------------
def test_csv_tail_partial_lines_bad_lines_and_truncation(tmp_path):
    path = tmp_path / "log.csv"
    tail = CsvTail(path)
    assert tail.poll()["missing"]
    path.write_text("\ufeffTime (s),pH\n0,7.02\n1,7.0")
    batch = tail.poll()
    assert batch["readings"] == [(2, 0.0, 7.02)] and not batch["bad"]
    with path.open("a") as handle:
        handle.write("5\nx,y\n\n2,7.04\n")
    batch = tail.poll()
    assert batch["readings"] == [(3, 1.0, 7.05), (6, 2.0, 7.04)]
    assert [bad[0] for bad in batch["bad"]] == [4]
    path.write_text("time,pH\n0,7.1\n")  # shorter: truncated
    batch = tail.poll()
    assert "truncated" in batch["restarted"] and batch["readings"] == [(2, 0.0, 7.1)]
    path.write_text("time,pH\n0,7.2\n1,7.3\n")  # same length or longer, new content
    batch = tail.poll()
    assert batch["restarted"] and batch["readings"] == [(2, 0.0, 7.2), (3, 1.0, 7.3)]
    replaced = tmp_path / "new.csv"
    replaced.write_text("seconds,measured_pH\n0,7.0\n")
    os.replace(replaced, path)
    batch = tail.poll()
    assert "replaced" in batch["restarted"] and batch["readings"] == [(2, 0.0, 7.0)]
    path.write_text("when,what\n1,2\n")
    with pytest.raises(EiKerasError, match="cannot tell which column"):
        CsvTail(path).poll()


# -- ei-keras watch as a process --------------------------------------------------------
def strict_lines(path):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return [json.loads(line, parse_constant=refuse) for line in Path(path).read_text().splitlines()]


def wait_for(predicate, timeout=60.0, what=""):  # generous: a loaded machine
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(path):
    if not Path(path).exists():
        return []
    return [json.loads(line)["event"] for line in Path(path).read_text().splitlines()
            if line.endswith("}")]


def watch(model_path, csv, log, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "ei_keras.cli", "watch", "--model", str(model_path),
         "--csv", str(csv), "--log", str(log), "--poll", "0.1", *KNOWN_FLAGS, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def write_readings(path, t, pH, mode="a"):
    with open(path, mode) as handle:
        for a, b in zip(t, pH):
            handle.write(f"{a:g},{b:.4f}\n")


@pytest.mark.backend
def test_watch_follows_a_file_as_it_is_written(model_path, tmp_path):
    csv, log = tmp_path / "run.csv", tmp_path / "run.jsonl"
    t = np.arange(0.0, 12.0, 1.0)
    pH = simulated_trace(t)
    process = watch(model_path, csv, log, "--idle-exit", "2")
    try:
        wait_for(lambda: "start" in events(log), what="the watch to start")
        csv.write_text("time_s,pH\n")
        write_readings(csv, t[:4], pH[:4])
        wait_for(lambda: events(log).count("update") >= 1, what="a first update")
        with open(csv, "a") as handle:  # line 6: a partial line, completed later
            handle.write(f"4,{pH[4]:.4f}"[:-2])
        time.sleep(0.4)
        with open(csv, "a") as handle:
            handle.write(f"{pH[4]:.4f}"[-2:] + "\nfour,seven\n")  # line 7 is bad
        write_readings(csv, t[5:8], pH[5:8])
        wait_for(lambda: "bad_line" in events(log), what="the bad line")
        wait_for(lambda: strict_lines(log)[-1].get("n_readings") == 8, what="8 readings")
        csv.write_text("")  # the logger starts over
        time.sleep(0.4)
        csv.write_text("time_s,pH\n")
        write_readings(csv, t[:5], pH[:5] + 0.01)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, output
    records = strict_lines(log)
    kinds = [record["event"] for record in records]
    assert kinds[0] == "start" and kinds[-1] == "summary" and "restart" in kinds
    bad = [record for record in records if record["event"] == "bad_line"]
    assert [record["line"] for record in bad] == [7] and "line 7: skipped" in output
    before = records[:kinds.index("restart")]
    updates = [record for record in before if record["event"] == "update"]
    assert updates[-1]["n_readings"] == 8  # the partial line was read once it was complete
    assert updates[-1]["lines"][-1] == 10
    assert "truncated" in output or "rewritten" in output
    after = records[kinds.index("restart"):]
    assert after[1]["event"] == "run"
    assert [r for r in after if r["event"] == "update"][-1]["n_readings"] == 5
    summary = records[-1]
    assert summary["reason"] == "no new line for 2 s" and summary["n_readings"] == 5
    assert "activity" in summary["last"] and "stopped: no new line" in output


@pytest.mark.backend
def test_watch_replay_plays_a_finished_csv(model_path, tmp_path):
    csv, log = tmp_path / "run.csv", tmp_path / "run.jsonl"
    t = np.arange(0.0, 30.0, 1.0)
    csv.write_text("time,pH\n")
    write_readings(csv, t, simulated_trace(t))
    done = subprocess.run(
        [sys.executable, "-m", "ei_keras.cli", "watch", "--model", str(model_path), "--csv",
         str(csv), "--log", str(log), "--replay", "5", *KNOWN_FLAGS],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    records = strict_lines(log)
    updates = [r for r in records if r["event"] == "update"]
    assert updates[-1]["n_readings"] == 30 and records[-1]["event"] == "summary"
    assert records[-1]["reason"].startswith("replayed")
    assert records[-1]["wall_time"] - records[0]["wall_time"] > 29 / 5  # paced
    # not all at once (the first updates may take a second or two to compile under jax)
    assert len(updates) >= 3
    assert sum(1 for line in done.stdout.splitlines() if "activity" in line) >= len(updates)


@pytest.mark.backend
@pytest.mark.parametrize("signum, mode", [(signal.SIGINT, "follow"), (signal.SIGTERM, "replay")])
def test_a_signal_stops_the_watch_with_a_complete_log(model_path, tmp_path, signum, mode):
    csv, log = tmp_path / "run.csv", tmp_path / "run.jsonl"
    t = np.arange(0.0, 300.0, 1.0)
    csv.write_text("time,pH\n")
    write_readings(csv, t, simulated_trace(t))
    extra = ["--replay", "10"] if mode == "replay" else []
    process = watch(model_path, csv, log, *extra)
    try:
        wait_for(lambda: events(log).count("update") >= 2 or (
            mode == "follow" and "update" in events(log)), what="updates")
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, output
    records = strict_lines(log)  # every line complete, strict JSON
    assert records[-1]["event"] == "summary"
    assert records[-1]["reason"] == f"stopped by {signal.Signals(signum).name}"
    assert "stopped by" in output and log.read_text().endswith("\n")


def test_the_printed_line_says_what_was_asked():
    from ei_keras.cli.watch import update_line

    result = {"waiting": False, "elapsed_s": 42.0, "n_readings": 43, "settled": False,
              "settled_at": 30.0, "activity": {"median": 0.05, "lo90": 0.04, "hi90": 0.06},
              "k_d": {"median": 1e-3, "lo90": 2e-4, "hi90": 4e-3},
              "forecast": {"time_to_threshold": {"median": 340.0, "lo": 185.0,
                                                 "hi": math.inf, "p_reached": 0.8}},
              "domain": {"ok": False, "flags": ["the trace spans 42 s, outside", "another"]}}
    line = update_line(result, 8.5, 2000.0)
    for words in ("42.0 s", "n=43", "activity 0.05 [0.04–0.06]", "k_d 1.00e-03 [2.0e-04–4.0e-03]",
                  "pH 8.5 at 340 s [185–>2000] (80% reach it)", "settled: no (was at 30 s)",
                  "FLAGGED: the trace spans 42 s"):
        assert words in line, (words, line)
    assert "\n" not in line
    result["forecast"]["time_to_threshold"]["p_reached"] = 0.0
    assert "pH 8.5: not by 2000 s" in update_line(result, 8.5, 2000.0)
