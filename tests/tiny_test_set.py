"""A tiny simulated 30 s test set (no lag, no offset) and an untrained model saved beside it."""

import ei_keras
from ei_keras.data import load_prefix
from ei_keras.models import build_model, fit_normalization


def tiny_test_set(folder, n_samples, seed):
    """``(dataset path, its 30 s PrefixData)``; ``folder/model.keras`` is an untrained
    model normalised on that data."""
    data = ei_keras.generate_dataset(
        {"n_samples": n_samples, "seed": seed, "prefix_lengths": [30], "n_times": 101,
         "measurement_model": {"use_probe_lag": False, "use_offset": False}},
        folder / "test.h5", progress=False, workers=1)
    prefix = load_prefix(data, 30)
    model = build_model(fit_normalization(prefix.t, prefix.pH, prefix.known, prefix.targets))
    model.save(folder / "model.keras")
    return data, prefix
