"""Run directories: one writer, resume after any interruption, refusals in one line.

Real processes are killed (SIGKILL, SIGTERM) mid-epoch and around the commit of an
epoch, then the run is resumed; two real processes race for one directory.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ei_keras  # noqa: F401
import keras

from ei_keras import jobs, run_directory
from ei_keras.cli import main
from ei_keras.errors import EiKerasError
from ei_keras.training import read_history, train
from run_integrity_worker import (
    EXPECTED_LEARNING_RATES,
    SETTINGS,
    STEPS_PER_EPOCH,
    data,
)
from racing import refused_first
from synthetic_prefixes import make_prefixes

TESTS = Path(__file__).parent
WORKER = TESTS / "run_integrity_worker.py"


def _spawn(run_dir, plan, marker):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(run_dir), plan, str(marker)], cwd=TESTS,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, KERAS_BACKEND=keras.backend.backend()))


def _wait_for(marker, *processes, timeout=240):
    deadline = time.monotonic() + timeout
    while not Path(marker).exists():
        if all(process.poll() is not None for process in processes):
            out = [process.communicate()[1][-2000:] for process in processes]
            raise AssertionError(f"workers ended before {marker}: {out}")
        assert time.monotonic() < deadline, "worker never reached its marker"
        time.sleep(0.1)


def strict_json(text):
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _iterations(path):
    model = keras.saving.load_model(path)
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


@pytest.mark.parametrize("plan, kill, committed", [
    ("hang", signal.SIGKILL, 3),              # killed mid-epoch 4
    pytest.param("hang", signal.SIGTERM, 3,    # terminated mid-epoch 4 (as Ctrl-C)
                 marks=pytest.mark.backend),
    ("die_before_commit", None, 3),           # history line and models written, no commit
    ("die_after_commit", None, 4),            # committed, models not yet renamed
])
def test_an_interrupted_run_resumes_after_its_last_completed_epoch(tmp_path, plan, kill,
                                                                   committed):
    run, marker = tmp_path / "run", tmp_path / "marker"
    process = _spawn(run, plan, marker)
    if kill is not None:
        _wait_for(marker, process)
        process.send_signal(kill)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode != 0, stderr[-2000:]

    checkpoint = strict_json((run / "checkpoint.json").read_text())
    status = strict_json((run / "status.json").read_text())
    assert checkpoint["epoch"] == committed
    if kill == signal.SIGTERM:
        assert status["state"] == "interrupted" and "resume" in status["message"]
        assert status["epoch"] == committed

    result = train(data(), 30.0, out_dir=run, resume=True, verbose=0)

    assert result.status == "finished"
    history = read_history(run)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]  # each epoch once
    np.testing.assert_allclose([r["learning_rate"] for r in history], EXPECTED_LEARNING_RATES,
                               rtol=1e-6)  # warmup and plateau counters carried over
    assert _iterations(run / "final.keras") == 6 * STEPS_PER_EPOCH  # continued, not restarted
    assert not list(run.glob("*.next.keras")) and not list(run.glob(".*tmp*"))
    assert not (run / ".lock").exists()
    final = strict_json((run / "checkpoint.json").read_text())
    assert final["epoch"] == 6
    assert final["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in history))


def test_two_processes_racing_for_one_run_directory(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    first, second = _spawn(run, "hang_first", marker), _spawn(run, "hang_first", marker)
    try:
        _wait_for(marker, first, second)
        loser, winner = refused_first(first, second, timeout_s=240, poll_s=0.1,
                                      what="trainer")
        _, stderr = loser.communicate()
        assert loser.returncode == 2
        lines = stderr.strip().splitlines()
        assert lines == [lines[-1]] and f"in use by pid {winner.pid}" in lines[-1], stderr
        # --resume on the live run is refused the same way
        with pytest.raises(EiKerasError, match=f"in use by pid {winner.pid}"):
            train(data(), 30.0, out_dir=run, resume=True, verbose=0)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.communicate()
    # The winner died in epoch 1: nothing was committed, so a resume starts over.
    with pytest.raises(EiKerasError, match="already holds a training run"):
        train(data(), 30.0, "improved", run, verbose=0, **SETTINGS)
    result = train(data(), 30.0, out_dir=run, resume=True, epochs=2, verbose=0)
    assert [r["epoch"] for r in result.history] == [1, 2]


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("base") / "run"
    train(data(), 30.0, "improved", run, verbose=0, **dict(SETTINGS, epochs=2))
    return run


@pytest.fixture
def run_copy(two_epoch_run, tmp_path):
    return Path(shutil.copytree(two_epoch_run, tmp_path / "run"))


def _one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_files_are_strict_json(run_copy):
    for name in ("config.json", "status.json", "checkpoint.json"):
        strict_json((run_copy / name).read_text())
    for line in (run_copy / "history.jsonl").read_text().splitlines():
        strict_json(line)
    # before any val_loss the plateau's best is null, not Infinity
    assert strict_json((run_copy / "checkpoint.json").read_text())["plateau"]["best"] is not None


@pytest.mark.parametrize("change, text", [
    ({"data": lambda: make_prefixes(n=96, seed=1)}, "is not the one the run was trained on"),
    ({"prefix_length": 10.0}, "the prefix length is 10.0 but the run was trained with 30.0"),
    ({"prefix_length": "any"}, "the prefix length is any"),
    ({"overrides": {"architecture": "recipe"}}, "only epochs may change"),
    ({"preset": "baseline"}, "with preset 'baseline'"),
])
def test_resume_refuses_other_data_and_settings(run_copy, change, text):
    status = (run_copy / "status.json").read_bytes()
    kwargs = dict(data=data(), prefix_length=30.0, preset=None, overrides={})
    kwargs.update({k: v() if callable(v) else v for k, v in change.items()})
    with pytest.raises(EiKerasError, match=text) as excinfo:
        train(kwargs["data"], kwargs["prefix_length"], kwargs["preset"], run_copy,
              resume=True, verbose=0, **kwargs["overrides"])
    assert "config.json" in _one_line(excinfo) or "preset" in str(excinfo.value)
    assert [r["epoch"] for r in read_history(run_copy)] == [1, 2]  # nothing touched
    # the finished run still reads finished: a refused resume did not change it
    assert (run_copy / "status.json").read_bytes() == status


def _empty_history(run):
    (run / "history.jsonl").write_text("")


def _epoch_99(run):
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    (run / "checkpoint.json").write_text(json.dumps(dict(checkpoint, epoch=99)))


def _corrupt_checkpoint(run):
    (run / "checkpoint.json").write_text("{\"epoch\": 2, ")


def _no_checkpoint(run):
    (run / "checkpoint.json").unlink()


def _foreign_last(run):
    shutil.copyfile(ei_keras.default_model_path(), run / "last.keras")


def _truncated_last(run):
    data = (run / "last.keras").read_bytes()
    (run / "last.keras").write_bytes(data[: len(data) // 2])


def _corrupt_config(run):
    (run / "config.json").write_text("not json")


@pytest.mark.parametrize("damage, text", [
    (_empty_history, r"history.jsonl holds no epochs in 0 lines but checkpoint.json says "
                     r"epochs 1–2 are done"),
    (_epoch_99, r"checkpoint.json says 99 epochs are done, beyond the 6 asked for; pass "
                r"--epochs above 99"),
    (_corrupt_checkpoint, r"checkpoint.json: the run's checkpoint is not valid JSON"),
    (_no_checkpoint, r"checkpoint.json is missing but last.keras exists.*delete .*last.keras"),
    (_foreign_last, r"last.keras is not the model this run saved after epoch 2"),
    (_truncated_last, r"last.keras is not the model this run saved after epoch 2"),
    (_corrupt_config, r"config.json: the run's configuration is not valid JSON"),
])
def test_resume_refuses_inconsistent_state_naming_the_file(run_copy, damage, text):
    damage(run_copy)
    with pytest.raises(EiKerasError, match=text) as excinfo:
        train(data(), 30.0, out_dir=run_copy, resume=True, verbose=0, epochs=6)
    _one_line(excinfo)


def test_resume_without_status_json_continues(run_copy):
    (run_copy / "status.json").unlink()  # progress only: resume does not need it
    result = train(data(), 30.0, out_dir=run_copy, resume=True, epochs=3, verbose=0)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert _iterations(run_copy / "final.keras") == 3 * STEPS_PER_EPOCH


def test_a_foreign_last_keras_without_checkpoint_hashes_is_refused_in_one_line(run_copy):
    # A run written before checkpoint.json: its status.json held the counters.
    checkpoint = json.loads((run_copy / "checkpoint.json").read_text())
    (run_copy / "checkpoint.json").unlink()
    status = dict(checkpoint, state="interrupted")
    status.pop("models")
    (run_copy / "status.json").write_text(json.dumps(status))
    (run_copy / "last.keras").write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(EiKerasError, match="last.keras is not this run's model") as excinfo:
        train(data(), 30.0, out_dir=run_copy, resume=True, verbose=0)
    _one_line(excinfo)


def test_a_one_sample_dataset_is_refused_before_any_file_but_its_status(tmp_path):
    with pytest.raises(EiKerasError, match="1 sample.*at least 2") as excinfo:
        train(make_prefixes(n=1), 30.0, out_dir=tmp_path / "run", verbose=0, **SETTINGS)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["status.json"]
    job = jobs.read_job(tmp_path / "run")
    assert (job.state, job.message) == (jobs.FAILED, _one_line(excinfo))


@pytest.mark.parametrize("refusal, text", [
    ({"batch_size": 0}, "Batch size: got 0"),                       # a bad setting
    ({"data": "missing.h5"}, "missing.h5: no such file"),           # no data file
    ({"data": "not_hdf5.h5"}, "not an HDF5 file"),                  # a file of another kind
    ({"devices": 0}, "devices"),                                    # before the lock
])
def test_a_refused_start_writes_only_a_failed_status_then_a_run_may_start(
        tmp_path, capsys, refusal, text):
    (tmp_path / "not_hdf5.h5").write_text("time,pH\n0,7\n")
    run = tmp_path / "run"
    kwargs = dict(SETTINGS, **refusal)
    source = kwargs.pop("data", None)
    with pytest.raises(EiKerasError, match=text) as excinfo:
        train(data() if source is None else str(tmp_path / source), 30.0, "improved", run,
              verbose=0, **kwargs)
    assert [p.name for p in run.iterdir()] == ["status.json"]
    status = strict_json((run / "status.json").read_text())
    assert (status["kind"], status["state"]) == ("train", "failed")
    assert status["message"] == _one_line(excinfo)  # the user's words, no type name
    # what `ei-keras status RUN_DIR` (and the dashboard, through read_job) shows
    assert main(["status", str(run)]) == 0
    assert capsys.readouterr().out.startswith(f"train: failed, pid {os.getpid()}")
    # a refused start is no run: the directory takes a new one
    assert train(data(), 30.0, "improved", run, verbose=0,
                 **dict(SETTINGS, epochs=1)).status == "finished"
    assert jobs.read_job(run).state == jobs.FINISHED


def test_the_cli_s_own_refusals_are_written_too(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["train", "--data", "none.h5", "--prefix-length", "30", "--config", str(bad),
                 "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    job = jobs.read_job(tmp_path / "run")
    assert job.state == jobs.FAILED and "not valid JSON" in job.message in error


def test_a_refusal_leaves_another_run_and_a_run_in_use_as_they_are(run_copy, tmp_path):
    status = (run_copy / "status.json").read_bytes()
    with pytest.raises(EiKerasError, match="already holds a training run"):
        train(data(), 30.0, "improved", run_copy, verbose=0, **SETTINGS)
    assert (run_copy / "status.json").read_bytes() == status
    with run_directory.holding(run_copy):  # another trainer is writing it
        for settings in (SETTINGS, dict(SETTINGS, batch_size=0)):  # refused in, before lock
            with pytest.raises(EiKerasError, match="in use by|Batch size"):
                train(data(), 30.0, "improved", run_copy, verbose=0, **settings)
        with pytest.raises(EiKerasError, match="in use by"):
            train(data(), 30.0, out_dir=run_copy, resume=True, verbose=0)
        (run_copy / "status.json").write_text('{"state": "running"}')  # as if it were
        with pytest.raises(EiKerasError, match="in use by"):
            train(data(), 30.0, out_dir=run_copy, resume=True, verbose=0)
        assert (run_copy / "status.json").read_text() == '{"state": "running"}'
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with run_directory.holding(fresh), pytest.raises(EiKerasError, match="Batch size"):
        train(data(), 30.0, "improved", fresh, verbose=0, **dict(SETTINGS, batch_size=0))
    assert not (fresh / "status.json").exists()


def test_a_refused_resume_of_a_killed_run_says_why_and_keeps_its_progress(run_copy):
    status = json.loads((run_copy / "status.json").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_copy / "status.json").write_text(json.dumps(dict(  # a run killed in epoch 3
        status, state="running", pid=dead.pid, batch=2, steps=6, current_epoch=3)))
    assert jobs.read_job(run_copy).state == jobs.CRASHED
    with pytest.raises(EiKerasError, match="not the one the run was trained on") as excinfo:
        train(make_prefixes(n=96, seed=1), 30.0, out_dir=run_copy, resume=True, verbose=0)
    job = jobs.read_job(run_copy)
    assert (job.state, job.message, job.pid) == (jobs.FAILED, _one_line(excinfo), os.getpid())
    assert (job.fields["epoch"], job.done, job.total) == (2, 2, status["total"])
    assert job.fields["best_val_loss"] == status["best_val_loss"]
    assert "batch" not in job.fields  # the killed process's progress is gone
    # Nothing else touched: the run resumes with its own data.
    assert train(data(), 30.0, out_dir=run_copy, resume=True, epochs=3,
                 verbose=0).status == "finished"


def test_an_out_whose_parent_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EiKerasError, match="is a file, not a directory") as excinfo:
        train(data(), 30.0, out_dir=tmp_path / "file" / "run", verbose=0, **SETTINGS)
    _one_line(excinfo)


@pytest.mark.backend
def test_a_nan_epoch_is_written_as_null_and_not_committed(tmp_path):
    base = make_prefixes(n=64)
    targets = base.targets.copy()
    targets[:, 1] = np.nan
    data_nan = dataclasses.replace(base, targets=targets)
    result = train(data_nan, 30.0, out_dir=tmp_path / "run", verbose=0,
                   **dict(SETTINGS, epochs=2))
    assert result.status == "failed"
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert lines and all(strict_json(line)["loss"] is None for line in lines)
    assert not (tmp_path / "run" / "checkpoint.json").exists()
    status = strict_json((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and status["best_val_loss"] is None
