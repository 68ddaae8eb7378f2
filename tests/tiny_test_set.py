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


def hot_test_set(folder, n_samples=30):
    """``(model path, test set path, its 30 s PrefixData)``: an untrained model that carries
    the domain of a set at the default 20–40 °C, and a test set at 30–50 °C, about half of
    it outside the temperatures the model was trained on."""
    from ei_keras.inference.domain import training_domain

    config = {"n_samples": n_samples, "prefix_lengths": [30], "prefix_n_points": 31,
              "n_times": 101}
    train = load_prefix(ei_keras.generate_dataset(
        dict(config, seed=1), folder / "train.h5", progress=False, workers=1), 30)
    model = build_model(fit_normalization(
        train.t, train.pH, train.known, train.targets, train.known_names, train.target_names,
        bounds=train.config["param_ranges"], domain=training_domain(train)))
    model.save(folder / "model.keras")
    hot = ei_keras.generate_dataset(
        dict(config, seed=2, param_ranges={"temperature_C": [30.0, 50.0]}),
        folder / "hot.h5", progress=False, workers=1)
    return folder / "model.keras", hot, load_prefix(hot, 30)
