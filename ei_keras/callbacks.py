"""Learning-rate and bookkeeping callbacks that work in anyone's ``model.fit``.

Exactly one callback writes the learning rate at any time: :class:`LinearWarmup` during
the first ``warmup_epochs`` epochs, :class:`PlateauAfterWarmup` afterwards (it neither
counts patience nor cuts during warmup). Both record the rate in effect during each epoch
as ``logs["learning_rate"]``, so it appears in ``history.history["learning_rate"]``.
Both need an optimizer with a float learning rate (a ``LearningRateSchedule`` cannot be
written; they raise TypeError, as Keras's ``ReduceLROnPlateau`` does).
"""

import math
import os
import time
import warnings

import keras
from keras import ops

from ei_keras.jsonutil import dumps_strict


def _current_lr(optimizer):
    return float(ops.convert_to_numpy(optimizer.learning_rate))


def _check_float_lr(optimizer, owner):
    if isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        raise TypeError(
            f"{owner} writes the learning rate, but the optimizer holds a "
            f"LearningRateSchedule; create the optimizer with a float learning_rate")


class LinearWarmup(keras.callbacks.Callback):
    """Raise the learning rate linearly from near zero to its target.

    Per batch (default), step ``s`` (0-based, counted over all warmup epochs) trains with
    ``target · (s + 1) / (warmup_epochs · steps_per_epoch)``; per epoch, epoch ``e`` trains
    with ``target · (e + 1) / warmup_epochs``. The last warmup step uses exactly the
    target; from epoch ``warmup_epochs`` on this callback writes nothing. When fit does not
    know the steps per epoch, it falls back to per-epoch steps. Epoch numbers are fit's own,
    so ``fit(initial_epoch=...)`` resumes the ramp where it stopped.

    Args:
        warmup_epochs: number of warmup epochs (≥ 0; 0 disables).
        target_learning_rate: the rate reached at the end of warmup; ``None`` reads the
            optimizer's rate when training first begins.
        per: ``"batch"`` or ``"epoch"``.

    Example:
        >>> model.fit(x, y, epochs=50, callbacks=[LinearWarmup(5), PlateauAfterWarmup(5)])
    """

    def __init__(self, warmup_epochs=5, target_learning_rate=None, per="batch"):
        super().__init__()
        if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an int >= 0; got {warmup_epochs!r}")
        if target_learning_rate is not None and not target_learning_rate > 0:
            raise ValueError(
                f"target_learning_rate must be > 0 or None; got {target_learning_rate!r}")
        if per not in ("batch", "epoch"):
            raise ValueError(f"per must be 'batch' or 'epoch'; got {per!r}")
        self.warmup_epochs = warmup_epochs
        self.target_learning_rate = target_learning_rate
        self.per = per
        self._target = target_learning_rate
        self._epoch = 0

    def _set(self, value):
        self.model.optimizer.learning_rate = value

    def on_train_begin(self, logs=None):
        _check_float_lr(self.model.optimizer, "LinearWarmup")
        if self._target is None:
            self._target = _current_lr(self.model.optimizer)

    def _steps(self):
        steps = (self.params or {}).get("steps")
        return steps if self.per == "batch" and steps else None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if epoch < self.warmup_epochs and self._steps() is None:
            self._set(self._target * (epoch + 1) / self.warmup_epochs)

    def on_train_batch_begin(self, batch, logs=None):
        steps = self._steps()
        if self._epoch < self.warmup_epochs and steps is not None:
            step = self._epoch * steps + batch
            self._set(self._target * (step + 1) / (self.warmup_epochs * steps))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "learning_rate" not in logs:
            logs["learning_rate"] = _current_lr(self.model.optimizer)


class PlateauAfterWarmup(keras.callbacks.Callback):
    """Cut the learning rate when the monitored value stops improving, after warmup.

    Epochs before ``warmup_epochs`` are ignored entirely: no best value, no patience, no
    cut. Afterwards it behaves like Keras's ``ReduceLROnPlateau``: after ``patience``
    epochs without improvement the rate becomes ``max(rate · factor, min_lr)``, then
    ``cooldown`` epochs pass before counting resumes. (Torch's scheduler cuts one epoch
    later, after ``patience + 1`` bad epochs.)

    An improvement must beat the best value by ``min_delta``, absolute or, with
    ``min_delta_mode="relative"``, times ``|best|`` (unlike torch's relative threshold this
    stays strict for negative losses such as a Gaussian NLL).

    Args:
        monitor: the logged quantity to watch.
        factor: multiplier of the rate at each cut, in (0, 1).
        patience: epochs without improvement before a cut (≥ 1).
        min_lr: the rate never goes below this.
        warmup_epochs: epochs ignored at the start (≥ 0).
        min_delta: the margin an improvement must exceed (≥ 0).
        min_delta_mode: ``"relative"`` or ``"absolute"``.
        cooldown: epochs after a cut during which patience is not counted.
        mode: ``"min"`` or ``"max"``.
        verbose: 1 prints each cut.
    """

    def __init__(self, monitor="val_loss", factor=0.7, patience=10, min_lr=1e-6,
                 warmup_epochs=5, min_delta=1e-4, min_delta_mode="relative", cooldown=0,
                 mode="min", verbose=0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1); got {factor!r}")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an int >= 1; got {patience!r}")
        if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be an int >= 0; got {warmup_epochs!r}")
        if not min_lr >= 0 or not min_delta >= 0:
            raise ValueError(f"min_lr and min_delta must be >= 0; got {min_lr!r}, {min_delta!r}")
        if min_delta_mode not in ("relative", "absolute"):
            raise ValueError(
                f"min_delta_mode must be 'relative' or 'absolute'; got {min_delta_mode!r}")
        if not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"cooldown must be an int >= 0; got {cooldown!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = patience
        self.min_lr = float(min_lr)
        self.warmup_epochs = warmup_epochs
        self.min_delta = float(min_delta)
        self.min_delta_mode = min_delta_mode
        self.cooldown = cooldown
        self.mode = mode
        self.verbose = verbose
        self._restored = None
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def get_state(self):
        """JSON-able progress (best, wait, cooldown) for resuming a run.

        ``best`` is None while no value has been seen (strict JSON has no infinity).
        """
        best = self.best if math.isfinite(self.best) else None
        return {"best": best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        """Restore :meth:`get_state`'s dict; survives the next ``on_train_begin``."""
        self._restored = dict(state)

    def _improved(self, current):
        margin = self.min_delta
        if self.min_delta_mode == "relative" and math.isfinite(self.best):
            margin *= abs(self.best)
        if self.mode == "min":
            return current < self.best - margin
        return current > self.best + margin

    def on_train_begin(self, logs=None):
        _check_float_lr(self.model.optimizer, "PlateauAfterWarmup")
        self._reset()
        if self._restored is not None:
            best = self._restored.get("best")
            self.best = float(best) if best is not None else self.best
            self.wait = int(self._restored["wait"])
            self.cooldown_counter = int(self._restored["cooldown_counter"])
            self._restored = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        lr = _current_lr(self.model.optimizer)
        logs["learning_rate"] = lr
        if epoch < self.warmup_epochs:
            return
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"PlateauAfterWarmup monitors {self.monitor!r}, which is not in the logs "
                f"(available: {sorted(logs)}); the learning rate is left alone",
                stacklevel=2)
            return
        current = float(current)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                new_lr = max(lr * self.factor, self.min_lr)
                self.model.optimizer.learning_rate = new_lr
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: PlateauAfterWarmup cuts the learning rate "
                          f"to {new_lr:.3g}")
                self.cooldown_counter = self.cooldown
                self.wait = 0


class HistoryLogger(keras.callbacks.Callback):
    """Append one JSON line per epoch to ``path``: ``{"epoch": n, "time": ..., **logs}``.

    ``epoch`` counts completed epochs (1-based); ``time`` is seconds since the epoch (Unix).
    Each line is strict JSON (a NaN or infinite value is written as ``null``), written,
    flushed to disk and closed at the end of its epoch, so another process can poll the
    file while training runs. Put it after callbacks that add to the logs (such as the
    learning-rate callbacks) so their entries are included.

    Args:
        path: the ``.jsonl`` file; created if missing, appended to otherwise.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "time": time.time()}
        record.update({key: float(value) for key, value in (logs or {}).items()})
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(dumps_strict(record) + "\n")
            stream.flush()
            os.fsync(stream.fileno())


class StopOnFile(keras.callbacks.Callback):
    """End training cleanly as soon as a file appears (e.g. a dashboard's "Stop").

    Checked after every training batch; the current epoch is cut short, the usual
    end-of-epoch and end-of-training callbacks still run (so checkpoints stay valid).

    Args:
        path: the file whose existence requests the stop.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if os.path.exists(self.path):
            self.stopped = True
            # ``_model`` avoids the per-batch state sync that ``self.model`` costs on jax.
            self._model.stop_training = True
