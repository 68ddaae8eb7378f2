"""The job protocol (ei_keras.jobs): real ``ei-keras`` processes write their state; readers
see progress, the end, a one-line failure, and a process killed hard as crashed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ei_keras import jobs

ROOT = Path(__file__).resolve().parents[1]


def launch(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "ei_keras.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_generate_reports_increasing_progress_and_finishes(tmp_path):
    status = tmp_path / "status.json"
    process = launch("generate", "--out", str(tmp_path / "data.h5"), "--n-samples", "3000",
                     "--n-times", "51", "--prefix-lengths", "10", "--workers", "1",
                     "--no-progress", "--status", str(status), cwd=tmp_path)
    seen = []
    while process.poll() is None:
        job = jobs.read_job(status, pid=process.pid)
        if job.written == jobs.RUNNING and (not seen or job.done != seen[-1]):
            seen.append(job.done)
        time.sleep(0.02)
    assert process.returncode == 0, process.stderr.read()
    job = jobs.read_job(status)
    assert job.state == job.written == jobs.FINISHED and job.message is None
    assert (job.done, job.total, job.unit, job.pid) == (3000, 3000, "samples", process.pid)
    assert job.fraction == 1.0 and job.started <= job.updated
    assert seen == sorted(seen) and len(seen) >= 2  # counts from the generator, rising


def test_a_failing_job_ends_failed_with_its_one_line_message(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"n_samples": 0}))
    process = launch("generate", "--config", str(config), "--out", str(tmp_path / "d.h5"),
                     "--status", str(tmp_path / "status.json"), cwd=tmp_path)
    assert process.wait(timeout=120) == 2
    job = jobs.read_job(tmp_path)
    assert job.state == jobs.FAILED and job.written == "failed"
    assert "got 0" in job.message and "\n" not in job.message
    assert job.message in process.stderr.read().decode()


def test_a_job_killed_hard_reads_as_crashed(tmp_path):
    status = tmp_path / "status.json"
    process = launch("generate", "--out", str(tmp_path / "data.h5"), "--n-samples", "200000",
                     "--workers", "1", "--no-progress", "--status", str(status), cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not status.exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    assert jobs.read_job(status).state == jobs.RUNNING
    process.send_signal(signal.SIGKILL)
    process.wait()
    job = jobs.read_job(status)
    assert job.written == jobs.RUNNING and job.state == jobs.CRASHED
    assert f"pid {process.pid}" in job.message and "killed" in job.message


def test_reader_without_a_state_file_uses_the_launched_pid(tmp_path):
    assert jobs.read_job(tmp_path) is None
    assert jobs.read_job(tmp_path, pid=os.getpid()).state == jobs.RUNNING
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    job = jobs.read_job(tmp_path, pid=process.pid)
    assert job.state == jobs.CRASHED and "before it reported" in job.message


def test_writer_context_records_the_end(tmp_path):
    with jobs.JobState(tmp_path / "a.json", "demo", unit="steps", total=4) as job:
        job.progress(2)
        assert jobs.read_job(tmp_path / "a.json").fraction == 0.5
    assert jobs.read_job(tmp_path / "a.json").state == jobs.FINISHED
    with pytest.raises(KeyboardInterrupt), jobs.JobState(tmp_path / "b.json", "demo"):
        raise KeyboardInterrupt
    assert jobs.read_job(tmp_path / "b.json").state == jobs.STOPPED
    with pytest.raises(ValueError), jobs.JobState(tmp_path / "c.json", "demo"):
        raise ValueError("bad thing\nsecond line")
    assert jobs.read_job(tmp_path / "c.json").message == "ValueError: bad thing"
    jobs.JobState(tmp_path / "d.json", "demo").end(jobs.FAILED, "never started")
    assert not (tmp_path / "d.json").exists()


def test_sharded_generation_reports_and_the_cli_reads_it(tmp_path):
    out = tmp_path / "shards"
    process = launch("generate", "--out", str(out), "--shards", "2", "--n-samples", "1500",
                     "--n-times", "51", "--prefix-lengths", "10", "--workers", "1",
                     "--no-progress", "--status", str(out / "status.json"), cwd=tmp_path)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = jobs.read_job(out)
    assert (job.state, job.done, job.total) == (jobs.FINISHED, 1500, 1500)
    shown = subprocess.run([sys.executable, "-m", "ei_keras.cli", "status", str(out)],
                           capture_output=True, text=True, env=dict(os.environ,
                                                                    PYTHONPATH=str(ROOT)))
    assert shown.returncode == 0 and shown.stdout.startswith(
        "generate: finished, 1500 of 1500 samples (100 %)")
