"""RegularizedGaussianNLL against a NumPy reference; clamp, floor, reduction, config."""

import math

import numpy as np
import pytest

import ei_keras  # noqa: F401
import keras
from keras import ops

from ei_keras.losses import (
    LOG_VAR_MAX,
    LOG_VAR_MIN,
    RegularizedGaussianNLL,
    regularized_gaussian_nll,
)

pytestmark = pytest.mark.backend


def reference(y, y_pred, lo=LOG_VAR_MIN, hi=LOG_VAR_MAX, target=0.1, weight=0.01):
    p = y.shape[1]
    mean, log_var = y_pred[:, :p], np.clip(y_pred[:, p:], lo, hi)
    var = np.exp(log_var)
    nll = 0.5 * np.log(2 * np.pi) + 0.5 * log_var + 0.5 * (y - mean) ** 2 / var
    return (nll + weight * (var - target) ** 2).mean(axis=1)


def draws(n=32, p=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, p)).astype("float32")
    # Log-variances spread across and beyond the clamp on both sides.
    y_pred = np.concatenate([rng.normal(size=(n, p)), rng.uniform(-16, 12, (n, p))], axis=1)
    return y, y_pred.astype("float32")


@pytest.mark.parametrize("kwargs", [{}, {"target_variance": 0.5, "variance_weight": 0.2},
                                    {"log_var_min": -2.0, "log_var_max": 1.0,
                                     "variance_weight": 0.0}])
def test_matches_numpy_reference(kwargs):
    y, y_pred = draws()
    names = {"log_var_min": "lo", "log_var_max": "hi", "target_variance": "target",
             "variance_weight": "weight"}
    expected = reference(y, y_pred, **{names[k]: v for k, v in kwargs.items()})
    per_sample = ops.convert_to_numpy(regularized_gaussian_nll(y, y_pred, **kwargs))
    np.testing.assert_allclose(per_sample, expected, rtol=1e-5)
    reduced = float(ops.convert_to_numpy(RegularizedGaussianNLL(**kwargs)(y, y_pred)))
    np.testing.assert_allclose(reduced, expected.mean(), rtol=1e-5)
    summed = RegularizedGaussianNLL(reduction="sum", **kwargs)(y, y_pred)
    np.testing.assert_allclose(float(ops.convert_to_numpy(summed)), expected.sum(), rtol=1e-5)


def test_plain_nll_is_bounded_below_by_its_floor():
    y = np.zeros((4, 2), "float32")
    y_pred = np.concatenate([np.zeros((4, 2)), np.full((4, 2), -30.0)], axis=1).astype("float32")
    loss = float(ops.convert_to_numpy(RegularizedGaussianNLL(variance_weight=0.0)(y, y_pred)))
    assert loss == pytest.approx(0.5 * (math.log(2 * math.pi) + LOG_VAR_MIN), rel=1e-6)


def test_gradients_are_finite_and_serialisation_keeps_arguments():
    loss = RegularizedGaussianNLL(log_var_min=-3.0, target_variance=0.2, variance_weight=0.05)
    config = loss.get_config()
    assert config["log_var_min"] == -3.0 and config["variance_weight"] == 0.05
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, RegularizedGaussianNLL)
    assert restored.get_config() == config
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.compile("adam", loss=restored)
    y, _ = draws(n=16, p=2)
    history = model.fit(np.ones((16, 3), "float32"), y, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("kwargs, text", [
    ({"log_var_min": 1.0, "log_var_max": 0.0}, "log_var_min"),
    ({"target_variance": 0.0}, "target_variance"), ({"variance_weight": -1.0}, "variance_weight")])
def test_rejects_bad_arguments(kwargs, text):
    with pytest.raises(ValueError, match=text):
        RegularizedGaussianNLL(**kwargs)
