"""Gaussian negative log-likelihood with a clamped log-variance and a variance penalty."""

import math

import keras
from keras import ops

from ei_keras.targets import LOG_VAR_MAX, LOG_VAR_MIN

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_arguments(log_var_min, log_var_max, target_variance, variance_weight):
    if not log_var_min < log_var_max:
        raise ValueError(
            f"log_var_min must be < log_var_max; got {log_var_min!r}, {log_var_max!r}")
    if not target_variance > 0:
        raise ValueError(f"target_variance must be > 0; got {target_variance!r}")
    if not variance_weight >= 0:
        raise ValueError(f"variance_weight must be >= 0; got {variance_weight!r}")


def regularized_gaussian_nll(y_true, y_pred, log_var_min=LOG_VAR_MIN, log_var_max=LOG_VAR_MAX,
                             target_variance=0.1, variance_weight=0.01):
    """Per-sample Gaussian NLL averaged over the p targets, plus a variance penalty.

    With ``v = clip(log_var, log_var_min, log_var_max)`` and ``s² = exp(v)``, per target::

        0.5 log(2π) + 0.5 v + 0.5 (y - μ)² / s²  +  variance_weight · (s² - target_variance)²

    The first three terms are the exact Gaussian NLL, so the mean over targets is bounded
    below by ``0.5 (log(2π) + log_var_min)`` (≈ -5.98 for the default clamp) plus the
    penalty. The clamp bounds the predicted variance (no collapse to zero, no explosion);
    the penalty pulls every variance toward ``target_variance`` (in the units of the
    standardised targets), mostly curbing large variances.

    Args:
        y_true: ``(batch, p)`` targets.
        y_pred: ``(batch, 2 p)``, the concatenation ``[mean, log_var]``.
        log_var_min: lower clamp of the log-variance.
        log_var_max: upper clamp of the log-variance.
        target_variance: variance the penalty pulls toward (> 0).
        variance_weight: weight of the penalty (≥ 0; 0 switches it off).

    Returns:
        ``(batch,)`` losses.
    """
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    p = ops.shape(y_true)[-1]
    mean = y_pred[..., :p]
    log_var = ops.clip(y_pred[..., p:], log_var_min, log_var_max)
    variance = ops.exp(log_var)
    nll = HALF_LOG_2PI + 0.5 * log_var + 0.5 * ops.square(y_true - mean) / variance
    penalty = variance_weight * ops.square(variance - target_variance)
    return ops.mean(nll + penalty, axis=-1)


@keras.saving.register_keras_serializable(package="ei_keras")
class RegularizedGaussianNLL(keras.losses.Loss):
    """:func:`regularized_gaussian_nll` as a Keras loss on ``y_pred = [mean, log_var]``.

    Args:
        log_var_min: lower clamp of the predicted log-variance (default -13.8, σ ≥ 0.001).
        log_var_max: upper clamp of the predicted log-variance (default 10).
        target_variance: variance the penalty pulls toward (default 0.1).
        variance_weight: weight of the penalty (default 0.01; 0 gives the plain NLL).
        reduction: Keras reduction over the batch (default ``"sum_over_batch_size"``).
        name: loss name.
        dtype: loss dtype (default: Keras floatx).

    Example:
        >>> model.compile(optimizer="adam", loss=RegularizedGaussianNLL(variance_weight=0.0))
    """

    def __init__(self, log_var_min=LOG_VAR_MIN, log_var_max=LOG_VAR_MAX, target_variance=0.1,
                 variance_weight=0.01, reduction="sum_over_batch_size",
                 name="regularized_gaussian_nll", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_arguments(log_var_min, log_var_max, target_variance, variance_weight)
        self.log_var_min = float(log_var_min)
        self.log_var_max = float(log_var_max)
        self.target_variance = float(target_variance)
        self.variance_weight = float(variance_weight)

    def call(self, y_true, y_pred):
        return regularized_gaussian_nll(
            y_true, y_pred, self.log_var_min, self.log_var_max, self.target_variance,
            self.variance_weight)

    def get_config(self):
        config = super().get_config()
        config.update({
            "log_var_min": self.log_var_min,
            "log_var_max": self.log_var_max,
            "target_variance": self.target_variance,
            "variance_weight": self.variance_weight,
        })
        return config
