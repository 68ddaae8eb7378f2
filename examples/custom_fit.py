"""Use ei_keras's pooling layer, loss and learning-rate callbacks in your own model.fit.

A small network of your own (one causal Conv1D) reads simulated pH prefixes and predicts a
Gaussian over log10(activity) and k_d, trained with the regularised Gaussian NLL, a
linear warmup and a plateau schedule that waits for the warmup. The attention weights are
a named output, and the saved ``.keras`` loads back with nothing but ``import ei_keras``.

    python examples/custom_fit.py --samples 2000 --epochs 20
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

import ei_keras  # registers the ei_keras classes (and picks torch unless KERAS_BACKEND is set)
import keras
from ei_keras.callbacks import LinearWarmup, PlateauAfterWarmup
from ei_keras.layers import WeightedTemporalPooling
from ei_keras.losses import RegularizedGaussianNLL
from ei_keras.optimizers import AdamW


def simulated_prefixes(n, steps, seed):
    """Noisy 30 s pH prefixes as ``(n, steps, 1)`` changes from the initial pH, the
    standardised known conditions ``(n, 5)`` and targets ``[log10(activity), k_d]``."""
    rng = np.random.default_rng(seed)
    conditions = {
        "substrate_mM": rng.uniform(1, 100, n), "grams_urease_powder": rng.uniform(0.01, 0.5, n),
        "volume_L": rng.uniform(0.1, 1.0, n), "temperature_C": rng.uniform(20, 40, n),
        "initial_pH": rng.uniform(6.5, 7.5, n), "activity": 10 ** rng.uniform(-3, 0, n),
        "k_d": rng.uniform(0, 5e-3, n)}
    pH = ei_keras.simulate(conditions, np.linspace(0, 30, steps))
    pH += rng.normal(0, 0.01, pH.shape)
    readings = ((pH - conditions["initial_pH"][:, None]) / 0.1)[..., None].astype("float32")
    known = np.column_stack([conditions[name] for name in list(conditions)[:5]])
    known = ((known - known.mean(0)) / known.std(0)).astype("float32")
    y = np.column_stack([(np.log10(conditions["activity"]) + 1.5) / 0.87,
                         (conditions["k_d"] - 2.5e-3) / 1.44e-3]).astype("float32")
    return {"readings": readings, "known": known}, y


def build():
    readings = keras.Input((None, 1), name="readings")
    known = keras.Input((5,), name="known")
    hidden = keras.layers.Conv1D(32, 5, padding="causal", activation="relu")(readings)
    hidden = keras.layers.Conv1D(32, 5, padding="causal", activation="relu")(hidden)
    pooled, weights = WeightedTemporalPooling(name="pooling")(hidden, return_attention=True)
    context = keras.layers.Dense(32, activation="relu")(known)
    hidden = keras.layers.Concatenate()([pooled, context])
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    mean = keras.layers.Dense(2, name="mean")(hidden)
    log_var = keras.layers.Dense(2, name="log_var")(hidden)
    y_pred = keras.layers.Concatenate(name="posterior")([mean, log_var])
    return keras.Model({"readings": readings, "known": known},
                       {"posterior": y_pred, "attention": weights})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--warmup-epochs", type=int, default=3)
    args = parser.parse_args(argv)

    x, y = simulated_prefixes(args.samples, args.steps, seed=0)
    model = build()
    # A float learning rate: the callbacks write it. ei_keras's AdamW saves portably.
    model.compile(optimizer=AdamW(learning_rate=1e-3, weight_decay=1e-5, global_clipnorm=5.0),
                  loss={"posterior": RegularizedGaussianNLL()})
    history = model.fit(
        x, {"posterior": y}, validation_split=0.2, batch_size=64, epochs=args.epochs, verbose=2,
        callbacks=[LinearWarmup(warmup_epochs=args.warmup_epochs),
                   PlateauAfterWarmup(warmup_epochs=args.warmup_epochs, patience=4)])
    print("learning rate per epoch:",
          ", ".join(f"{lr:.2e}" for lr in history.history["learning_rate"]))

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "custom.keras"
        model.save(path)
        restored = keras.saving.load_model(path)  # no custom_objects needed
    out = restored.predict_on_batch({name: value[:3] for name, value in x.items()})
    print("targets of 3 traces:   ", np.array2string(y[:3], precision=2))
    print("posterior mean, log_var:", np.array2string(out["posterior"], precision=2))
    print("attention weights:", out["attention"].shape, "sum to",
          np.round(out["attention"].sum(axis=1), 4).tolist())
    print(f"final val_loss {history.history['val_loss'][-1]:.3f}")


if __name__ == "__main__":
    main()
