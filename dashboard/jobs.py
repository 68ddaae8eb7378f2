"""Background jobs: ``ei-keras generate`` and ``train`` (and, through
:mod:`dashboard.comparisons`, ``compare``) in their own processes.

Each job runs in its own session (closing the tab or restarting the dashboard does not
stop it) and its own new directory, with ``job.json`` (what was launched: argv, pid,
labels), its output log and the ``status.json`` the job writes itself
(:mod:`ei_keras.jobs`), which is all the dashboard reads of its state.
"""

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import streamlit as st

import ei_keras
from dashboard.cache import dataset_info
from dashboard.workspace import clean_name, folder, unique_dir
from ei_keras.config import resolve_dataset_config
from ei_keras.errors import EiKerasError
from ei_keras.fileio import write_json
from ei_keras.jobs import CRASHED, FAILED, FINISHED, RUNNING, STATE_FILE, STOPPED, read_job
from ei_keras.jsonutil import to_jsonable
from ei_keras.run_directory import read_history
from ei_keras.training import ANY_FORMAT, STOP_FILE, refused_start, resolve_config

LAUNCH_FILE = "job.json"
# How a job's end reads on the pages: a failure shows as crashed, with the job's message.
SHOWN = {RUNNING: RUNNING, FINISHED: FINISHED, STOPPED: STOPPED, FAILED: CRASHED,
         CRASHED: CRASHED}
# A training refused before its first epoch (ei_keras.training.refused_start).
REFUSED = "refused"


def _child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The package the server imported, also when it is not installed.
    package_root = str(Path(ei_keras.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def launch(argv, job_dir: Path, log_name: str, meta: dict) -> None:
    """Start ``ei-keras`` ``argv`` detached (own session), output to ``job_dir/log_name``;
    a thread reaps it when it ends."""
    argv = [sys.executable, "-m", "ei_keras.cli", *map(str, argv)]
    with open(job_dir / log_name, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=job_dir, env=_child_env(),
                                   start_new_session=True)
    write_json(job_dir / LAUNCH_FILE, to_jsonable(dict(
        meta, pid=process.pid, argv=argv, started=time.time(), log=log_name)))
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()


def read_json(path: Path, default):
    """The JSON in ``path``, or ``default`` if it is missing or torn."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def launch_record(job_dir: Path) -> dict:
    """What was launched in ``job_dir`` (``job.json``; {} if none)."""
    return read_json(job_dir / LAUNCH_FILE, {})


def log_tail(path, n_lines: int = 12) -> str:
    """The last lines of a job's log, progress-bar redraws collapsed (for an expander)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")[-20000:]
    except OSError:
        return ""
    lines = [line.split("\r")[-1] for line in text.split("\n")]
    return "\n".join([line for line in lines if line.strip()][-n_lines:])


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------

def start_generation(config: dict, name: str) -> Path:
    """Start ``ei-keras generate`` for ``config`` into ``datasets/<name>.h5``; the job dir.

    Raises EiKerasError for an invalid config or name, or a name already in use.
    """
    config = resolve_dataset_config(config)
    stem, problem = clean_name(name)
    if problem:
        raise EiKerasError(problem)
    out = folder("datasets") / f"{stem}.h5"
    if out.exists():
        raise EiKerasError(f"a dataset named {stem!r} exists already; choose another name")
    if any(job["state"] == RUNNING and job["out"] == str(out) for job in generation_jobs()):
        raise EiKerasError(f"a dataset named {stem!r} is being generated; choose another name")
    job_dir = unique_dir(folder("jobs"), f"generate-{stem}")
    write_json(job_dir / "config.json", config)
    launch(["generate", "--config", job_dir / "config.json", "--out", out, "--status",
            job_dir / STATE_FILE], job_dir, "log.txt",
           {"kind": "generate", "name": stem, "out": str(out), "n_samples": config["n_samples"]})
    return job_dir


def generation_job(job_dir) -> dict:
    """``state`` (running/finished/crashed), ``progress`` in [0, 1], ``message`` and, once
    ended, ``finished`` (its last state's time) of a generation job."""
    job_dir = Path(job_dir)
    meta = launch_record(job_dir)
    job = read_job(job_dir, pid=meta.get("pid"))
    state = SHOWN[job.state] if job else CRASHED
    info = {"dir": str(job_dir), "name": meta.get("name", job_dir.name), "out": meta.get("out"),
            "n_samples": meta.get("n_samples"), "started": meta.get("started"), "state": state,
            "progress": job.fraction if job else 0.0, "done": job.done if job else 0,
            "message": job.message if job else "the job left no state",
            "finished": job.updated if job and state != RUNNING else None}
    if state == RUNNING:
        info["message"] = (f"simulated {job.done:,} of {job.total:,} samples" if job.total
                           else "starting (loading the simulator)…")
    return info


def generation_jobs(keep_finished_s: float = 3600.0) -> list[dict]:
    """Every generation job of the workspace, newest first (finished jobs are forgotten
    after ``keep_finished_s``; their datasets stay)."""
    dirs = sorted((d for d in folder("jobs").iterdir() if (d / LAUNCH_FILE).exists()),
                  key=lambda d: d.name, reverse=True)
    jobs = []
    for job in map(generation_job, dirs):
        if job["state"] == FINISHED and time.time() - (job["started"] or 0) > keep_finished_s:
            dismiss_job(job["dir"])
        else:
            jobs.append(job)
    return jobs


def dismiss_job(job_dir) -> None:
    """Forget an ended generation job (its dataset, if any, stays)."""
    job_dir = Path(job_dir)
    if job_dir.parent != folder("jobs"):
        return
    for path in job_dir.iterdir():
        path.unlink(missing_ok=True)
    job_dir.rmdir()


def suggest_name(stem="dataset") -> str:
    """A dataset name not used in the workspace yet: ``dataset``, ``dataset2``, …"""
    taken = {path.stem for path in folder("datasets").glob("*.h5")}
    taken |= {job["name"] for job in generation_jobs() if job["state"] == RUNNING}
    number = 1
    while (name := stem if number == 1 else f"{stem}{number}") in taken:
        number += 1
    return name


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

def prefix_text(prefix_length) -> str:
    """``30`` for a prefix length, ``any`` for :data:`ANY_FORMAT` (as ``--prefix-length``)."""
    return ANY_FORMAT if prefix_length == ANY_FORMAT else f"{float(prefix_length):g}"


def start_training(dataset, prefix_length, preset, overrides=None) -> Path:
    """Launch ``ei-keras train`` in its own process and unique run directory.

    ``prefix_length`` is a prefix length of the dataset or :data:`ANY_FORMAT`. Raises
    EiKerasError for a bad dataset or prefix, ConfigError for an invalid setting.
    """
    overrides = dict(overrides or {})
    resolve_config(preset, **overrides)  # a ConfigError names a bad setting
    info = dataset_info(dataset)
    if info["error"]:
        raise EiKerasError(info["error"])
    if prefix_length == ANY_FORMAT:
        if not info["any_format"]:
            raise EiKerasError(f"dataset {info['name']} has no any-format traces (generate one "
                               "with “Also any-format traces” on the Data page)")
    elif not any(math.isclose(float(prefix_length), length)
                 for length in info["prefix_lengths"]):
        lengths = ", ".join(f"{length:g}" for length in info["prefix_lengths"])
        raise EiKerasError(f"dataset {info['name']} has no {float(prefix_length):g} s prefix "
                           f"(it has {lengths} s)")
    else:
        prefix_length = float(prefix_length)
    unit = "" if prefix_length == ANY_FORMAT else "s"
    run_dir = unique_dir(folder("runs"), f"{preset}-{prefix_text(prefix_length)}{unit}")
    argv = ["train", "--data", dataset, "--prefix-length", prefix_text(prefix_length),
            "--preset", preset, "--out", run_dir]
    if overrides:
        write_json(run_dir / "overrides.json", overrides)
        argv += ["--config", run_dir / "overrides.json"]
    launch(argv, run_dir, "train.log", {
        "kind": "train", "dataset": str(dataset), "dataset_name": info["name"],
        "prefix_length": prefix_length, "preset": preset, "overrides": overrides})
    return run_dir


def run_info(run_dir) -> dict:
    """Everything the Train page shows about a run: ``state`` (running / finished /
    stopped / crashed / refused), ``message`` (why it crashed or was refused before its
    first epoch), ``detail``, ``epoch``/``epochs``,
    ``batch``/``steps``, the best score and model, the history."""
    run_dir = Path(run_dir)
    meta = launch_record(run_dir)
    job = read_job(run_dir, pid=meta.get("pid"))
    fields = job.fields if job else {}
    history = read_history(run_dir)
    best = run_dir / "best.keras"
    info = {
        "id": run_dir.name, "dir": str(run_dir), "dataset": meta.get("dataset_name", "?"),
        "prefix_length": meta.get("prefix_length"), "preset": meta.get("preset", "?"),
        "started": meta.get("started"), "history": history,
        "epoch": history[-1]["epoch"] if history else 0,
        "epochs": fields.get("epochs") or (meta.get("overrides") or {}).get("epochs"),
        "best_val_loss": fields.get("best_val_loss"), "best_epoch": fields.get("best_epoch"),
        "best_model": str(best) if best.exists() else None, "message": None, "detail": None,
        "batch": fields.get("batch"), "steps": fields.get("steps"),
        "stop_requested": (run_dir / STOP_FILE).exists(),
        "warmup_epochs": _warmup_epochs(run_dir),
        "state": SHOWN[job.state] if job else CRASHED,
    }
    if job is None:
        info["message"] = "the run left no state (status.json)"
    elif info["state"] == RUNNING:
        if not fields:
            info["detail"] = "starting (loading Keras and the data)…"
        elif info["stop_requested"]:
            info["detail"] = "stopping at the end of the current batch…"
    elif job.written == "early_stopped":
        info["detail"] = f"early stopping after epoch {info['epoch']}"
    elif refused_start(run_dir):
        info["state"], info["message"] = REFUSED, job.message
    elif info["state"] == CRASHED:
        info["message"] = (f"training failed: {job.message}" if job.state == FAILED
                           else job.message)
        info["log_tail"] = log_tail(run_dir / meta.get("log", "train.log"))
    return info


def _warmup_epochs(run_dir: Path) -> int:
    config = read_json(run_dir / "config.json", {})
    return int(((config or {}).get("train") or {}).get("warmup_epochs") or 0)


def list_runs() -> list[dict]:
    """Every run directory made by the dashboard or ``ei-keras train``, newest first."""
    dirs = [d for d in folder("runs").iterdir()
            if (d / LAUNCH_FILE).exists() or (d / "config.json").exists()]
    return [run_info(d) for d in sorted(dirs, key=lambda d: d.name, reverse=True)]


def request_stop(run_dir) -> None:
    """Ask a run to end cleanly after the current batch (it keeps its best model)."""
    (Path(run_dir) / STOP_FILE).touch()


def select_job(label, jobs_listed, page) -> dict:
    """A page's job selector (key ``PAGE_view``) over ``jobs_listed`` (dicts with ``id``,
    newest first); the chosen one. Drawn again, it keeps the job the user last chose
    (``PAGE_selected``) while it exists, else shows the newest."""
    ids = [job["id"] for job in jobs_listed]
    state = st.session_state
    if state.get(f"{page}_view") not in ids:  # back on the page, or the job is gone
        selected = state.get(f"{page}_selected")
        state[f"{page}_view"] = selected if selected in ids else ids[0]
    state[f"{page}_selected"] = st.selectbox(label, ids, key=f"{page}_view")
    return jobs_listed[ids.index(state[f"{page}_selected"])]


def show_job(page, job_id):
    """Make a page's job selector show ``job_id`` (a job just started) from now on."""
    st.session_state[f"{page}_selected"] = st.session_state[f"{page}_view"] = job_id
