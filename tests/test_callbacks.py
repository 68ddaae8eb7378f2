"""Exact learning-rate trajectories of LinearWarmup + PlateauAfterWarmup in a plain fit."""

import json
import math

import numpy as np
import pytest

import ei_keras  # noqa: F401
import keras
from keras import ops

from ei_keras.callbacks import HistoryLogger, LinearWarmup, PlateauAfterWarmup, StopOnFile

STEPS = 4  # batches per epoch: 32 samples, batch 8


def lr_of(model):
    return float(ops.convert_to_numpy(model.optimizer.learning_rate))


class RecordBatchLR(keras.callbacks.Callback):
    """The learning rate in effect for every training batch."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(lr_of(self.model))


class InjectMonitor(keras.callbacks.Callback):
    """Replace val_loss by a scripted sequence, before the plateau callback sees it."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def tiny_model(learning_rate=0.01):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    return model


def fit(model, callbacks, epochs, initial_epoch=0):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 2)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    return model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch,
                     callbacks=callbacks, verbose=0, shuffle=False)


@pytest.mark.backend
def test_warmup_then_plateau_exact_trajectory():
    # The monitor worsens during warmup (a naive plateau would count and cut there); after
    # warmup it stalls twice, so patience 2 cuts at the ends of epochs 5 and 8 (1-based).
    monitor = [1.0, 2.0, 3.0, 3.0, 3.0, 2.0, 2.5, 2.5]
    model, record = tiny_model(), RecordBatchLR()
    plateau = PlateauAfterWarmup(factor=0.5, patience=2, min_lr=1e-4, warmup_epochs=2,
                                 min_delta=0.0)
    history = fit(model, [LinearWarmup(2, 0.01), record, InjectMonitor(monitor), plateau],
                  epochs=8)
    ramp = [0.01 * (s + 1) / (2 * STEPS) for s in range(2 * STEPS)]
    expected = ramp + [0.01] * (3 * STEPS) + [0.005] * (3 * STEPS)
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"],
                               [0.005, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.005], rtol=1e-6)
    assert lr_of(model) == pytest.approx(0.0025)
    assert plateau.get_state() == {"best": 2.0, "wait": 0, "cooldown_counter": 0}


@pytest.mark.backend
def test_per_epoch_warmup_reads_target_from_the_optimizer():
    model, record = tiny_model(0.02), RecordBatchLR()
    history = fit(model, [LinearWarmup(4, per="epoch"), record], epochs=5)
    expected = [0.005, 0.01, 0.015, 0.02, 0.02]
    np.testing.assert_allclose(record.rates, np.repeat(expected, STEPS), rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-6)


@pytest.mark.backend
def test_resumed_fit_continues_the_ramp_and_the_plateau_counters():
    model, record = tiny_model(), RecordBatchLR()
    plateau = PlateauAfterWarmup(factor=0.5, patience=2, warmup_epochs=2, min_delta=0.0)
    plateau.set_state({"best": 1.0, "wait": 1, "cooldown_counter": 0})
    fit(model, [LinearWarmup(2, 0.01), record, InjectMonitor([9.0] * 4), plateau],
        epochs=3, initial_epoch=1)
    expected = [0.01 * (s + 1) / (2 * STEPS) for s in range(STEPS, 2 * STEPS)] + [0.01] * STEPS
    np.testing.assert_allclose(record.rates, expected, rtol=1e-6)
    # Restored wait=1 plus one more bad epoch reaches patience 2: one cut.
    assert lr_of(model) == pytest.approx(0.005)


@pytest.mark.backend
def test_cooldown_min_lr_and_relative_delta_for_negative_losses():
    model = tiny_model()
    plateau = PlateauAfterWarmup(factor=0.1, patience=1, min_lr=2e-4, warmup_epochs=0,
                                 cooldown=2)
    history = fit(model, [InjectMonitor([-2.0] * 6), plateau], epochs=6)
    # Best at epoch 1, cut after epoch 2, one quiet cooldown epoch (Keras counts again in
    # the epoch the cooldown ends), cut to min_lr after epoch 4, which then holds.
    np.testing.assert_allclose(history.history["learning_rate"],
                               [0.01, 0.01, 0.001, 0.001, 2e-4, 2e-4], rtol=1e-6)
    relative = PlateauAfterWarmup(min_delta=1e-3)
    relative.best = -2.0
    assert not relative._improved(-2.001) and relative._improved(-2.003)


def test_callbacks_refuse_a_learning_rate_schedule():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.9)
    model.compile(keras.optimizers.SGD(schedule), "mse")
    for callback in (LinearWarmup(2), PlateauAfterWarmup()):
        with pytest.raises(TypeError, match="LearningRateSchedule"):
            fit(model, [callback], epochs=1)


@pytest.mark.parametrize("make, text", [
    (lambda: LinearWarmup(-1), "warmup_epochs"), (lambda: LinearWarmup(per="step"), "per"),
    (lambda: PlateauAfterWarmup(factor=1.0), "factor"),
    (lambda: PlateauAfterWarmup(patience=0), "patience"),
    (lambda: PlateauAfterWarmup(min_delta_mode="rel"), "min_delta_mode")])
def test_callbacks_reject_bad_arguments(make, text):
    with pytest.raises(ValueError, match=text):
        make()


@pytest.mark.backend
def test_history_logger_and_stop_file(tmp_path):
    stop = tmp_path / "stop"

    class RequestStop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                stop.touch()

    model = tiny_model()
    log = tmp_path / "history.jsonl"
    stopper = StopOnFile(stop)
    callbacks = [PlateauAfterWarmup(monitor="loss", warmup_epochs=0), RequestStop(), stopper,
                 HistoryLogger(log)]
    fit(model, callbacks, epochs=5)
    assert stopper.stopped
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 2
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    assert {"loss", "learning_rate", "time"} <= set(records[0])
    assert math.isfinite(records[0]["loss"])
