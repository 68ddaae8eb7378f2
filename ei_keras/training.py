"""Train the ei_keras network on one prefix length of a dataset, into a run directory.

A run directory holds everything about one run, written as training goes so that a
dashboard can poll it:

    config.json     the resolved configuration (training, model, normalisation, data, versions)
    history.jsonl   one JSON line per epoch: epoch, loss, val_loss, learning_rate, time
    status.json     state (running/finished/stopped/failed), epoch, batch, best val_loss
    best.keras      the model with the lowest val_loss so far
    last.keras      the model after the latest epoch (used by ``resume``)
    final.keras     the model when training ended
    stop            create this file to end training cleanly (the best model is kept)

Presets: ``improved`` (compact architecture, weighted pooling, AdamW weight decay 1e-5,
global clip norm 5, batch 256, lr 1e-3, 5 warmup epochs, plateau ×0.7 after 10 epochs)
and ``baseline`` (the old recipe: full-size TCN, average pooling, batch 128, lr 5e-4, no
weight decay, global clip norm 1, no warmup, plateau ×0.5 after 5 epochs).
"""

import dataclasses
import inspect
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

from ei_keras.callbacks import HistoryLogger, LinearWarmup, PlateauAfterWarmup, StopOnFile
from ei_keras.errors import EiKerasError
from ei_keras.losses import RegularizedGaussianNLL
from ei_keras.models import (
    ARCHITECTURES,
    architecture_kwargs,
    build_model,
    fit_normalization,
    save_model,
)
from ei_keras.optimizers import AdamW

PRESETS = {
    "improved": {
        "architecture": "compact", "pooling": "weighted", "batch_size": 256,
        "learning_rate": 1e-3, "weight_decay": 1e-5, "global_clipnorm": 5.0,
        "warmup_epochs": 5, "plateau_factor": 0.7, "plateau_patience": 10,
        "early_stopping_patience": 25,
    },
    "baseline": {
        "architecture": "recipe", "pooling": "average", "batch_size": 128,
        "learning_rate": 5e-4, "weight_decay": 0.0, "global_clipnorm": 1.0,
        "warmup_epochs": 0, "plateau_factor": 0.5, "plateau_patience": 5,
        "early_stopping_patience": 15,
    },
}

RUN_FILES = ("config.json", "history.jsonl", "status.json", "best.keras", "last.keras",
             "final.keras")
STOP_FILE = "stop"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every training setting; :func:`resolve_config` fills it from a preset.

    Attributes:
        preset: the preset the values started from.
        architecture: ``"compact"`` or ``"recipe"`` (see ``ei_keras.models.ARCHITECTURES``).
        pooling: ``"weighted"`` or ``"average"``.
        model: ``build_model`` keyword overrides on top of the architecture (e.g.
            ``{"filters": [16, 16, 16]}``).
        epochs: maximum number of epochs.
        batch_size: samples per gradient step.
        learning_rate: peak learning rate (reached at the end of warmup).
        weight_decay: decoupled AdamW weight decay (0 = none, i.e. Adam).
        global_clipnorm: clip the norm of all gradients together (None = no clipping).
        epsilon: Adam epsilon (1e-8 as in torch; Keras's default is 1e-7).
        warmup_epochs: linear warmup length (0 = none).
        warmup_per: ``"batch"`` or ``"epoch"`` warmup steps.
        plateau_factor: learning-rate multiplier at a plateau cut.
        plateau_patience: epochs without val_loss improvement before a cut.
        plateau_min_delta: relative improvement a plateau needs to see.
        min_lr: lowest learning rate.
        early_stopping_patience: epochs without improvement (after warmup) before stopping.
        log_var_min: loss clamp of the log-variance.
        log_var_max: loss clamp of the log-variance.
        target_variance: variance the loss penalty pulls toward.
        variance_weight: weight of the variance penalty (0 = plain NLL).
        val_fraction: share of the samples held out for validation.
        max_samples: use only the first this many samples of the file (None = all).
        seed: seed of the split, the initial weights, shuffling and dropout.
        jit_compile: passed to ``model.compile`` (``"auto"``: jax compiles, torch not).
    """

    preset: str = "improved"
    architecture: str = "compact"
    pooling: str = "weighted"
    model: dict = dataclasses.field(default_factory=dict)
    epochs: int = 200
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    global_clipnorm: float | None = 5.0
    epsilon: float = 1e-8
    warmup_epochs: int = 5
    warmup_per: str = "batch"
    plateau_factor: float = 0.7
    plateau_patience: int = 10
    plateau_min_delta: float = 1e-4
    min_lr: float = 1e-6
    early_stopping_patience: int = 25
    log_var_min: float = -4.6
    log_var_max: float = 10.0
    target_variance: float = 0.1
    variance_weight: float = 0.01
    val_fraction: float = 0.1
    max_samples: int | None = None
    seed: int = 0
    jit_compile: str | bool = "auto"

    def __post_init__(self):
        checks = [
            (self.preset in PRESETS, "preset", f"one of {sorted(PRESETS)}"),
            (self.architecture in ARCHITECTURES, "architecture", f"one of {sorted(ARCHITECTURES)}"),
            (self.pooling in ("weighted", "average"), "pooling", "'weighted' or 'average'"),
            (isinstance(self.model, dict), "model", "a dict of build_model arguments"),
            (_is_int(self.epochs) and self.epochs >= 1, "epochs", "an int >= 1"),
            (_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an int >= 1"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.global_clipnorm is None or self.global_clipnorm > 0, "global_clipnorm",
             "> 0 or None"),
            (self.epsilon > 0, "epsilon", "> 0"),
            (_is_int(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs",
             "an int >= 0"),
            (self.warmup_per in ("batch", "epoch"), "warmup_per", "'batch' or 'epoch'"),
            (0 < self.plateau_factor < 1, "plateau_factor", "in (0, 1)"),
            (_is_int(self.plateau_patience) and self.plateau_patience >= 1, "plateau_patience",
             "an int >= 1"),
            (self.plateau_min_delta >= 0, "plateau_min_delta", ">= 0"),
            (self.min_lr >= 0, "min_lr", ">= 0"),
            (_is_int(self.early_stopping_patience) and self.early_stopping_patience >= 1,
             "early_stopping_patience", "an int >= 1"),
            (self.log_var_min < self.log_var_max, "log_var_min", "< log_var_max"),
            (self.target_variance > 0, "target_variance", "> 0"),
            (self.variance_weight >= 0, "variance_weight", ">= 0"),
            (0 < self.val_fraction < 1, "val_fraction", "in (0, 1)"),
            (self.max_samples is None or (_is_int(self.max_samples) and self.max_samples >= 2),
             "max_samples", "an int >= 2 or None"),
            (_is_int(self.seed), "seed", "an int"),
            (self.jit_compile in ("auto", True, False), "jit_compile", "'auto', true or false"),
        ]
        for ok, field, allowed in checks:
            if not ok:
                raise ValueError(f"training config: {field} must be {allowed}; "
                                 f"got {getattr(self, field)!r}")
        known = set(inspect.signature(build_model).parameters) - {"normalization"}
        unknown = sorted(set(self.model) - known)
        if unknown:
            raise ValueError(f"training config: model has unknown build_model argument(s) "
                             f"{unknown}; known: {sorted(known)}")

    def to_dict(self):
        return dataclasses.asdict(self)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_config(preset="improved", **overrides):
    """A :class:`TrainConfig`: the preset's values with ``overrides`` on top.

    Raises:
        ValueError: unknown preset or setting, or an invalid value (the message names it).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(fields)}")
    values = dict(PRESETS[preset], preset=preset)
    values.update(overrides)
    return TrainConfig(**values)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` leaves behind.

    Attributes:
        run_dir: the run directory.
        status: ``"finished"``, ``"early_stopped"``, ``"stopped"`` (stop file) or
            ``"failed"`` (NaN loss).
        best_path: ``best.keras`` (lowest val_loss).
        final_path: ``final.keras`` (None when training failed).
        history: one dict per completed epoch (as in ``history.jsonl``).
    """

    run_dir: Path
    status: str
    best_path: Path
    final_path: Path | None
    history: list


def _write_json(path, payload):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(payload, stream, indent=2)
    os.replace(tmp, path)


def read_history(run_dir):
    """The epochs recorded in ``run_dir/history.jsonl`` (a list of dicts; [] if none)."""
    path = Path(run_dir) / "history.jsonl"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
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
            self.best = self._restored["best"]
            self.wait = int(self._restored["wait"])
            self.best_epoch = int(self._restored["best_epoch"])


class _RunRecorder(keras.callbacks.Callback):
    """Checkpoints (best/last) and ``status.json`` after every epoch; progress in between."""

    def __init__(self, run_dir, epochs, plateau, early_stopping, best_val_loss=None,
                 interval=2.0):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.epochs = epochs
        self.plateau = plateau
        self.early_stopping = early_stopping
        self.best_val_loss = math.inf if best_val_loss is None else best_val_loss
        self.best_epoch = None
        self.epoch = 0
        self.failed = False
        self.interval = interval
        self._last_write = 0.0

    def status(self, state, **extra):
        payload = {"state": state, "epoch": self.epoch, "epochs": self.epochs,
                   "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
                   "best_epoch": self.best_epoch, "updated": time.time()}
        payload.update(extra)
        _write_json(self.run_dir / "status.json", payload)

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
            self.failed = True
            return
        self.epoch = epoch + 1
        val_loss = float(logs.get("val_loss", logs.get("loss")))
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val_loss, epoch + 1
            save_model(self.model, self.run_dir / "best.keras")
        save_model(self.model, self.run_dir / "last.keras")
        self.status("running", plateau=self.plateau.get_state(),
                    early_stopping=self.early_stopping.get_state())


def _load_data(data, prefix_length):
    if isinstance(data, (str, os.PathLike)):
        from ei_keras.data import load_prefix

        return load_prefix(data, prefix_length), os.fspath(data)
    return data, None


def _split(n, val_fraction, seed):
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _inputs(data, index):
    return {"pH": data.pH[index], "t": data.t[index], "known": data.known[index]}


def _new_run_dir(out_dir, preset, prefix_length):
    if out_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{stamp}-{preset}-{prefix_length:g}s"
    out_dir = Path(out_dir)
    if out_dir.exists() and any((out_dir / name).exists() for name in RUN_FILES):
        raise EiKerasError(
            f"{out_dir} already holds a training run; resume it (resume=True, --resume) or "
            f"choose another output directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _compile(model, config, optimizer=None):
    if optimizer is None:
        optimizer = AdamW(
            learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            epsilon=config.epsilon, global_clipnorm=config.global_clipnorm)
    loss = RegularizedGaussianNLL(config.log_var_min, config.log_var_max,
                                  config.target_variance, config.variance_weight)
    model.compile(optimizer=optimizer, loss={"posterior": loss}, jit_compile=config.jit_compile)


def train(data, prefix_length, preset="improved", out_dir=None, *, resume=False,
          verbose="auto", **overrides):
    """Train on one prefix length; write the run directory described in this module.

    Args:
        data: path of an HDF5 dataset from ``ei-keras generate``, or an object with the
            attributes of ``ei_keras.data.PrefixData`` (``t``, ``pH``, ``known``,
            ``known_names``, ``targets``, ``target_names``, ``config``).
        prefix_length: prefix length in seconds (a group of the file).
        preset: ``"improved"`` or ``"baseline"``.
        out_dir: run directory (default ``runs/<time>-<preset>-<L>s``); it must not hold a
            run unless ``resume``.
        resume: continue the run in ``out_dir`` from its last epoch, with its saved
            configuration (only ``epochs`` may be raised).
        verbose: Keras verbosity; ``"auto"`` shows a progress bar on a terminal and one
            line per epoch otherwise.
        **overrides: any :class:`TrainConfig` field, e.g. ``epochs=50, batch_size=128``.

    Returns:
        :class:`TrainResult`.

    Raises:
        EiKerasError: unreadable data, a run directory already in use, nothing to resume.
        ValueError: an unknown or invalid setting.
    """
    if resume:
        if out_dir is None or not (Path(out_dir) / "config.json").exists():
            raise EiKerasError(f"nothing to resume in {out_dir}: no config.json there")
        run_dir = Path(out_dir)
        with open(run_dir / "config.json", encoding="utf-8") as stream:
            saved = json.load(stream)
        extra = sorted(set(overrides) - {"epochs"})
        if extra:
            raise ValueError(f"a resumed run keeps its configuration; only epochs may change, "
                             f"got {extra}")
        config = TrainConfig(**dict(saved["train"], **overrides))
    else:
        config = resolve_config(preset, **overrides)
        run_dir = _new_run_dir(out_dir, preset, float(prefix_length))
    (run_dir / STOP_FILE).unlink(missing_ok=True)

    dataset, data_path = _load_data(data, prefix_length)
    n = len(dataset.pH) if config.max_samples is None else min(config.max_samples, len(dataset.pH))
    train_index, val_index = _split(n, config.val_fraction, config.seed)
    known_names, target_names = tuple(dataset.known_names), tuple(dataset.target_names)

    state = {}
    if resume:
        status_path = run_dir / "status.json"
        state = json.loads(status_path.read_text()) if status_path.exists() else {}
    initial_epoch = int(state.get("epoch", 0)) if "plateau" in state else 0
    keras.utils.set_random_seed(config.seed + initial_epoch)

    if initial_epoch:
        model = keras.saving.load_model(run_dir / "last.keras")
        _compile(model, config, optimizer=model.optimizer)
        history = [r for r in read_history(run_dir) if r["epoch"] <= initial_epoch]
        with open(run_dir / "history.jsonl", "w", encoding="utf-8") as stream:
            stream.writelines(json.dumps(r) + "\n" for r in history)
    else:
        stats = fit_normalization(dataset.t[train_index], dataset.pH[train_index],
                                  dataset.known[train_index], dataset.targets[train_index],
                                  known_names, target_names)
        model_kwargs = architecture_kwargs(config.architecture, dataset.pH.shape[1])
        model_kwargs.update(config.model, pooling=config.pooling,
                            log_var_min=config.log_var_min, log_var_max=config.log_var_max)
        model = build_model(stats, **model_kwargs)
        _compile(model, config)
        (run_dir / "history.jsonl").unlink(missing_ok=True)
        _write_json(run_dir / "config.json", {
            "train": config.to_dict(),
            "model": {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()},
            "normalization": stats,
            "data": {"path": data_path, "prefix_length": float(prefix_length),
                     "n_points": int(dataset.pH.shape[1]), "n_train": int(len(train_index)),
                     "n_val": int(len(val_index)), "known_names": list(known_names),
                     "target_names": list(target_names),
                     "generation_config": getattr(dataset, "config", None)},
            "environment": {"backend": keras.backend.backend(), "keras": keras.__version__,
                            "python": platform.python_version()},
        })

    encode = model.get_layer("posterior").encode
    x_train, y_train = _inputs(dataset, train_index), encode(dataset.targets[train_index])
    x_val, y_val = _inputs(dataset, val_index), encode(dataset.targets[val_index])

    plateau = PlateauAfterWarmup(
        factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr,
        warmup_epochs=config.warmup_epochs, min_delta=config.plateau_min_delta)
    if "plateau" in state:
        plateau.set_state(state["plateau"])
    early_stopping = _ResumableEarlyStopping(
        restored=state.get("early_stopping"), patience=config.early_stopping_patience,
        start_from_epoch=config.warmup_epochs)
    stop = StopOnFile(run_dir / STOP_FILE)
    recorder = _RunRecorder(run_dir, config.epochs, plateau, early_stopping,
                            best_val_loss=state.get("best_val_loss"))
    recorder.epoch, recorder.best_epoch = initial_epoch, state.get("best_epoch")
    callbacks = []
    if config.warmup_epochs:
        callbacks.append(LinearWarmup(config.warmup_epochs, config.learning_rate,
                                      per=config.warmup_per))
    callbacks += [plateau, early_stopping, keras.callbacks.TerminateOnNaN(), stop,
                  HistoryLogger(run_dir / "history.jsonl"), recorder]

    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    recorder.status("running")
    try:
        model.fit(x_train, {"posterior": y_train}, validation_data=(x_val, {"posterior": y_val}),
                  batch_size=config.batch_size, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, shuffle=True, verbose=verbose)
    except KeyboardInterrupt:
        recorder.status("interrupted", message="interrupted; resume to continue")
        raise
    except Exception as error:
        recorder.status("failed", message=f"{type(error).__name__}: {error}")
        raise

    final_path = run_dir / "final.keras"
    if recorder.failed:
        status, final_path = "failed", None
    elif stop.stopped:
        status = "stopped"
    elif early_stopping.stopped_epoch:
        status = "early_stopped"
    else:
        status = "finished"
    if final_path is not None:
        save_model(model, final_path)
    recorder.status(status, plateau=plateau.get_state(), early_stopping=early_stopping.get_state(),
                    message="loss became NaN; best.keras holds the last good model"
                    if status == "failed" else None)
    return TrainResult(run_dir, status, run_dir / "best.keras", final_path, read_history(run_dir))
