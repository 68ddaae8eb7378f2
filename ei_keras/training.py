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

Presets (:data:`ei_keras.config.PRESETS`, beside :class:`~ei_keras.config.TrainConfig`):
``improved`` (compact architecture, weighted pooling, AdamW weight decay 1e-5,
global clip norm 5, batch 256, lr 1e-3, 5 warmup epochs, plateau ×0.7 after 10 epochs),
``anyformat`` (the same recipe on the binned architecture, for ``prefix_length="any"``;
plateau after 8 epochs) and ``baseline`` (the old recipe: full-size TCN, average pooling, batch 128, lr 5e-4, no
weight decay, global clip norm 1, no warmup, plateau ×0.5 after 5 epochs).
"""

import contextlib
import dataclasses
import functools
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
from ei_keras.fileio import make_dirs, interrupt_on_signals, write_json
from ei_keras.jobs import FAILED, JobState, read_job
from ei_keras.losses import RegularizedGaussianNLL
from ei_keras.models import (
    architecture_kwargs,
    build_model,
    fit_normalization,
    model_info,
    save_model,
    target_codec,
)
from ei_keras.data.batches import LengthBatches
from ei_keras.data.shards import sha256_of
from ei_keras.data.streaming import (
    RowSource,
    StreamedBatches,
    normalization_sample,
    scan_domain,
)
from ei_keras.devices import check_batch_size, data_parallel, shareable_rows
from ei_keras.inference.domain import training_domain
from ei_keras.optimizers import AdamW
from ei_keras.config import ANY_FORMAT, TrainConfig, resolve_config

# Keyword arguments of train() that choose how a run executes, not what it trains: not
# TrainConfig fields, and a resumed run may change them.
EXECUTION_OPTIONS = ("verbose", "stream", "devices", "callbacks")

RUN_FILES = ("config.json", "history.jsonl", "status.json", "checkpoint.json", "best.keras",
             "last.keras", "final.keras")
STOP_FILE = "stop"


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


def _load_data(data, prefix_length, stream):
    """The data in memory, or with ``stream`` a :class:`RowSource` over the file; several
    paths are loaded as one (:func:`ei_keras.data.combine_datasets`)."""
    if isinstance(data, (list, tuple)):
        paths = [os.fspath(path) for path in data]
        if len(paths) == 1:
            return _load_data(paths[0], prefix_length, stream)
        if stream:
            raise EiKerasError("stream=True reads one dataset file; give one path, or load "
                               "several datasets into memory (stream=False)")
        from ei_keras.data import combine_datasets, load_any_format, load_prefix

        load = load_any_format if prefix_length == ANY_FORMAT else \
            lambda path: load_prefix(path, prefix_length)
        return combine_datasets(paths, load), paths
    if isinstance(data, (str, os.PathLike)):
        from ei_keras.data import load_any_format, load_prefix

        if stream:
            return RowSource(data, None if prefix_length == ANY_FORMAT else prefix_length), \
                os.fspath(data)
        if prefix_length == ANY_FORMAT:
            return load_any_format(data), os.fspath(data)
        return load_prefix(data, prefix_length), os.fspath(data)
    if stream:
        raise EiKerasError("stream=True reads a dataset file: give its path, not arrays")
    return data, None


def _shape(dataset):
    """(samples, readings per trace) of in-memory data or of a :class:`RowSource`."""
    if isinstance(dataset, RowSource):
        return dataset.n_samples, dataset.n_points
    return dataset.pH.shape


def _normalization_data(dataset, train_index, n, seed):
    """The training rows the normalisation is fitted on, and the training domain: every
    training row in memory; streamed, a bounded sample of them and a scan of the file."""
    if isinstance(dataset, RowSource):
        return normalization_sample(dataset, train_index, seed), scan_domain(dataset, n)
    rows = {name: getattr(dataset, name)[train_index] for name in ("t", "pH", "known", "targets")}
    return rows, training_domain(dataset)


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


def default_run_dir(preset, prefix_length):
    """``runs/<time>-<preset>-<L>``: where a run goes when no directory is given."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{preset}-{_length_label(prefix_length)}"


def _new_run_dir(out_dir, preset, prefix_length):
    """``out_dir`` (default :func:`default_run_dir`), created."""
    return make_dirs(default_run_dir(preset, prefix_length) if out_dir is None else out_dir)


# Written states of a run that has ended: a refused resume leaves its status.json as it is
# (as ei_keras.training_runs.ENDED_STATES, the runs a rerun keeps).
ENDED_RUN_STATES = ("finished", "early_stopped", "stopped")
# Fields of status.json that tell of the process writing it, not of the run.
_WRITER_FIELDS = ("state", "message", "pid", "host", "started", "updated", "batch", "steps",
                  "current_epoch")


def refused_start(run_dir):
    """Whether ``run_dir/status.json`` is all a refused start left (state failed, no
    config.json): no run, and a new one may start there."""
    job = read_job(run_dir)
    return (job is not None and job.written == FAILED
            and not (Path(run_dir) / rundir.CONFIG).exists())


def _holds_run(run_dir):
    """Whether ``run_dir`` holds (some of) a run, a refused start's status.json aside."""
    run_dir = Path(run_dir)
    if any((run_dir / name).exists() for name in (*RUN_FILES, rundir.CHECKPOINT)
           if name != rundir.STATUS):
        return True
    return (run_dir / rundir.STATUS).exists() and not refused_start(run_dir)


def _write_refusal(run_dir, error, resume, fresh):
    """Write ``failed`` with ``error``'s one line into ``run_dir/status.json``, holding the
    directory's lock, where that file is this trainer's to write (see :func:`record_refusal`).
    ``fresh``: the directory held no run when this trainer took it."""
    fields = {}
    if resume:
        status = job.fields if (job := read_job(run_dir)) else {}
        if not (run_dir / rundir.CONFIG).exists() or status.get("state") in ENDED_RUN_STATES:
            return
        fields = {k: v for k, v in status.items() if k not in _WRITER_FIELDS}
    elif not fresh:
        return
    JobState(run_dir / rundir.STATUS, "train", unit="epochs").refuse(error, **fields)


def record_refusal(out_dir, error, *, resume=False):
    """Tell readers of ``out_dir/status.json`` (``ei-keras status``, the dashboard) why a
    training was refused before its first epoch: ``failed`` with ``error``'s one line.

    :func:`train` calls it for its own refusals; call it for those of a caller that
    refuses before ``train`` (``ei-keras train`` with a config file that is not JSON).
    Nothing else is written, and nothing at all where that would mislead:

    - a new run (``resume`` False) writes only ``status.json``, in ``out_dir`` (created if
      need be), and only while the directory holds no run: a run already there, or
      being trained by another process, is left as it is;
    - a refused resume leaves a run that has ended (finished, early-stopped, stopped)
      exactly as it was, status.json included, since the run is still what it was and
      reruns keep it; a run that has not ended (interrupted, failed, or left "running"
      by a killed process) reads ``failed`` with the refusal, its epoch and best score
      kept. A directory without a run (no config.json) gets nothing.

    ``out_dir`` None (no directory named) writes nothing. Never raises: the refusal is
    the caller's error to raise.
    """
    if out_dir is None:
        return
    run_dir = Path(out_dir)
    if resume and not (run_dir / rundir.CONFIG).exists():
        return
    with contextlib.suppress(EiKerasError, OSError):
        make_dirs(run_dir)
        with rundir.holding(run_dir):
            _write_refusal(run_dir, error, resume, fresh=not _holds_run(run_dir))


def _status_bytes(run_dir):
    try:
        return (run_dir / rundir.STATUS).read_bytes()
    except OSError:
        return None


def _one_writer(train_function):
    """``train`` holding its run directory's lock, with SIGTERM handled like Ctrl-C, on
    its ``devices`` (a ``keras.distribution`` scope, checked before anything is made).

    Settings are checked and the directory is created before the lock is taken; whether
    the directory already holds a run, and everything a resume reads, is looked at only
    while holding it. A refusal before the first epoch is written to status.json as
    :func:`record_refusal` says.
    """

    @functools.wraps(train_function)
    def locked(data, prefix_length, preset=None, out_dir=None, *, resume=False,
               init_from=None, **kwargs):
        try:
            distribution = data_parallel(kwargs.get("devices", 1))
            if resume and init_from is not None:
                raise EiKerasError(
                    "a resumed run continues from its own last epoch; starting from another "
                    "model's weights (init_from, --init-from) is for a new run: leave out one "
                    "of them")
            if resume:
                if out_dir is None:
                    raise EiKerasError(
                        "nothing to resume: give the run directory (out_dir, --out)")
                rundir.read_config(out_dir)
                run_dir = Path(out_dir)
            else:
                preset = preset or "improved"
                resolve_config(preset, **{k: v for k, v in kwargs.items()
                                          if k not in EXECUTION_OPTIONS})
                run_dir = _new_run_dir(out_dir, preset, prefix_length)
        except Exception as error:
            record_refusal(out_dir, error, resume=resume)
            raise
        with rundir.holding(run_dir), interrupt_on_signals(), (
                distribution.scope() if distribution else contextlib.nullcontext()):
            fresh, before = not _holds_run(run_dir), _status_bytes(run_dir)
            try:
                return train_function(data, prefix_length, preset, run_dir, resume=resume,
                                      init_from=init_from, **kwargs)
            except Exception as error:
                # Holding the lock, only this trainer writes status.json: unchanged, it
                # was refused before it wrote its first state.
                if _status_bytes(run_dir) == before:
                    with contextlib.suppress(OSError):
                        _write_refusal(run_dir, error, resume, fresh)
                raise

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


def _warm_start_source(source_path, known_names, target_names):
    """The saved model at ``source_path`` and what ``config.json`` records of it;
    refused unless it reads the same known inputs and infers the same targets."""
    from ei_keras.inference.posterior import load_model

    source = load_model(source_path)
    info = model_info(source)
    if (tuple(info["known_names"]), tuple(info["target_names"])) != (known_names, target_names):
        raise EiKerasError(
            f"{source_path} reads {', '.join(info['known_names'])} and infers "
            f"{', '.join(info['target_names'])}; this data has {', '.join(known_names)} and "
            f"{', '.join(target_names)}: start from a model trained on data like this")
    return source, {"path": os.fspath(source_path), "sha256": sha256_of(source_path)}


def _copy_weights(source, model, source_path):
    """Give ``model`` the weights of ``source`` (a warm start); refused unless both have
    the same weights (names and shapes)."""
    theirs = {weight.path: weight for weight in source.weights}
    mine = {weight.path: weight for weight in model.weights}
    differ = sorted(set(theirs) ^ set(mine)) or [
        path for path in mine if tuple(mine[path].shape) != tuple(theirs[path].shape)]
    if differ:
        trained = (model_info(source)["run_config"] or {}).get("train", {})
        raise EiKerasError(
            f"{source_path} has another network than this run (first difference: "
            f"{differ[0]}); give the settings it was trained with (architecture "
            f"{trained.get('architecture', '?')!r}, network {trained.get('model', '?')})")
    for path, weight in mine.items():
        weight.assign(theirs[path].value)


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
def train(data, prefix_length, preset=None, out_dir=None, *, resume=False, init_from=None,
          verbose="auto", stream=False, devices=1, callbacks=(), **overrides):
    """Train on one prefix length; write the run directory described in this module.

    Args:
        data: path of an HDF5 dataset from ``ei-keras generate`` (a list of paths trains
            on their rows as one, see :func:`ei_keras.data.combine_datasets`), or an object
            with the attributes of ``ei_keras.data.PrefixData`` (``t``, ``pH``, ``known``,
            ``known_names``, ``targets``, ``target_names``, ``config``).
        prefix_length: prefix length in seconds (a group of the file), or ``"any"`` for
            the file's any-format traces (every sample its own length and reading rate;
            use the ``"anyformat"`` preset).
        preset: ``"improved"`` (the default for a new run) or ``"baseline"``; a resumed
            run keeps its own.
        out_dir: run directory (default ``runs/<time>-<preset>-<L>s``); it must not hold a
            run unless ``resume``. One trainer at a time writes it (an exclusive lock).
            A refusal before the first epoch (a bad setting, data missing or of the wrong
            kind, a resume that does not match the run) is written to its status.json as
            ``failed`` with the error's message, as :func:`record_refusal` says: only
            that file, and never over a run already there or a resumed run that has ended.
        resume: continue the run in ``out_dir`` after its last completed epoch, with its
            saved configuration (only ``epochs`` may be raised), on the same data.
        init_from: a saved ``.keras`` model to start a new run from (fine-tuning, e.g. on
            fresh data): its weights replace the initial ones. The network settings must
            give its architecture, and the data the same known inputs and targets; the
            normalisation is fitted on this run's data as for any run. ``config.json``
            records its path and sha256.
        verbose: Keras verbosity; ``"auto"`` shows a progress bar on a terminal and one
            line per epoch otherwise.
        stream: read the file in blocks while training (:mod:`ei_keras.data.streaming`)
            instead of loading it: memory stays flat whatever its size; the same split,
            normalisation fitted on at most ``NORMALIZATION_ROWS`` training rows.
        devices: 1, or (jax only) a number of devices or ``"all"`` to train data
            parallel (:mod:`ei_keras.devices`); ``batch_size`` must divide evenly.
        callbacks: Keras callbacks of yours, run after ours (after each epoch is
            committed to the run directory), e.g. :class:`ei_keras.tracking.MlflowTracker`.
        **overrides: any :class:`TrainConfig` field, e.g. ``epochs=50, batch_size=128``.

    Returns:
        :class:`TrainResult`.

    Raises:
        EiKerasError: unreadable data; a run directory already holding a run, or being
            written by another process (its pid is named); nothing to resume, other data
            or settings than the run's, or run files that contradict each other; an
            ``init_from`` model that is unreadable or of another architecture, or given
            with ``resume``.
        ConfigError: an unknown or invalid setting (a ValueError; the message names it).
    """
    run_dir = out_dir  # set by _one_writer: created and locked
    if resume:
        saved = rundir.read_config(run_dir)
        config = _resumed_config(run_dir, saved, preset, overrides)
    else:
        config = resolve_config(preset, **overrides)
        # A start refused before left status.json alone (record_refusal): no run.
        rundir.check_fresh(run_dir, [name for name in RUN_FILES if name != rundir.STATUS
                                     or not refused_start(run_dir)])
    (run_dir / STOP_FILE).unlink(missing_ok=True)

    distribution = keras.distribution.distribution()  # the devices _one_writer entered
    check_batch_size(config.batch_size, distribution)
    dataset, data_path = _load_data(data, prefix_length, stream)
    n_rows, n_points = _shape(dataset)
    n = n_rows if config.max_samples is None else min(config.max_samples, n_rows)
    if n < 2:
        raise EiKerasError(f"{data_path or 'the data'}: {n} sample(s); training needs at least "
                           f"2 (one is held out for validation)")
    if resume:
        rundir.check_same_data(run_dir, saved, dataset, _stored_length(prefix_length),
                               data_path, n, n_points)
    train_index, val_index = _split(n, config.val_fraction, config.seed)
    known_names, target_names = tuple(dataset.known_names), tuple(dataset.target_names)

    # The last completed epoch's state; the run's files rolled to it (history truncated).
    state = rundir.resume_state(run_dir, config.epochs) if resume else {}
    initial_epoch = int(state.get("epoch", 0))
    keras.utils.set_random_seed(config.seed + initial_epoch)
    if resume and not initial_epoch and saved.get("init_from"):
        init_from = saved["init_from"]["path"]  # a warm start that completed no epoch

    if initial_epoch:
        model = rundir.load_last_model(run_dir)
        _compile(model, config, optimizer=model.optimizer)
        if state.get("learning_rate") is not None:
            model.optimizer.learning_rate = float(state["learning_rate"])
    else:
        generation = getattr(dataset, "config", None) or {}
        rows, domain = _normalization_data(dataset, train_index, n, config.seed)
        stats = fit_normalization(rows["t"], rows["pH"], rows["known"], rows["targets"],
                                  known_names, target_names,
                                  bounds=generation.get("param_ranges"), domain=domain)
        model_kwargs = architecture_kwargs(config.architecture, n_points)
        model_kwargs.update(config.model, pooling=config.pooling,
                            log_var_min=config.log_var_min, log_var_max=config.log_var_max)
        run_config = {"dataset": getattr(dataset, "config", None), "train": config.to_dict()}
        if init_from is not None:
            source, run_config["init_from"] = _warm_start_source(init_from, known_names,
                                                                 target_names)
        model = build_model(stats, **model_kwargs, run_config=run_config)
        if init_from is not None:
            _copy_weights(source, model, init_from)
        _compile(model, config)
        rundir.clear_partial(run_dir)  # a resumed run that never completed an epoch
        write_json(run_dir / rundir.CONFIG, {
            "train": config.to_dict(),
            "model": {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()},
            "normalization": stats,
            "data": {"path": data_path, "prefix_length": _stored_length(prefix_length),
                     "n_points": n_points, "n_train": int(len(train_index)),
                     "n_val": int(len(val_index)), "known_names": list(known_names),
                     "target_names": list(target_names),
                     "generation_config": getattr(dataset, "config", None)},
            "environment": {"backend": keras.backend.backend(), "keras": keras.__version__,
                            "python": platform.python_version()},
            **({"init_from": run_config["init_from"]} if init_from is not None else {}),
        })

    encode = target_codec(model).encode
    train_index, val_index = (shareable_rows(index, distribution)
                              for index in (train_index, val_index))
    if stream:
        x_train = StreamedBatches(dataset, train_index, encode, config.batch_size, shuffle=True,
                                  seed=config.seed, epoch=initial_epoch)
        x_val = StreamedBatches(dataset, val_index, encode, config.batch_size, shuffle=False)
    else:
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
    fit_callbacks = []
    if config.warmup_epochs:
        fit_callbacks.append(LinearWarmup(config.warmup_epochs, config.learning_rate,
                                          per=config.warmup_per))
    fit_callbacks += [plateau, early_stopping, keras.callbacks.TerminateOnNaN(), stop,
                      HistoryLogger(run_dir / "history.jsonl"), recorder, *callbacks]

    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    recorder.status("running")
    try:
        if stream:  # streamed batches come in their own order, a window at a time
            data_kwargs = dict(x=x_train, validation_data=x_val, shuffle=False)
        elif y_train is None:  # length-grouped batches carry their own targets and order
            data_kwargs = dict(x=x_train, validation_data=x_val)
        else:
            data_kwargs = dict(x=x_train, y=y_train, validation_data=(x_val, y_val),
                               batch_size=config.batch_size, shuffle=True)
        model.fit(**data_kwargs, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=fit_callbacks, verbose=verbose)
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
