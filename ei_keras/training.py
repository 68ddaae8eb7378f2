"""Train the ei_keras network on one prefix length of a dataset, or on its any-format
traces (every length and reading rate), into a run directory.

A run directory holds everything about one run, written as training goes so that a
dashboard can poll it:

    config.json     the resolved configuration (training, model, normalisation, data, versions)
    history.jsonl   one JSON line per epoch: epoch, loss, val_loss, learning_rate, time
    status.json     state (running/finished/stopped/interrupted/failed), epoch, batch,
                    best val_loss
    checkpoint.json the last completed epoch's state (what ``resume`` continues from)
    best.keras      the model with the lowest val_loss so far
    last.keras      the model after the latest epoch (used by ``resume``)
    final.keras     the model when training ended
    stop            create this file to end training cleanly (the best model is kept)
    .lock           held by the one trainer writing the directory

How these files stay consistent through any interruption, and why one trainer at a time
writes them: :mod:`ei_keras.run_directory`.

Presets: ``improved`` (compact architecture, weighted pooling, AdamW weight decay 1e-5,
global clip norm 5, batch 256, lr 1e-3, 5 warmup epochs, plateau ×0.7 after 10 epochs),
``anyformat`` (the same recipe on the binned architecture, for ``prefix_length="any"``;
plateau after 8 epochs) and ``baseline`` (the old recipe: full-size TCN, average pooling, batch 128, lr 5e-4, no
weight decay, global clip norm 1, no warmup, plateau ×0.5 after 5 epochs).
"""

import dataclasses
import functools
import inspect
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

from ei_keras.callbacks import HistoryLogger, LinearWarmup, PlateauAfterWarmup, StopOnFile
from ei_keras import run_directory as rundir
from ei_keras.errors import EiKerasError
from ei_keras.fileio import make_dirs, sigterm_as_interrupt, write_json
from ei_keras.losses import LOG_VAR_MAX, LOG_VAR_MIN, RegularizedGaussianNLL
from ei_keras.models import (
    ARCHITECTURES,
    architecture_kwargs,
    build_model,
    fit_normalization,
    save_model,
    target_codec,
)
from ei_keras.data.batches import LengthBatches
from ei_keras.inference.domain import training_domain
from ei_keras.optimizers import AdamW

# The prefix length that selects a dataset's any-format traces (every length and rate).
ANY_FORMAT = "any"

PRESETS = {
    "improved": {
        "architecture": "compact", "pooling": "weighted", "batch_size": 256,
        "learning_rate": 1e-3, "weight_decay": 1e-5, "global_clipnorm": 5.0,
        "warmup_epochs": 5, "plateau_factor": 0.7, "plateau_patience": 10,
        "early_stopping_patience": 25,
    },
    # Any trace length and reading rate (train with prefix_length="any" on a dataset
    # generated with --any-format): the improved recipe on the binned architecture.
    "anyformat": {
        "architecture": "binned", "pooling": "weighted", "batch_size": 256,
        "learning_rate": 1e-3, "weight_decay": 1e-5, "global_clipnorm": 5.0,
        "warmup_epochs": 5, "plateau_factor": 0.7, "plateau_patience": 8,
        "early_stopping_patience": 20,
    },
    "baseline": {
        "architecture": "recipe", "pooling": "average", "batch_size": 128,
        "learning_rate": 5e-4, "weight_decay": 0.0, "global_clipnorm": 1.0,
        "warmup_epochs": 0, "plateau_factor": 0.5, "plateau_patience": 5,
        "early_stopping_patience": 15,
    },
}

RUN_FILES = ("config.json", "history.jsonl", "status.json", "checkpoint.json", "best.keras",
             "last.keras", "final.keras")
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
    log_var_min: float = LOG_VAR_MIN
    log_var_max: float = LOG_VAR_MAX
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


read_history = rundir.read_history


def _load_data(data, prefix_length):
    if isinstance(data, (str, os.PathLike)):
        from ei_keras.data import load_any_format, load_prefix

        if prefix_length == ANY_FORMAT:
            return load_any_format(data), os.fspath(data)
        return load_prefix(data, prefix_length), os.fspath(data)
    return data, None


def _length_label(prefix_length):
    return ANY_FORMAT if prefix_length == ANY_FORMAT else f"{float(prefix_length):g}s"


def _stored_length(prefix_length):
    return ANY_FORMAT if prefix_length == ANY_FORMAT else float(prefix_length)


def _batches(dataset, index, y, config, shuffle):
    """Inputs for ``model.fit``: arrays for one fixed format, length-grouped batches for
    NaN-padded any-format traces."""
    if not np.isnan(dataset.pH).any():
        return _inputs(dataset, index), {"posterior": y}
    return LengthBatches(dataset.t[index], dataset.pH[index], dataset.known[index], y,
                         config.batch_size, shuffle=shuffle, seed=config.seed), None


def _split(n, val_fraction, seed):
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _inputs(data, index):
    return {"pH": data.pH[index], "t": data.t[index], "known": data.known[index]}


def _new_run_dir(out_dir, preset, prefix_length):
    """``out_dir`` (default ``runs/<time>-<preset>-<L>``), created."""
    if out_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{stamp}-{preset}-{prefix_length}"
    return make_dirs(out_dir)


def _one_writer(train_function):
    """``train`` holding its run directory's lock, with SIGTERM handled like Ctrl-C.

    Settings are checked and the directory is created before the lock is taken; whether
    the directory already holds a run, and everything a resume reads, is looked at only
    while holding it.
    """

    @functools.wraps(train_function)
    def locked(data, prefix_length, preset=None, out_dir=None, *, resume=False, **kwargs):
        if resume:
            if out_dir is None:
                raise EiKerasError("nothing to resume: give the run directory (out_dir, --out)")
            rundir.read_config(out_dir)
            run_dir = Path(out_dir)
        else:
            preset = preset or "improved"
            resolve_config(preset, **{k: v for k, v in kwargs.items() if k != "verbose"})
            run_dir = _new_run_dir(out_dir, preset, _length_label(prefix_length))
        with rundir.holding(run_dir), sigterm_as_interrupt():
            return train_function(data, prefix_length, preset, run_dir, resume=resume, **kwargs)

    return locked


def _resumed_config(run_dir, saved, preset, overrides):
    """The saved TrainConfig with ``epochs`` possibly raised; one line for anything else."""
    config_path = run_dir / rundir.CONFIG
    extra = sorted(set(overrides) - {"epochs"})
    if extra:
        raise EiKerasError(
            f"cannot resume {run_dir} with other settings {extra}: a resumed run keeps the "
            f"configuration in {config_path}; only epochs may change")
    if preset is not None and preset != saved["train"].get("preset"):
        raise EiKerasError(
            f"cannot resume {run_dir} with preset {preset!r}: it was trained with "
            f"{saved['train'].get('preset')!r} ({config_path}); leave out --preset")
    try:
        return TrainConfig(**dict(saved["train"], **overrides))
    except (TypeError, ValueError) as error:
        raise EiKerasError(f"{config_path}: not a valid training configuration ({error}); "
                           f"{rundir.NEW_RUN}") from None


def _compile(model, config, optimizer=None):
    if optimizer is None:
        optimizer = AdamW(
            learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            epsilon=config.epsilon, global_clipnorm=config.global_clipnorm)
    codec = target_codec(model)  # the clamp the output layer decodes with
    loss = RegularizedGaussianNLL(codec.log_var_min, codec.log_var_max,
                                  config.target_variance, config.variance_weight)
    model.compile(optimizer=optimizer, loss={"posterior": loss}, jit_compile=config.jit_compile)


@_one_writer
def train(data, prefix_length, preset=None, out_dir=None, *, resume=False,
          verbose="auto", **overrides):
    """Train on one prefix length; write the run directory described in this module.

    Args:
        data: path of an HDF5 dataset from ``ei-keras generate``, or an object with the
            attributes of ``ei_keras.data.PrefixData`` (``t``, ``pH``, ``known``,
            ``known_names``, ``targets``, ``target_names``, ``config``).
        prefix_length: prefix length in seconds (a group of the file), or ``"any"`` for
            the file's any-format traces (every sample its own length and reading rate;
            use the ``"anyformat"`` preset).
        preset: ``"improved"`` (the default for a new run) or ``"baseline"``; a resumed
            run keeps its own.
        out_dir: run directory (default ``runs/<time>-<preset>-<L>s``); it must not hold a
            run unless ``resume``. One trainer at a time writes it (an exclusive lock).
        resume: continue the run in ``out_dir`` after its last completed epoch, with its
            saved configuration (only ``epochs`` may be raised), on the same data.
        verbose: Keras verbosity; ``"auto"`` shows a progress bar on a terminal and one
            line per epoch otherwise.
        **overrides: any :class:`TrainConfig` field, e.g. ``epochs=50, batch_size=128``.

    Returns:
        :class:`TrainResult`.

    Raises:
        EiKerasError: unreadable data; a run directory already holding a run, or being
            written by another process (its pid is named); nothing to resume, other data
            or settings than the run's, or run files that contradict each other.
        ValueError: an unknown or invalid setting.
    """
    run_dir = out_dir  # set by _one_writer: created and locked
    if resume:
        saved = rundir.read_config(run_dir)
        config = _resumed_config(run_dir, saved, preset, overrides)
    else:
        config = resolve_config(preset, **overrides)
        rundir.check_fresh(run_dir, RUN_FILES)
    (run_dir / STOP_FILE).unlink(missing_ok=True)

    dataset, data_path = _load_data(data, prefix_length)
    n = len(dataset.pH) if config.max_samples is None else min(config.max_samples, len(dataset.pH))
    if n < 2:
        raise EiKerasError(f"{data_path or 'the data'}: {n} sample(s); training needs at least "
                           f"2 (one is held out for validation)")
    if resume:
        rundir.check_same_data(run_dir, saved, dataset, _stored_length(prefix_length),
                               data_path, n)
    train_index, val_index = _split(n, config.val_fraction, config.seed)
    known_names, target_names = tuple(dataset.known_names), tuple(dataset.target_names)

    # The last completed epoch's state; the run's files rolled to it (history truncated).
    state = rundir.resume_state(run_dir, config.epochs) if resume else {}
    initial_epoch = int(state.get("epoch", 0))
    keras.utils.set_random_seed(config.seed + initial_epoch)

    if initial_epoch:
        model = rundir.load_last_model(run_dir)
        _compile(model, config, optimizer=model.optimizer)
        if state.get("learning_rate") is not None:
            model.optimizer.learning_rate = float(state["learning_rate"])
    else:
        generation = getattr(dataset, "config", None) or {}
        stats = fit_normalization(dataset.t[train_index], dataset.pH[train_index],
                                  dataset.known[train_index], dataset.targets[train_index],
                                  known_names, target_names,
                                  bounds=generation.get("param_ranges"),
                                  domain=training_domain(dataset))
        model_kwargs = architecture_kwargs(config.architecture, dataset.pH.shape[1])
        model_kwargs.update(config.model, pooling=config.pooling,
                            log_var_min=config.log_var_min, log_var_max=config.log_var_max)
        model = build_model(stats, **model_kwargs)
        _compile(model, config)
        rundir.clear_partial(run_dir)  # a resumed run that never completed an epoch
        write_json(run_dir / rundir.CONFIG, {
            "train": config.to_dict(),
            "model": {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()},
            "normalization": stats,
            "data": {"path": data_path, "prefix_length": _stored_length(prefix_length),
                     "n_points": int(dataset.pH.shape[1]), "n_train": int(len(train_index)),
                     "n_val": int(len(val_index)), "known_names": list(known_names),
                     "target_names": list(target_names),
                     "generation_config": getattr(dataset, "config", None)},
            "environment": {"backend": keras.backend.backend(), "keras": keras.__version__,
                            "python": platform.python_version()},
        })

    encode = target_codec(model).encode
    x_train, y_train = _batches(dataset, train_index, encode(dataset.targets[train_index]),
                                config, shuffle=True)
    x_val, y_val = _batches(dataset, val_index, encode(dataset.targets[val_index]), config,
                            shuffle=False)

    plateau = PlateauAfterWarmup(
        factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.min_lr,
        warmup_epochs=config.warmup_epochs, min_delta=config.plateau_min_delta)
    if "plateau" in state:
        plateau.set_state(state["plateau"])
    early_stopping = rundir.ResumableEarlyStopping(
        restored=state.get("early_stopping"), patience=config.early_stopping_patience,
        start_from_epoch=config.warmup_epochs)
    stop = StopOnFile(run_dir / STOP_FILE)
    recorder = rundir.RunRecorder(run_dir, config.epochs, plateau, early_stopping,
                                  checkpoint=state)
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
        if y_train is None:  # length-grouped batches carry their own targets and order
            data_kwargs = dict(x=x_train, validation_data=x_val)
        else:
            data_kwargs = dict(x=x_train, y=y_train, validation_data=(x_val, y_val),
                               batch_size=config.batch_size, shuffle=True)
        model.fit(**data_kwargs, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=verbose)
    except KeyboardInterrupt:
        recorder.status("interrupted", message=(
            f"interrupted during epoch {recorder.epoch + 1}; resume (--resume) continues "
            f"after epoch {recorder.epoch}"))
        raise
    except Exception as error:
        first_line = (str(error).splitlines() or [""])[0]
        recorder.status("failed", message=f"{type(error).__name__}: {first_line}")
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
    recorder.status(status, message="loss became NaN; best.keras holds the last good model"
                    if status == "failed" else None)
    return TrainResult(run_dir, status, run_dir / "best.keras", final_path, read_history(run_dir))
