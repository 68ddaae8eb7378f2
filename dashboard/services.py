"""Everything the dashboard pages call: workspace, cached loaders, subprocess jobs, analysis.

Pages only lay out widgets; they call the functions here. Long jobs (dataset generation,
training) run as separate ``ei-keras`` processes in their own session, so closing the tab
or restarting the dashboard does not kill them; each job has its own directory (created
with a unique name, never reused), so two browser sessions cannot clobber each other.

Workspace (``EI_KERAS_WORKSPACE``, default ``./workspace``)::

    datasets/<name>.h5          datasets (``ei-keras generate``)
    jobs/<id>/                  one generation job: config.json, job.json, log.txt, exit_code
    runs/<id>/                  one training run (see ``ei_keras.training``) plus
                                job.json, train.log and exit_code written by the dashboard
    uploads/<sha>.keras         uploaded models, by content hash
"""

import hashlib
import json
import math
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import streamlit as st
from scipy.special import ndtri

import ei_keras
from ei_keras.config import resolve_dataset_config
from ei_keras.data import (
    describe_dataset,
    generate_dataset,
    load_any_format,
    load_prefix,
    load_trajectories,
)
from ei_keras.data.generate import ANY_FORMAT_GROUP, reading_grids
from ei_keras.data.load import open_dataset
from ei_keras.errors import EiKerasError
from ei_keras.inference import forecast, infer, load_model, refine
from ei_keras.inference.information import attention_agreement, reading_information
from ei_keras.inference.least_squares import predict_readings, validate_trace
from ei_keras.inference.model_file import MAX_ARCHIVE_MB, check_model_archive
from ei_keras.inference.trace_csv import read_trace_csv
from ei_keras.targets import forward_transform
from ei_keras.models import model_info
from ei_keras.simulation import KNOWN_NAMES, LABELS, LATENT_NAMES, UNITS
from ei_keras.simulation.measurement import add_offset_and_noise, probe_response
from ei_keras.simulation.priors import DEFAULT_PARAM_RANGES, sample_priors, simulator_conditions
from ei_keras.training import ANY_FORMAT  # the traces of every length and reading rate

WORKSPACE_ENV = "EI_KERAS_WORKSPACE"
DEMO_NAME = "demo"
DEMO_SAMPLES = 300
DEMO_SEED = 1
# Uploads (models and CSV traces): the bound check_model_archive puts on a model's
# entries, so no upload the loader would refuse for its size is accepted.
MAX_UPLOAD_MB = MAX_ARCHIVE_MB
# Process states shown to users.
RUNNING, FINISHED, STOPPED, CRASHED = "running", "finished", "stopped", "crashed"

def label(name):
    """Human label with unit, e.g. ``Volume [L]``."""
    unit = UNITS.get(name, "")
    return f"{LABELS.get(name, name)} [{unit}]" if unit else LABELS.get(name, name)


# ---------------------------------------------------------------------------------------
# Workspace
# ---------------------------------------------------------------------------------------

def workspace() -> Path:
    """The workspace folder (``$EI_KERAS_WORKSPACE`` or ``./workspace``), created."""
    root = Path(os.environ.get(WORKSPACE_ENV) or "workspace").expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _sub(name) -> Path:
    path = workspace() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def datasets_dir() -> Path:
    return _sub("datasets")


def runs_dir() -> Path:
    return _sub("runs")


def jobs_dir() -> Path:
    return _sub("jobs")


def uploads_dir() -> Path:
    return _sub("uploads")


def _unique_dir(parent: Path, stem: str) -> Path:
    """A new directory ``parent/<time>-<stem>-<random>``; never one that existed."""
    while True:
        path = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{secrets.token_hex(3)}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


def _write_json(path: Path, payload) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


# ---------------------------------------------------------------------------------------
# Dataset configuration (Data page)
# ---------------------------------------------------------------------------------------

def default_config() -> dict:
    """A fresh copy of the full default dataset config."""
    return resolve_dataset_config({})


def field_error(partial) -> str | None:
    """The validation message for a partial config (one field), or None when it is valid.

    The message is the one ``resolve_dataset_config`` gives, which names the field, the
    value received and what is allowed.
    """
    try:
        resolve_dataset_config(partial)
    except EiKerasError as error:
        return str(error)
    return None


def parse_numbers(text, field) -> tuple[list | None, str | None]:
    """``"10, 30 60"`` → ``[10.0, 30.0, 60.0]``; or ``(None, message)``."""
    parts = [part for part in re.split(r"[,;\s]+", str(text).strip()) if part]
    try:
        return [float(part) for part in parts], None
    except ValueError:
        return None, (f"config field '{field}': got {text!r}; allowed: numbers separated by "
                      "commas, e.g. 10, 30, 60")


def config_error(config) -> str | None:
    """Validation message of a whole config, or None."""
    return field_error(config)


def resolve(config) -> dict:
    """The full validated config (see ``ei_keras.config.resolve_dataset_config``)."""
    return resolve_dataset_config(config)


@st.cache_data(show_spinner=False, max_entries=16)
def preview(config_json: str, n_cases: int = 4, max_trajectory_points: int = 1001) -> dict:
    """A few cases simulated exactly as ``generate_dataset`` would (not the same draws).

    Returns a dict with ``trajectory`` (``t``, ``pH_true``, ``pH_measured``), ``prefixes``
    (prefix length → ``t``, ``pH``) and ``parameters`` (one dict per case).
    """
    config = resolve_dataset_config(json.loads(config_json))
    config = dict(config, n_times=min(config["n_times"], max_trajectory_points))
    rng = np.random.default_rng(config["seed"])
    model = config["measurement_model"]
    samples = sample_priors(rng, n_cases, config["param_ranges"],
                            use_probe_lag=model["use_probe_lag"], use_offset=model["use_offset"])
    grids = reading_grids(config)
    times, inverse = np.unique(np.concatenate(list(grids.values())), return_inverse=True)
    true_pH, lagged = probe_response(simulator_conditions(samples), times,
                                     tau_probe=samples["tau_probe"])
    measured = add_offset_and_noise(lagged, pH_offset=samples["pH_offset"],
                                    noise_std=model["noise_std"], rng=rng,
                                    add_noise=model["add_noise"])
    columns, offset = {}, 0
    for group, grid in grids.items():
        columns[group] = inverse[offset:offset + len(grid)]
        offset += len(grid)
    traj = columns.pop("trajectory")
    prefixes = {}
    for length in config["prefix_lengths"]:
        group = next(g for g, grid in grids.items() if g != "trajectory"
                     and math.isclose(grid[-1], length))
        prefixes[float(length)] = {"t": grids[group], "pH": measured[:, columns[group]]}
    parameters = [{name: float(samples[name][i]) for name in KNOWN_NAMES + LATENT_NAMES}
                  for i in range(n_cases)]
    return {"trajectory": {"t": grids["trajectory"], "pH_true": true_pH[:, traj],
                           "pH_measured": measured[:, traj]},
            "prefixes": prefixes, "parameters": parameters}


# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------

def _mtime(path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=256)
def _dataset_info(path: str, mtime: float) -> dict:
    info = {"name": Path(path).stem, "path": path, "size_mb": os.path.getsize(path) / 1e6}
    try:
        with open_dataset(path) as handle:  # checks format and, for shards, the manifest
            config = json.loads(handle.attrs["config"])
            info.update(
                n_samples=int(handle["known"].shape[0]), config=config,
                prefix_lengths=sorted(float(group.attrs["prefix_length"])
                                      for group in handle.values()
                                      if isinstance(group, h5py.Group)
                                      and "prefix_length" in group.attrs),
                targets=[str(name) for name in handle["targets"].attrs["names"]],
                any_format=ANY_FORMAT_GROUP in handle, seed=int(config["seed"]), error=None)
    except (OSError, KeyError, ValueError) as error:  # EiKerasError is a ValueError
        info.update(error=f"{Path(path).name} is not a readable ei_keras dataset ({error})",
                    n_samples=0, prefix_lengths=[], targets=[], config={}, seed=None,
                    any_format=False)
    return info


def dataset_info(path) -> dict:
    """Name, path, size, samples, prefix lengths, whether it holds any-format traces
    (``any_format``), targets, seed and config of a dataset."""
    return _dataset_info(str(path), _mtime(path))


def list_datasets() -> list[dict]:
    """Every ``.h5`` in the workspace's datasets folder, newest first."""
    paths = sorted(datasets_dir().glob("*.h5"), key=_mtime, reverse=True)
    return [dataset_info(path) for path in paths]


@st.cache_data(show_spinner=False, max_entries=64)
def _describe(path: str, mtime: float) -> str:
    try:
        return describe_dataset(path)
    except EiKerasError as error:
        return str(error)


def describe(path) -> str:
    """``ei_keras.data.describe_dataset`` text (or the reason it cannot be read)."""
    return _describe(str(path), _mtime(path))


_DEMO_LOCK = threading.Lock()


def ensure_demo_dataset() -> Path | None:
    """Generate a small demo dataset (in-process, about a second) if there is none.

    Returns the path created, or None when the workspace already holds a dataset.
    """
    with _DEMO_LOCK:
        if any(datasets_dir().glob("*.h5")):
            return None
        path = datasets_dir() / f"{DEMO_NAME}.h5"
        # One chunk and one worker: no process pool inside the server.
        generate_dataset({"n_samples": DEMO_SAMPLES, "seed": DEMO_SEED}, path, workers=1,
                         progress=False)
        _dataset_info.clear()
        return path


@st.cache_data(show_spinner=False, max_entries=8)
def _prefix(path: str, mtime: float, prefix_length: float):
    return load_prefix(path, prefix_length)


def load_prefix_cached(path, prefix_length):
    """``ei_keras.data.load_prefix``, cached per file version."""
    return _prefix(str(path), _mtime(path), float(prefix_length))


# A resource, not data: any-format arrays are padded to the longest trace, and
# cache_data would copy them on every rerun. Callers never modify them.
@st.cache_resource(show_spinner=False, max_entries=2)
def _any_format(path: str, mtime: float):
    return load_any_format(path)


def load_any_format_cached(path):
    """``ei_keras.data.load_any_format`` (NaN-padded traces), cached per file version."""
    return _any_format(str(path), _mtime(path))


@st.cache_data(show_spinner=False, max_entries=8)
def _trajectories(path: str, mtime: float):
    return load_trajectories(path)


def load_trajectories_cached(path):
    return _trajectories(str(path), _mtime(path))


def suggest_name(stem="dataset") -> str:
    """A dataset name not used in the workspace yet: ``dataset``, ``dataset2``, …"""
    taken = {path.stem for path in datasets_dir().glob("*.h5")}
    taken |= {job["name"] for job in generation_jobs() if job["state"] == RUNNING}
    number = 1
    while (name := stem if number == 1 else f"{stem}{number}") in taken:
        number += 1
    return name


def clean_name(name) -> tuple[str | None, str | None]:
    """A safe file stem from a user's dataset name, or ``(None, message)``."""
    stem = str(name).strip()
    stem = stem[:-3] if stem.lower().endswith(".h5") else stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", stem or ""):
        return None, ("dataset name: use 1–64 letters, digits, '_', '-' or '.', starting with "
                      f"a letter or digit; got {name!r}")
    return stem, None


# ---------------------------------------------------------------------------------------
# Subprocess jobs (generation and training)
# ---------------------------------------------------------------------------------------

_REAPERS = {}


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    # The package the server imported, also when it is not installed.
    package_root = str(Path(ei_keras.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _launch(argv, job_dir: Path, log_name: str, meta: dict) -> None:
    """Start ``argv`` detached (own session) with output to ``job_dir/log_name``."""
    with open(job_dir / log_name, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=job_dir, env=_child_env(),
                                   start_new_session=True)
    _write_json(job_dir / "job.json", dict(meta, pid=process.pid, argv=list(argv),
                                           started=time.time(), log=log_name))

    def reap():
        code = process.wait()
        (job_dir / "exit_code").write_text(str(code))

    thread = threading.Thread(target=reap, name=f"reap-{process.pid}", daemon=True)
    thread.start()
    _REAPERS[str(job_dir)] = (process, thread)


def _process_alive(pid, marker: str) -> bool:
    """Whether ``pid`` runs (not a zombie) with ``marker`` on its command line."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            return False
        return marker in cmdline
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def _exit_code(job_dir: Path):
    try:
        return int((job_dir / "exit_code").read_text().strip())
    except (OSError, ValueError):
        return None


def _job_alive(job_dir: Path, meta: dict) -> bool:
    if _exit_code(job_dir) is not None:
        return False
    entry = _REAPERS.get(str(job_dir))
    if entry is not None:
        return entry[0].poll() is None
    return _process_alive(meta.get("pid"), str(job_dir))


def read_log(path: Path, limit: int = 20000) -> str:
    """The last ``limit`` characters of a log, with progress-bar redraws collapsed."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - limit))
            text = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.split("\r")[-1] if line.split("\r")[-1].strip() else line.replace("\r", "")
             for line in text.split("\n")]
    return "\n".join(line for line in lines if line.strip())


_TRACEBACK_FRAME = re.compile(r"^(\s+|Traceback \(most recent call last\)|During handling|"
                              r"The above exception)")


def readable_error(log_text: str, exit_code=None) -> str:
    """One readable sentence of why a job failed, from its log; never a traceback."""
    lines = [line for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^ei-keras \w+: ", line):
            return line
    if any(line.startswith("Traceback") for line in lines):
        last = [line for line in lines if not _TRACEBACK_FRAME.match(line)]
        if last:
            return f"the process stopped with an error: {last[-1]}"
    if exit_code is not None and exit_code < 0:
        return (f"the process was killed by signal {-exit_code} (out of memory, or ended "
                "from outside)")
    if lines:
        return f"the process ended unexpectedly; its last message: {lines[-1]}"
    if exit_code is not None:
        return f"the process ended with exit status {exit_code} and wrote no log"
    return "the process ended without writing its results or a log"


def log_tail(log_text: str, n_lines: int = 12) -> str:
    """The last lines of a log without traceback frames (for an expander)."""
    lines = [line for line in log_text.splitlines()
             if line.strip() and not _TRACEBACK_FRAME.match(line)]
    return "\n".join(lines[-n_lines:])


# ---------------------------------------------------------------------------------------
# Generation jobs
# ---------------------------------------------------------------------------------------

_TQDM = re.compile(r"(\d+)/(\d+) \[")


def start_generation(config: dict, name: str) -> Path:
    """Start ``ei-keras generate`` for ``config`` into ``datasets/<name>.h5``; the job dir.

    Raises EiKerasError for an invalid config or name, or a name already in use.
    """
    config = resolve_dataset_config(config)
    stem, problem = clean_name(name)
    if problem:
        raise EiKerasError(problem)
    out = datasets_dir() / f"{stem}.h5"
    if out.exists():
        raise EiKerasError(f"a dataset named {stem!r} exists already; choose another name")
    for job in generation_jobs():
        if job["state"] == RUNNING and job["out"] == str(out):
            raise EiKerasError(f"a dataset named {stem!r} is being generated; choose another name")
    job_dir = _unique_dir(jobs_dir(), f"generate-{stem}")
    _write_json(job_dir / "config.json", config)
    argv = [sys.executable, "-m", "ei_keras.cli", "generate", "--config",
            str(job_dir / "config.json"), "--out", str(out)]
    _launch(argv, job_dir, "log.txt", {"kind": "generate", "name": stem, "out": str(out),
                                       "n_samples": config["n_samples"]})
    return job_dir


def generation_job(job_dir) -> dict:
    """State (running/finished/crashed), progress in [0, 1], message and, once it ended,
    ``finished`` (the time its exit status was written) of a job."""
    job_dir = Path(job_dir)
    meta = _read_json(job_dir / "job.json", {}) or {}
    log = read_log(job_dir / "log.txt")
    matches = _TQDM.findall(log)
    done, total = (int(matches[-1][0]), int(matches[-1][1])) if matches else (0, 0)
    info = {"dir": str(job_dir), "name": meta.get("name", job_dir.name), "out": meta.get("out"),
            "n_samples": meta.get("n_samples"), "started": meta.get("started"),
            "progress": done / total if total else 0.0, "done": done, "message": None,
            "finished": _mtime(job_dir / "exit_code") or None}
    if _job_alive(job_dir, meta):
        info["state"] = RUNNING
        info["message"] = (f"simulated {done} of {total} samples" if total else
                           "starting (loading the simulator)…")
    elif _exit_code(job_dir) == 0 and meta.get("out") and Path(meta["out"]).exists():
        info.update(state=FINISHED, progress=1.0)
    else:
        info.update(state=CRASHED, message=readable_error(log, _exit_code(job_dir)))
    return info


def generation_jobs(keep_finished_s: float = 3600.0) -> list[dict]:
    """Every generation job of the workspace, newest first (finished jobs are forgotten
    after ``keep_finished_s``; their datasets stay)."""
    dirs = sorted((d for d in jobs_dir().iterdir() if d.is_dir() and (d / "job.json").exists()),
                  key=lambda d: d.name, reverse=True)
    jobs = []
    for job in map(generation_job, dirs):
        if job["state"] == FINISHED and time.time() - (job["started"] or 0) > keep_finished_s:
            dismiss_job(job["dir"])
        else:
            jobs.append(job)
    return jobs


def dismiss_job(job_dir) -> None:
    """Forget a finished or failed job (its dataset, if any, stays)."""
    job_dir = Path(job_dir)
    if job_dir.parent != jobs_dir():
        return
    for path in job_dir.iterdir():
        path.unlink(missing_ok=True)
    job_dir.rmdir()


def dataset_written(job: dict) -> None:
    """Forget cached dataset listings after a job wrote a file."""
    _dataset_info.clear()
    _describe.clear()


# ---------------------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------------------

def _training():
    from ei_keras import training

    return training


# Hyperparameters offered on the Train page: name → (kind, label, help).
TRAIN_FIELDS = {
    "epochs": ("int", "Epochs (maximum)", "Training ends earlier when early stopping triggers."),
    "batch_size": ("int", "Batch size", "Samples per gradient step."),
    "learning_rate": ("float", "Learning rate", "Peak rate, reached at the end of warmup."),
    "weight_decay": ("float", "Weight decay", "Decoupled AdamW weight decay (0: Adam)."),
    "global_clipnorm": ("float", "Gradient clip (global norm)", "0 disables clipping."),
    "warmup_epochs": ("int", "Warmup epochs", "Linear warmup of the learning rate (0: none)."),
    "plateau_factor": ("float", "Plateau factor", "Learning-rate multiplier at each cut."),
    "plateau_patience": ("int", "Plateau patience", "Epochs without val_loss improvement "
                         "before a cut (counted after warmup)."),
    "early_stopping_patience": ("int", "Early-stopping patience",
                                "Epochs without improvement before stopping."),
    "variance_weight": ("float", "Variance penalty weight", "0: plain Gaussian NLL."),
    "val_fraction": ("float", "Validation fraction", "Share of samples held out."),
    "seed": ("int", "Seed", "Split, initial weights, shuffling, dropout."),
}


def presets() -> list[str]:
    return list(_training().PRESETS)


def preset_defaults(preset) -> dict:
    """Every :data:`TRAIN_FIELDS` value of a preset (plus architecture and pooling)."""
    config = _training().resolve_config(preset).to_dict()
    values = {name: config[name] for name in TRAIN_FIELDS}
    values["global_clipnorm"] = values["global_clipnorm"] or 0.0
    values.update(architecture=config["architecture"], pooling=config["pooling"])
    return values


def architectures() -> list[str]:
    from ei_keras.models import ARCHITECTURES

    return list(ARCHITECTURES)


def training_overrides(preset, values: dict) -> dict:
    """The settings that differ from the preset (clip 0 → None)."""
    values = dict(values)
    if "global_clipnorm" in values and not values["global_clipnorm"]:
        values["global_clipnorm"] = None
    base = _training().resolve_config(preset).to_dict()
    return {key: value for key, value in values.items() if base.get(key) != value}


def training_error(preset, overrides: dict) -> str | None:
    """The validation message of a training configuration, or None."""
    try:
        _training().resolve_config(preset, **overrides)
    except (ValueError, TypeError) as error:
        return str(error)
    return None


def prefix_text(prefix_length) -> str:
    """``30`` for a prefix length, ``any`` for :data:`ANY_FORMAT` (as ``--prefix-length``)."""
    return ANY_FORMAT if prefix_length == ANY_FORMAT else f"{float(prefix_length):g}"


def _train_argv(dataset, prefix_length, preset, overrides, run_dir):
    argv = [sys.executable, "-m", "ei_keras.cli", "train", "--data", str(dataset),
            "--prefix-length", prefix_text(prefix_length), "--preset", preset,
            "--out", str(run_dir)]
    if overrides:
        _write_json(run_dir / "overrides.json", overrides)
        argv += ["--config", str(run_dir / "overrides.json")]
    return argv


def start_training(dataset, prefix_length, preset, overrides=None) -> Path:
    """Launch ``ei-keras train`` in its own process and unique run directory.

    ``prefix_length`` is a prefix length of the dataset or :data:`ANY_FORMAT` (its traces
    of every length and reading rate). Raises EiKerasError for a bad dataset/prefix or an
    invalid setting.
    """
    overrides = dict(overrides or {})
    problem = training_error(preset, overrides)
    if problem:
        raise EiKerasError(problem)
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
    run_dir = _unique_dir(runs_dir(), f"{preset}-{prefix_text(prefix_length)}"
                          f"{'' if prefix_length == ANY_FORMAT else 's'}")
    argv = _train_argv(dataset, prefix_length, preset, overrides, run_dir)
    _launch(argv, run_dir, "train.log", {
        "kind": "train", "dataset": str(dataset), "dataset_name": info["name"],
        "prefix_length": prefix_length, "preset": preset, "overrides": overrides})
    return run_dir


def read_history(run_dir) -> list[dict]:
    """Per-epoch records of a run (skipping a line still being written)."""
    records = []
    try:
        with open(Path(run_dir) / "history.jsonl", encoding="utf-8") as stream:
            for line in stream:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return records


def run_info(run_dir) -> dict:
    """Everything the Train page shows about a run.

    ``state`` is running / finished / stopped / crashed; ``message`` explains a crash in one
    readable line; ``epoch``/``epochs`` the progress; ``best_model`` the best ``.keras``.
    """
    run_dir = Path(run_dir)
    meta = _read_json(run_dir / "job.json", {}) or {}
    status = _read_json(run_dir / "status.json", {}) or {}
    config = _read_json(run_dir / "config.json", {}) or {}
    history = read_history(run_dir)
    best = run_dir / "best.keras"
    epochs = status.get("epochs") or (config.get("train") or {}).get("epochs") \
        or (meta.get("overrides") or {}).get("epochs")
    info = {
        "id": run_dir.name, "dir": str(run_dir), "dataset": meta.get("dataset_name", "?"),
        "prefix_length": meta.get("prefix_length"), "preset": meta.get("preset", "?"),
        "started": meta.get("started"), "history": history,
        "epoch": history[-1]["epoch"] if history else 0, "epochs": epochs,
        "best_val_loss": status.get("best_val_loss"), "best_epoch": status.get("best_epoch"),
        "best_model": str(best) if best.exists() else None, "message": None, "detail": None,
        "batch": status.get("batch"), "steps": status.get("steps"),
        "stop_requested": (run_dir / _training().STOP_FILE).exists(),
        "warmup_epochs": (config.get("train") or {}).get("warmup_epochs", 0),
    }
    state = status.get("state")
    if _job_alive(run_dir, meta):
        info["state"] = RUNNING
        if not status:
            info["detail"] = "starting (loading Keras and the data)…"
        elif info["stop_requested"]:
            info["detail"] = "stopping at the end of the current batch…"
        return info
    if state in ("finished", "early_stopped"):
        info["state"] = FINISHED
        if state == "early_stopped":
            info["detail"] = f"early stopping after epoch {info['epoch']}"
    elif state == "stopped":
        info["state"] = STOPPED
    else:
        info["state"] = CRASHED
        log = read_log(run_dir / "train.log")
        if state == "failed" and status.get("message"):
            info["message"] = f"training failed: {status['message']}"
        else:
            info["message"] = readable_error(log, _exit_code(run_dir))
        info["log_tail"] = log_tail(log)
    return info


def list_runs() -> list[dict]:
    """Every run directory made by the dashboard or ``ei-keras train``, newest first."""
    dirs = [d for d in runs_dir().iterdir()
            if d.is_dir() and ((d / "job.json").exists() or (d / "config.json").exists())]
    return [run_info(d) for d in sorted(dirs, key=lambda d: d.name, reverse=True)]


def request_stop(run_dir) -> None:
    """Ask a run to end cleanly after the current batch (it keeps its best model)."""
    (Path(run_dir) / _training().STOP_FILE).touch()


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

def default_model() -> Path | None:
    """The shipped model's path when this ei_keras has one, else None."""
    finder = getattr(ei_keras, "default_model_path", None)
    if finder is None:
        try:
            from ei_keras.inference import default_model_path as finder
        except ImportError:
            return None
    try:
        path = Path(finder())
    except (EiKerasError, OSError):
        return None
    return path if path.is_file() else None


def available_models() -> list[dict]:
    """Models to analyse with: the shipped default, then the best model of each run."""
    models = []
    path = default_model()
    if path is not None:
        models.append({"label": "Shipped default model", "path": str(path), "truth": None})
    for run in list_runs():
        if run["best_model"] and run["state"] != RUNNING:
            text = f"Run {run['id']} ({run['state']}, {run['dataset']}"
            if run["best_val_loss"] is not None:
                text += f", best val_loss {run['best_val_loss']:.3g}"
            models.append({"label": text + ")", "path": run["best_model"]})
    return models


@st.cache_resource(show_spinner=False, max_entries=8)
def _model(path: str, mtime: float):
    return load_model(path)


def get_model(path):
    """A loaded model (safe mode, cached per file version); EiKerasError if unreadable."""
    return _model(str(path), _mtime(path))


def save_upload(data: bytes, filename: str) -> Path:
    """Store an uploaded ``.keras`` file under its content hash; check size and type."""
    if not str(filename).lower().endswith(".keras"):
        raise EiKerasError(f"{filename}: upload a Keras model file ending in .keras")
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        raise EiKerasError(f"{filename} is {len(data) / 1e6:.0f} MB; the limit is "
                           f"{MAX_UPLOAD_MB} MB")
    if not data.startswith(b"PK"):
        raise EiKerasError(f"{filename} is not a .keras file (a .keras file is a zip archive)")
    path = uploads_dir() / f"{hashlib.sha256(data).hexdigest()[:20]}.keras"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
        tmp.write_bytes(data)
        try:  # the zip directory only: entry sizes and structure, nothing decompressed
            check_model_archive(tmp)
        except EiKerasError as error:
            tmp.unlink(missing_ok=True)
            raise EiKerasError(str(error).replace(str(tmp), str(filename))) from None
        os.replace(tmp, path)
    return path


def describe_model(model) -> dict:
    """What a model reads and infers (see ``ei_keras.models.model_info``).

    ``any_format``: it reads traces of any length and reading rate; ``domain``: the
    ranges and formats it was trained on (None for models saved before the domain guard);
    ``prefix_length``: the longest time it was trained on [s]; plus target names, their
    transforms and bounds, known inputs and the number of weights.
    """
    info = model_info(model)
    return {"prefix_length": float(info["time_scale"]), "any_format": bool(info["any_format"]),
            "domain": info["domain"], "target_names": list(info["target_names"]),
            "transforms": list(info["transforms"]), "bounds": list(info["bounds"]),
            "known_names": list(info["known_names"]), "n_params": int(model.count_params())}


def model_reads(info: dict) -> str:
    """One sentence: the traces a model was trained on (``info`` from describe_model)."""
    domain, longest = info["domain"], info["prefix_length"]
    if not domain:
        return (f"Reads traces up to **{longest:g} s** (a model saved before the domain "
                "guard: only the pH range and the fit to the chemistry are checked).")
    (short, long_), (fine, coarse) = domain["prefix_length_s"], domain["reading_interval_s"]
    if info["any_format"]:
        return (f"Reads **any trace of 3 or more readings**: trained on {short:.3g}–"
                f"{long_:.3g} s at one reading every {fine:.3g}–{coarse:.3g} s; a longer trace "
                f"is cut at {long_:.3g} s, and any trace outside these formats is flagged.")
    return (f"Trained on **{long_:g} s** traces of {domain['readings'][1]} readings (one every "
            f"{coarse:.3g} s); reads traces up to {long_:g} s.")


# ---------------------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------------------

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


def reading_times(length_s: float, interval_s: float) -> np.ndarray:
    """Reading times 0, dt, 2 dt, … up to ``length_s`` (the last within 1e-6 of a step)."""
    if not (np.isfinite(length_s) and np.isfinite(interval_s) and length_s > 0
            and interval_s > 0):
        raise EiKerasError(f"the trace length and reading interval must be > 0; got "
                           f"{length_s!r} s and {interval_s!r} s")
    n = int(math.floor(length_s / interval_s + 1e-6)) + 1
    return np.arange(n) * float(interval_s)


def dataset_formats(dataset: dict, info: dict) -> list:
    """The traces of a dataset the Analyse page offers: its any-format traces
    (:data:`ANY_FORMAT`, when it has them) and each prefix length; the model's own kind
    first (any-format traces for an any-format model, else the longest prefix it was
    trained for). The package, not this list, decides what a model can answer."""
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


def _dataset_traces(path, option):
    return (load_any_format_cached(path) if option == ANY_FORMAT
            else load_prefix_cached(path, option))


def dataset_trace(path, option, index) -> dict:
    """Case ``index`` of a dataset (a prefix length or :data:`ANY_FORMAT`): readings
    (without padding), known inputs, truth and full trajectory."""
    data = _dataset_traces(path, option)
    if not 0 <= index < len(data.pH):
        raise EiKerasError(f"case {index} is out of range: the dataset has {len(data.pH)} cases")
    t, pH = data.t[index].astype(float), data.pH[index].astype(float)
    valid = np.isfinite(t) & np.isfinite(pH)  # any-format traces are NaN-padded
    trace = {
        "source": f"{Path(path).stem}, case {index}", "t": t[valid], "pH": pH[valid],
        "known": {name: float(data.known[index, j]) for j, name in enumerate(data.known_names)},
        "truth": {name: float(data.latent[index, j]) for j, name in enumerate(data.latent_names)},
    }
    trajectories = load_trajectories_cached(path)
    trace["trajectory"] = {"t": trajectories.t.astype(float),
                           "pH": trajectories.pH_measured[index].astype(float)}
    return trace


def simulated_trace(known: dict, latent: dict, length_s: float, interval_s: float,
                    noise_std: float = 0.01, seed: int = 0, t_max: float = 2000.0) -> dict:
    """A fresh trace read every ``interval_s`` for ``length_s``: noise-free measured pH
    through lag and offset, plus noise.

    ``known`` holds the five known inputs (``initial_pH`` as measured); ``latent`` the four
    latent parameters. Raises EiKerasError for invalid values.
    """
    missing = [name for name in LATENT_NAMES if name not in latent]
    if missing:
        raise EiKerasError(f"simulated trace: missing {missing}")
    for name, value in {**known, **latent}.items():
        if not np.isfinite(value):
            raise EiKerasError(f"{label(name)} must be a finite number; got {value!r}")
    for name in ("substrate_mM", "grams_urease_powder", "volume_L", "activity"):
        if not (known | latent)[name] > 0:
            raise EiKerasError(f"{label(name)} must be > 0; got {(known | latent)[name]!r}")
    for name in ("k_d", "tau_probe"):
        if latent[name] < 0:
            raise EiKerasError(f"{label(name)} must be >= 0; got {latent[name]!r}")
    if not noise_std >= 0:
        raise EiKerasError(f"noise must be >= 0; got {noise_std!r}")
    t = reading_times(length_s, interval_s)
    grid = np.linspace(0.0, max(float(t_max), float(t[-1])), 401)
    draws = {name: np.array([float(latent[name])]) for name in LATENT_NAMES}
    clean = predict_readings(t, known, draws)[0]
    rng = np.random.default_rng(seed)
    pH = add_offset_and_noise(clean[None, :], pH_offset=0.0, noise_std=noise_std, rng=rng)[0]
    return {"source": "simulated", "t": t, "pH": pH, "known": dict(known),
            "truth": {name: float(latent[name]) for name in LATENT_NAMES},
            "trajectory": {"t": grid, "pH": predict_readings(grid, known, draws)[0]}}


def read_csv_trace(data: bytes, filename: str, *, minutes=False) -> tuple[np.ndarray, np.ndarray]:
    """(t [s], pH) from an uploaded CSV with time and pH columns (the package's reader,
    as ``ei-keras infer --csv``); EiKerasError in the dashboard's words if it is bad."""
    if len(data) > MAX_UPLOAD_MB * 1024 * 1024:
        raise EiKerasError(f"{filename} is larger than {MAX_UPLOAD_MB} MB")
    path = uploads_dir() / f"{hashlib.sha256(data).hexdigest()[:20]}.csv"
    path.write_bytes(data)
    try:
        return validate_trace(*read_trace_csv(path, minutes=minutes))
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error).replace(str(path), filename))) \
            from None


def csv_trace(t, pH, known: dict, filename="upload.csv") -> dict:
    """A trace from CSV readings, whole: ``infer`` cuts one longer than the model's
    trained maximum and says so in the domain report."""
    return {"source": filename, "t": np.asarray(t, dtype=float),
            "pH": np.asarray(pH, dtype=float), "known": dict(known), "truth": None,
            "trajectory": None}


# ---------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------

# The package's messages name its API and CLI options; the dashboard's controls instead.
_DASHBOARD_WORDS = (
    (re.compile(r"\s*Pass allow_extrapolation=True.*?(to get it anyway, flagged|$)"),
     " Tick “Allow extrapolation” to get an answer anyway, flagged as one."),
    (re.compile(r",?\s*\(CLI: --minutes\)"), " with the “Time in minutes” switch"),
    (re.compile(r";\s*name it with --[\w-]+-column"),
     "; name the columns in the header row, e.g. time and pH"),
    (re.compile(r"np\.float\d+\(([^)]*)\)"), r"\1"),
)


def in_dashboard_words(text: str) -> str:
    """A package message with its API/CLI hints replaced by the dashboard's controls and
    parameter names by their labels (``substrate_mM = 500`` → ``Urea (substrate) = 500 mM``)."""
    for pattern, words in _DASHBOARD_WORDS:
        text = pattern.sub(words, text)
    for name in KNOWN_NAMES + LATENT_NAMES:
        unit = f" {UNITS[name]}" if UNITS.get(name) else ""
        text = re.sub(rf"\b{name} = ([-+0-9.eE]+)", rf"{LABELS[name]} = \g<1>{unit}", text)
    return text


def _domain_in_words(domain: dict) -> dict:
    return dict(domain, flags=[in_dashboard_words(flag) for flag in domain["flags"]])


def analyse_trace(model, trace, *, allow_extrapolation=False) -> dict:
    """Posterior, attention, domain report and per-reading information of one trace.

    Returns ``posterior`` (per target one float per statistic, physical units),
    ``attention`` (one weight per reading; 0 on readings the model did not use),
    ``domain`` (see ``ei_keras.infer``, flags in the dashboard's words), ``used`` (the
    readings the model read: a trace past its trained maximum is cut by ``infer``),
    and from :func:`information_about`: ``information``, ``agreement``
    and ``information_note``. Raises EiKerasError (in the dashboard's words) when the
    package refuses the trace.
    """
    try:
        result = infer(model, trace["t"], trace["pH"], trace["known"],
                       allow_extrapolation=allow_extrapolation)
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None
    summary = {name: {key: float(values[0]) for key, values in stats.items()}
               for name, stats in result.items() if name not in ("attention", "domain")}
    domain = _domain_in_words(result["domain"])
    used = int(domain.get("readings", len(trace["t"])))
    attention = np.asarray(result["attention"][0], dtype=float)
    analysis = {"posterior": summary, "attention": attention, "domain": domain, "used": used}
    analysis.update(information_about(model, trace, summary, attention, used))
    return analysis


def information_about(model, trace, posterior, attention, used) -> dict:
    """What each of the first ``used`` readings tells about each parameter, at the
    posterior median, and how the attention ranks the same readings.

    Returns ``information`` (per target an array over the used readings, Fisher
    information in the network's space; see ``ei_keras.inference.information``),
    ``agreement`` (per target and ``"all"`` the Spearman correlation with the attention),
    and ``information_note`` (why they are None, or None).
    """
    info = describe_model(model)
    names = info["target_names"]
    noise = ((info["domain"] or {}).get("noise_std")
             or default_config()["measurement_model"]["noise_std"])
    try:
        information = reading_information(
            np.asarray(trace["t"][:used], dtype=float), trace["known"],
            {name: posterior[name]["median"] for name in names},
            dict(zip(names, info["transforms"])), dict(zip(names, info["bounds"])), noise)
    except EiKerasError as error:
        return {"information": None, "agreement": None,
                "information_note": ("the information per reading cannot be computed at "
                                     f"this posterior median ({error})")}
    return {"information": information,
            "agreement": attention_agreement(np.asarray(attention[:used]), information),
            "information_note": None}


def forecast_trace(model, trace, *, threshold=8.5, t_max=2000.0, n_draws=200, seed=0,
                   n_times=1001, allow_extrapolation=False) -> dict:
    """Fan chart and time to ``threshold`` of one trace (``ei_keras.forecast``; the fit
    to the chemistry was already checked by :func:`analyse_trace`)."""
    try:
        return forecast(model, trace["t"], trace["pH"], trace["known"], t_max=t_max,
                        n_times=n_times, threshold=threshold, n_draws=n_draws, seed=seed,
                        allow_extrapolation=allow_extrapolation, check_fit=False)[0]
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None


def exact_key(model_path, trace, *, allow_extrapolation=False) -> str:
    """What an exact check answers for: the model file (path and version), the trace's
    readings and known inputs, and the extrapolation switch, as one short string."""
    digest = hashlib.sha256()
    digest.update(f"{model_path}|{_mtime(model_path)}|{bool(allow_extrapolation)}|".encode())
    for name in ("t", "pH"):
        digest.update(np.ascontiguousarray(trace[name], dtype=float).tobytes())
    digest.update(json.dumps({k: float(v) for k, v in trace["known"].items()},
                             sort_keys=True).encode())
    return digest.hexdigest()[:24]


def exact_check(model, trace, *, n_samples=2000, seed=0, allow_extrapolation=False) -> dict:
    """The exact posterior of one trace beside the network's (``ei_keras.refine``).

    Returns per parameter the network infers ``exact`` and ``network`` summaries
    (``median, mean, std, lo/hi 50/90/95``, physical units), ``comparison`` per parameter,
    ``ess``, ``n_draws``, ``noise_std`` (the σ of the likelihood), ``seconds``, and
    ``verdict`` and ``reason`` (in the dashboard's words); the weighted draws are left
    out. Raises EiKerasError in the dashboard's words when the package refuses the trace
    or the computation fails.
    """
    try:
        result = refine(model, trace["t"], trace["pH"], trace["known"], n_samples=n_samples,
                        seed=seed, allow_extrapolation=allow_extrapolation)
    except EiKerasError as error:
        raise EiKerasError(in_dashboard_words(str(error))) from None
    except (ArithmeticError, ValueError) as error:  # numerical (LinAlgError too)
        raise EiKerasError(f"the exact posterior could not be computed "
                           f"({type(error).__name__}: {error})") from None
    diagnostics = result["diagnostics"]
    return {"exact": {name: result[name] for name in result["network"]},
            "network": result["network"], "comparison": result["comparison"],
            "ess": float(result["ess"]), "n_draws": int(diagnostics["n_draws"]),
            "noise_std": float(diagnostics["noise_std"]),
            "seconds": float(diagnostics["seconds"]), "verdict": result["verdict"],
            "reason": in_dashboard_words(result["reason"])}


def evaluate_on_dataset(model, path, option, n_max=300, batch=256, progress=None, *,
                        allow_extrapolation=False) -> dict:
    """Posterior of up to ``n_max`` cases of a dataset against the truth.

    ``option`` is a prefix length or :data:`ANY_FORMAT` (every case its own format, the
    batch NaN-padded as the package's loader returns it). Returns
    per target: ``truth``, ``median``, ``lo90``, ``hi90`` (physical units), ``transform``,
    and ``calibration`` (nominal levels in percent → observed coverage), computed from
    each case's Gaussian in the network's space (log10 for activity, logit over the prior
    range for bounded parameters). ``progress`` is called with the fraction done.
    """
    data = _dataset_traces(path, option)
    n = min(int(n_max), len(data.pH))
    info = describe_model(model)
    targets = info["target_names"]
    truth_columns = {name: j for j, name in enumerate(data.latent_names)}
    missing = [name for name in targets if name not in truth_columns]
    if missing:
        raise EiKerasError(f"the dataset has no truth for {missing}")
    chunks = [list(range(start, min(n, start + batch))) for start in range(0, n, batch)]
    parts = []
    for rows in chunks:
        known = {name: data.known[rows, j] for j, name in enumerate(data.known_names)}
        t, pH = data.t[rows], data.pH[rows]
        try:
            parts.append(infer(model, t, pH, known, check_fit=False,
                               allow_extrapolation=allow_extrapolation))
        except EiKerasError as error:
            raise EiKerasError(f"case {rows[0]}: {in_dashboard_words(str(error))}") from None
        if progress is not None:
            progress((rows[-1] + 1) / n)
    levels = np.arange(5, 100, 5)
    result = {"n": n}
    z95 = ndtri(0.975)
    for name, transform, bounds in zip(targets, info["transforms"], info["bounds"]):
        stats = {key: np.concatenate([p[name][key] for p in parts]) for key in parts[0][name]}
        truth = data.latent[:n, truth_columns[name]].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            loc = forward_transform(transform, stats["median"], bounds)
            scale = (forward_transform(transform, stats["hi95"], bounds)
                     - forward_transform(transform, stats["lo95"], bounds)) / (2 * z95)
            z = (forward_transform(transform, truth, bounds) - loc) / scale
        observed = [float(np.mean(np.abs(z) <= ndtri(0.5 + level / 200.0))) for level in levels]
        result[name] = {"truth": truth, "median": stats["median"], "lo90": stats["lo90"],
                        "hi90": stats["hi90"], "transform": transform,
                        "calibration": {"nominal": levels.tolist(), "observed": observed}}
    return result


@st.cache_data(show_spinner=False, max_entries=16)
def _evaluation(model_path, model_mtime, data_path, data_mtime, option, n_max,
                allow_extrapolation):
    return evaluate_on_dataset(get_model(model_path), data_path, option, n_max,
                               allow_extrapolation=allow_extrapolation)


def evaluation(model_path, data_path, option, n_max=300, *, allow_extrapolation=False) -> dict:
    """:func:`evaluate_on_dataset`, cached per model and dataset file version."""
    option = option if option == ANY_FORMAT else float(option)
    return _evaluation(str(model_path), _mtime(model_path), str(data_path), _mtime(data_path),
                       option, int(n_max), bool(allow_extrapolation))


def coverage_at(result: dict, level: float) -> float:
    """Observed coverage of the central ``level`` % interval in one target's evaluation."""
    curve = result["calibration"]
    return curve["observed"][curve["nominal"].index(level)]


def prior_midpoints() -> dict:
    """A sensible default case: the middle of each prior range (geometric for activity)."""
    values = {}
    for name, (low, high) in DEFAULT_PARAM_RANGES.items():
        values[name] = math.sqrt(low * high) if name == "activity" else (low + high) / 2
    return values



# ---------------------------------------------------------------------------------------
# Recipe comparison (``ei-keras compare``)
# ---------------------------------------------------------------------------------------

def compare_available() -> bool:
    """Whether this ei_keras has the ``compare`` command."""
    from ei_keras import cli

    return "compare" in getattr(cli, "SUBCOMMANDS", ())


def comparisons_dir() -> Path:
    return _sub("comparisons")


def planned_comparison_runs(prefix_lengths, presets, ablation_prefix=30.0) -> list[str] | None:
    """Names of the runs a comparison will train (None if this ei_keras cannot say)."""
    try:
        from ei_keras.evaluation.compare import planned_runs
    except ImportError:
        return None
    lengths = [float(v) for v in prefix_lengths]
    if ablation_prefix not in lengths and lengths:
        ablation_prefix = lengths[0]
    return [run[0] for run in planned_runs(lengths, list(presets), set(), ablation_prefix)]


def comparison_error(data, test_data, prefix_lengths, presets) -> str | None:
    """Why a comparison cannot start with these choices, or None."""
    if not presets:
        return "choose at least one preset"
    if not prefix_lengths:
        return "choose at least one prefix length"
    if data is None or test_data is None:
        return "choose a training and a test dataset"
    if Path(data["path"]) == Path(test_data["path"]):
        return ("the test dataset must differ from the training dataset (generate one with "
                "another seed on the Data page)")
    missing = [v for v in prefix_lengths
               if not any(math.isclose(v, w) for w in test_data["prefix_lengths"])]
    if missing:
        return (f"the test dataset {test_data['name']} has no "
                f"{', '.join(f'{v:g}' for v in missing)} s prefix")
    return None


def start_comparison(data, test_data, prefix_lengths, presets, *, epochs=None,
                     max_samples=None) -> Path:
    """Launch ``ei-keras compare`` in its own process and directory; the directory."""
    problem = comparison_error(data, test_data, prefix_lengths, presets)
    if problem:
        raise EiKerasError(problem)
    out = _unique_dir(comparisons_dir(), "compare")
    lengths = [f"{float(v):g}" for v in prefix_lengths]
    argv = [sys.executable, "-m", "ei_keras.cli", "compare", "--data", data["path"],
            "--test-data", test_data["path"], "--prefix-lengths", *lengths,
            "--presets", *presets, "--out", str(out), "--quiet"]
    if epochs:
        argv += ["--epochs", str(int(epochs))]
    if max_samples:
        argv += ["--max-samples", str(int(max_samples))]
    planned = planned_comparison_runs(prefix_lengths, presets)
    _launch(argv, out, "compare.log", {
        "kind": "compare", "dataset_name": data["name"], "test_name": test_data["name"],
        "prefix_lengths": [float(v) for v in prefix_lengths], "presets": list(presets),
        "epochs": epochs, "max_samples": max_samples, "planned": planned})
    return out


def comparison_info(out_dir) -> dict:
    """State, finished results and the run in progress of one comparison directory."""
    out_dir = Path(out_dir)
    meta = _read_json(out_dir / "job.json", {}) or {}
    results = _read_json(out_dir / "results.json", []) or []
    planned = meta.get("planned")
    info = {"id": out_dir.name, "dir": str(out_dir), "results": results, "planned": planned,
            "dataset": meta.get("dataset_name", "?"), "test": meta.get("test_name", "?"),
            "message": None, "current": None}
    if _job_alive(out_dir, meta):
        info["state"] = RUNNING
        done = {r["name"] for r in results}
        runs = out_dir / "runs"
        if runs.is_dir():
            active = [d for d in runs.iterdir() if d.is_dir() and d.name not in done]
            if active:
                current = max(active, key=lambda d: _mtime(d / "history.jsonl") or _mtime(d))
                info["current"] = {"name": current.name, "history": read_history(current)}
    elif _exit_code(out_dir) in (0, None) and (out_dir / "table.md").exists():
        info["state"] = FINISHED
    else:
        info["state"] = CRASHED
        info["message"] = readable_error(read_log(out_dir / "compare.log"), _exit_code(out_dir))
    return info


def list_comparisons() -> list[dict]:
    """Comparisons made from the dashboard (and ``./comparison``, the command's default)."""
    dirs = sorted((d for d in comparisons_dir().iterdir()
                   if d.is_dir() and ((d / "job.json").exists() or (d / "results.json").exists())),
                  key=lambda d: d.name, reverse=True)
    default = Path("comparison").resolve()
    if (default / "results.json").exists():
        dirs.append(default)
    return [comparison_info(d) for d in dirs]


def comparison_rows(results) -> list[dict]:
    """One table row per compared run: training curve summary and test metrics."""
    rows = []
    for r in results:
        row = {"run": r["name"], "status": r.get("status"), "epochs": r.get("epochs"),
               "best val NLL": r.get("best_val_nll"), "final val NLL": r.get("final_val_nll"),
               "epochs to converge": r.get("epochs_to_converge"),
               "share of epochs val rose": r.get("val_rises")}
        for name, metrics in (r.get("test") or {}).items():
            short = "log10 activity" if name == "activity" else name
            row[f"{short} R²"] = metrics.get("r2")
            row[f"{short} 90 % coverage"] = metrics.get("coverage90")
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# Live runs (the Live page): ``ei_keras.LiveInference`` fed by a replay clock or a CSV tail
# ---------------------------------------------------------------------------------------

LIVE_SPEED = (1.0, 100.0)  # replay speed: run seconds per wall second
LIVE_TICK_S = 0.5          # how often the Live page looks for new readings [s]
LIVE_LENGTH_S = (5.0, 600.0)


def prior_draw(seed: int) -> tuple[dict, dict]:
    """One run drawn from the training priors: ``(known, latent)``, floats."""
    samples = sample_priors(np.random.default_rng(int(seed)), 1)
    return ({name: float(samples[name][0]) for name in KNOWN_NAMES},
            {name: float(samples[name][0]) for name in LATENT_NAMES})


def live_start(model, known: dict, *, trace=None, csv_path=None, speed=10.0, threshold=8.5,
               t_max=2000.0, allow_extrapolation=False, minutes=False, now=None) -> dict:
    """A live run's state for ``st.session_state``: replay ``trace`` (``t``, ``pH``, as
    from :func:`simulated_trace`) at ``speed`` run seconds per wall second, or follow the
    growing CSV ``csv_path`` (``ei_keras.inference.live.CsvTail``). Feed it with
    :func:`live_tick`. Raises EiKerasError (dashboard words) for a refused model or inputs."""
    from ei_keras.inference.live import CsvTail, LiveInference

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
            "result": None, "messages": [], "ticks": 0, "updates": 0}


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
    if not state["paused"]:
        state["clock_s"] = live_played_s(state, now)
        state["anchor"], state["paused"] = None, True


def live_resume(state: dict, now=None) -> None:
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
    if not live_running(state):
        return False
    state["ticks"] += 1
    if state["tail"] is not None:
        batch = state["tail"].poll()
        if batch["restarted"]:
            fresh = live_restart(state, now)
            fresh["tail"] = state["tail"]  # it already starts over from the first line
            fresh["messages"] = state["messages"]
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
        result["domain"] = _domain_in_words(result["domain"])
    state["result"] = result
    state["updates"] += 1
    return True
