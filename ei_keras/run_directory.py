"""A training run directory: one writer, atomic state, resume from any interruption.

The files and who writes them (only the trainer holding ``.lock``):

    .lock            an exclusive ``flock`` held for the run's life; a second trainer is
                     refused with the holder's pid; the OS releases it if the holder dies
    config.json      written once when the run starts
    history.jsonl    one line per epoch, appended at the epoch's end
    checkpoint.json  the commit record, written only at the end of an epoch, after the
                     history line and the models: the epoch, the learning rate, the
                     warmup/plateau/early-stopping counters, the best score and the
                     SHA-256 of last.keras and best.keras
    last.keras       the model after the committed epoch (``best.keras`` likewise)
    status.json      progress for readers (state, epoch, batch), in the job protocol of
                     :mod:`ei_keras.jobs`; never read to resume

At an epoch's end the recorder appends the history line, saves the models under
``*.next.keras``, writes ``checkpoint.json`` (the commit point) and renames the models
into place. Whatever stops the process (Ctrl-C, SIGTERM, SIGKILL, power loss, at any
byte), the run resumes from the last committed epoch: models still under ``*.next.keras``
whose hash the checkpoint names are rolled forward, others discarded, and history lines
past the checkpoint dropped. Every JSON write goes to a unique temporary name and is
renamed into place (:mod:`ei_keras.fileio`); every file is strict JSON.
"""

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras

from ei_keras.errors import EiKerasError
from ei_keras.fileio import exclusive_lock, read_json, sync, write_json, write_text
from ei_keras.jobs import JobState
from ei_keras.jsonutil import to_jsonable
from ei_keras.models import save_model

CONFIG = "config.json"
HISTORY = "history.jsonl"
STATUS = "status.json"
CHECKPOINT = "checkpoint.json"
LOCK = ".lock"
MODELS = ("last.keras", "best.keras")
NEW_RUN = "start a new run (another --out)"


def holding(run_dir):
    """Context manager: the run directory's lock (one-line EiKerasError if it is taken)."""
    return exclusive_lock(
        Path(run_dir) / LOCK, f"run directory {run_dir}",
        fix=f"wait for that trainer to end, stop it (touch {run_dir}/stop) or choose "
            f"another --out")


def pending(path):
    """Where a model waits for its epoch's commit: ``last.keras`` → ``last.next.keras``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.next.keras")


def fingerprint(path):
    """``{"size", "sha256"}`` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


def read_history(run_dir):
    """The epochs recorded in ``run_dir/history.jsonl`` (a list of dicts; [] if none).

    A line that is not a JSON object (one torn by a crash while being written) is skipped.
    """
    records, _ = _history_lines(Path(run_dir) / HISTORY)
    return [record for record in records if record is not None]


def _history_lines(path):
    """Parsed lines (None where not a JSON object) and the raw lines of a history file."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return [], []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        records.append(record if isinstance(record, dict) else None)
    return records, lines


def check_fresh(run_dir, run_files):
    """Refuse a directory that already holds a run (called holding its lock)."""
    run_dir = Path(run_dir)
    if any((run_dir / name).exists() for name in (*run_files, CHECKPOINT)):
        raise EiKerasError(
            f"{run_dir} already holds a training run; resume it (resume=True, --resume) or "
            f"choose another output directory")


def clear_partial(run_dir):
    """Remove what an interrupted first epoch may have left (nothing was committed)."""
    run_dir = Path(run_dir)
    for name in (HISTORY, CHECKPOINT, *MODELS):
        (run_dir / name).unlink(missing_ok=True)
        pending(run_dir / name).unlink(missing_ok=True)


def read_config(run_dir):
    """The run's ``config.json``; a one-line EiKerasError naming it if missing or corrupt."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise EiKerasError(f"nothing to resume in {run_dir}: no {CONFIG} there")
    saved = read_json(path, "the run's configuration", fix=NEW_RUN)
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict) \
            or not isinstance(saved.get("data"), dict):
        raise EiKerasError(f"{path}: not a run configuration (no train/data sections); "
                           f"{NEW_RUN}")
    return saved


def check_same_data(run_dir, saved, dataset, prefix_length, data_path, n_samples, n_points):
    """Refuse to resume on data other than the run's (one line naming what differs).

    The dataset is the same when its generation config (seed included) matches, or, for
    data without one, when the path does; the prefix length is compared as stored (a
    number of seconds or ``"any"``); the readings per trace and the sample count too.
    """
    stored = saved["data"]
    path = Path(run_dir) / CONFIG

    def refuse(what, theirs, ours):
        raise EiKerasError(
            f"cannot resume {run_dir}: {what} is {ours} but the run was trained with "
            f"{theirs} ({path}); resume with the run's own data and settings or {NEW_RUN}")

    length = stored.get("prefix_length")
    same_length = (length == prefix_length if isinstance(length, str) or isinstance(
        prefix_length, str) else math.isclose(float(length), float(prefix_length)))
    if not same_length:
        refuse("the prefix length", length, prefix_length)
    theirs = to_jsonable(stored.get("generation_config"))
    ours = to_jsonable(getattr(dataset, "config", None))
    if theirs is not None or ours is not None:
        if theirs != ours:
            raise EiKerasError(
                f"cannot resume {run_dir}: the dataset {data_path or '(in memory)'} is not the "
                f"one the run was trained on ({stored.get('path') or 'in-memory data'}, "
                f"{path}): their generation configs differ; resume with the run's own data "
                f"or {NEW_RUN}")
    elif stored.get("path") and data_path and not _same_file(stored["path"], data_path):
        refuse("the dataset", stored["path"], data_path)
    stored_points = stored.get("n_points")
    if stored_points is not None and int(stored_points) != int(n_points):
        refuse("the readings per trace", stored_points, n_points)
    n_stored = (stored.get("n_train") or 0) + (stored.get("n_val") or 0)
    if n_stored and n_stored != n_samples:
        refuse("the number of samples", n_stored, n_samples)


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _refuse_state(path, problem, fix=NEW_RUN):
    raise EiKerasError(f"cannot resume: {path} {problem}; {fix}")


def resume_state(run_dir, epochs):
    """The last committed epoch's state, after rolling the run's files to it.

    Returns ``{}`` when no epoch was committed (training restarts from epoch 1), else the
    checkpoint: ``epoch``, ``learning_rate``, ``plateau``, ``early_stopping``,
    ``best_val_loss``, ``best_epoch`` and the model hashes. Called holding the lock.

    Raises:
        EiKerasError: the state files contradict each other (checkpoint missing while
            last.keras exists, history shorter than the checkpoint's epoch, the epoch
            beyond ``epochs``, a model whose hash is not the one committed); the message
            names the file and what to do.
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    last = run_dir / "last.keras"
    for stale in run_dir.glob(".*.tmp*"):  # half-written by a dead trainer (we hold the lock)
        stale.unlink(missing_ok=True)
    if path.exists():
        checkpoint = read_json(path, "the run's checkpoint", fix=NEW_RUN)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("models"), dict):
            _refuse_state(path, "is not a checkpoint record")
    else:
        checkpoint = _legacy_checkpoint(run_dir)
        if checkpoint is None:
            if last.exists():
                _refuse_state(path, f"is missing but {last.name} exists, so the epoch it "
                              f"holds is unknown", fix=f"delete {last} to restart the run "
                              f"from epoch 1, or {NEW_RUN}")
            for name in MODELS:
                pending(run_dir / name).unlink(missing_ok=True)
            return {}
    epoch = checkpoint.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1 or not all(
            isinstance(checkpoint.get(key), dict) for key in ("plateau", "early_stopping")):
        _refuse_state(path, f"holds no valid epoch and counters (epoch {epoch!r})")
    if epoch > epochs:
        _refuse_state(path, f"says {epoch} epochs are done, beyond the {epochs} asked for",
                      fix=f"pass --epochs above {epoch} (epochs=...) to continue the run")
    _settle_models(run_dir, checkpoint)
    _truncate_history(run_dir, epoch, path)
    return checkpoint


def _legacy_checkpoint(run_dir):
    """A run written before checkpoint.json: its status.json held the counters."""
    try:
        status = json.loads((run_dir / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict) or "plateau" not in status or not status.get("epoch"):
        return None
    return dict(status, models={})


def _settle_models(run_dir, checkpoint):
    """Roll committed ``*.next.keras`` into place, drop uncommitted ones, check the rest."""
    models = checkpoint["models"]
    for name in MODELS:
        target, next_file = run_dir / name, pending(run_dir / name)
        expected = models.get(name)
        if next_file.exists():
            if expected and fingerprint(next_file) == expected:
                os.replace(next_file, target)
            else:
                next_file.unlink()
        if not expected:
            continue
        if not target.exists():
            _refuse_state(target, f"is missing (checkpoint.json says epoch "
                          f"{checkpoint['epoch']} saved it)")
        if fingerprint(target) != expected:
            _refuse_state(target, f"is not the model this run saved after epoch "
                          f"{checkpoint['epoch']} (a foreign or replaced file)",
                          fix=f"put the run's own file back or {NEW_RUN}")


def _truncate_history(run_dir, epoch, checkpoint_path):
    """Keep exactly epochs 1..``epoch`` of history.jsonl (lines past it were never committed)."""
    path = run_dir / HISTORY
    records, lines = _history_lines(path)
    kept = records[:epoch]
    epochs = [record.get("epoch") if record else None for record in kept]
    if epochs != list(range(1, epoch + 1)):
        shown = [e for e in epochs if e is not None]
        summary = f"epochs {shown[0]}–{shown[-1]}" if shown else "no epochs"
        _refuse_state(path, f"holds {summary} in {len(lines)} lines but {checkpoint_path.name} "
                      f"says epochs 1–{epoch} are done")
    if len(lines) != epoch:
        write_text(path, "".join(line + "\n" for line in lines[:epoch]))


def load_last_model(run_dir):
    """The model of the committed epoch (``last.keras``, with its optimizer)."""
    path = Path(run_dir) / "last.keras"
    try:
        model = keras.saving.load_model(path)
        model.get_layer("posterior").codec.encode  # noqa: B018 — an ei_keras model?
        if model.optimizer is None:
            raise ValueError("it holds no optimizer state")
    except Exception as error:  # a foreign or corrupt file: say so in one line
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EiKerasError(f"cannot resume: {path} is not this run's model ({message}); "
                           f"{NEW_RUN}") from None
    return model


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras early stopping whose counters survive a resume."""

    def __init__(self, restored=None, **kwargs):
        super().__init__(**kwargs)
        self._restored = restored

    def get_state(self):
        best = None if self.best is None else float(self.best)
        return {"best": best, "wait": int(self.wait), "best_epoch": int(self.best_epoch)}

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._restored:
            best = self._restored.get("best")
            self.best = None if best is None else float(best)
            self.wait = int(self._restored["wait"])
            self.best_epoch = int(self._restored["best_epoch"])


class RunRecorder(keras.callbacks.Callback):
    """Commits every epoch (models, then ``checkpoint.json``) and writes ``status.json``.

    Put it last, after the callbacks that write the learning rate and after
    :class:`~ei_keras.callbacks.HistoryLogger`, so the history line is on disk before the
    epoch is committed and the checkpoint holds the rate the next epoch starts with.

    Args:
        run_dir: the run directory.
        epochs: the epochs asked for (shown in the status).
        plateau: the :class:`~ei_keras.callbacks.PlateauAfterWarmup` whose state to keep.
        early_stopping: the :class:`ResumableEarlyStopping` whose state to keep.
        checkpoint: the state resumed from (``{}`` for a new run).
        interval: seconds between progress writes during an epoch.
    """

    def __init__(self, run_dir, epochs, plateau, early_stopping, checkpoint=None,
                 interval=2.0):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.epochs = epochs
        self.plateau = plateau
        self.early_stopping = early_stopping
        self.checkpoint = dict(checkpoint or {})
        self.failed = False
        self.interval = interval
        self._last_write = 0.0
        self._epoch_index = self.epoch
        self.job = JobState(self.run_dir / STATUS, "train", unit="epochs", total=epochs)

    @property
    def epoch(self):
        """Epochs committed so far."""
        return int(self.checkpoint.get("epoch", 0))

    @property
    def best_val_loss(self):
        best = self.checkpoint.get("best_val_loss")
        return math.inf if best is None else float(best)

    def status(self, state, **extra):
        """Write ``status.json``: ``state``, the committed ``epoch`` (``done`` of ``total``)
        and best score, extras (``batch``, ``steps``, ``current_epoch``, ``message``)."""
        payload = {"state": state, "epoch": self.epoch, "epochs": self.epochs,
                   "done": self.epoch, "total": self.epochs,
                   "best_val_loss": self.checkpoint.get("best_val_loss"),
                   "best_epoch": self.checkpoint.get("best_epoch"),
                   "learning_rate": self.checkpoint.get("learning_rate"),
                   "batch": None, "steps": None, "current_epoch": None, "message": None}
        payload.update(extra)
        if self.job.started:
            self.job.update(**payload)
        else:
            self.job.start(**payload)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_index = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last_write >= self.interval:
            self._last_write = now
            self.status("running", batch=batch + 1, steps=(self.params or {}).get("steps"),
                        current_epoch=self._epoch_index + 1)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(v)) for v in logs.values()):
            self.failed = True  # not committed: resume retries this epoch
            return
        val_loss = float(logs.get("val_loss", logs.get("loss")))
        improved = val_loss < self.best_val_loss
        last, best = self.run_dir / "last.keras", self.run_dir / "best.keras"
        save_model(self.model, pending(last))
        models = dict(self.checkpoint.get("models") or {})
        models["last.keras"] = fingerprint(pending(last))
        if improved:
            shutil.copyfile(pending(last), pending(best))
            models["best.keras"] = models["last.keras"]
        # On disk, names included, before the commit that refers to them.
        sync(pending(last), *([pending(best)] if improved else []), self.run_dir)
        checkpoint = {
            "epoch": epoch + 1,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "plateau": self.plateau.get_state(),
            "early_stopping": self.early_stopping.get_state(),
            "best_val_loss": val_loss if improved else self.checkpoint.get("best_val_loss"),
            "best_epoch": epoch + 1 if improved else self.checkpoint.get("best_epoch"),
            "models": models, "time": time.time(),
        }
        write_json(self.run_dir / CHECKPOINT, checkpoint)  # the commit point
        os.replace(pending(last), last)
        if improved:
            os.replace(pending(best), best)
        sync(self.run_dir)
        self.checkpoint = to_jsonable(checkpoint)
        self.status("running")
