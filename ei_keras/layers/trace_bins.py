"""Readings of any length and spacing → a fixed number of time bins (``keras.ops`` only).

A trace of m readings at any times is summarised on ``n_bins`` bins placed evenly in
``sqrt(t / t_last)``, where ``t_last`` is the trace's own last reading time: fine bins at
the start, where the probe lag and the initial slope live, coarser ones later. Each bin
holds the mean of its readings and how many there are, so the encoder costs the same for
3 readings or 1200, and the reading rate enters only through the counts (more readings
per bin = less noise in its mean). NaN readings or times are padding and add nothing, so
a padded trace gives exactly the bins of the unpadded one.
"""

import math

import keras
from keras import ops

from ei_keras.layers.prefix_features import (
    check_reference_index,
    positive_float,
    reading_reference,
    squeeze_readings,
)

# Channels of every bin, in order.
BIN_CHANNELS = ("mean pH change", "mean time", "sqrt mean time", "log readings", "occupied")
# Channels of the per-trace format vector, in order.
FORMAT_CHANNELS = ("log trace length", "log number of readings", "log mean spacing")


def _check_bins(n_bins):
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int; got {n_bins!r}")
    return n_bins


def reading_bins(ph, t, n_bins):
    """Validity, bin index and the row's last time of every reading.

    Returns ``(valid (batch, steps) bool, index (batch, steps) int32, t_last (batch, 1))``;
    invalid readings get bin 0 (callers weigh them by 0).
    """
    valid = ops.logical_and(ops.isfinite(ph), ops.isfinite(t))
    t = ops.where(valid, t, ops.zeros_like(t))
    t_last = ops.max(t, axis=1, keepdims=True)
    position = ops.sqrt(ops.maximum(t, 0.0) / ops.maximum(t_last, 1e-12))
    index = ops.cast(ops.floor(position * n_bins), "int32")
    return valid, ops.clip(index, 0, n_bins - 1), t_last


def bin_sums(values, index, n_bins):
    """Per row and bin, the sum of ``values`` (batch, steps) or (batch, steps, channels)
    over readings in the bin: (batch, n_bins) or (batch, n_bins, channels)."""
    batch = ops.shape(values)[0]
    rows = ops.arange(batch, dtype="int32")[:, None] * n_bins
    segments = ops.reshape(index + rows, (-1,))
    channels = tuple(values.shape[2:])
    sums = ops.segment_sum(ops.reshape(values, (-1, *channels)), segments,
                           num_segments=batch * n_bins)
    return ops.reshape(sums, (batch, n_bins, *channels))


@keras.saving.register_keras_serializable(package="ei_keras")
class TraceBins(keras.layers.Layer):
    """``[pH, t, known]`` → per-bin channels ``(batch, n_bins, 5)``.

    Channels (:data:`BIN_CHANNELS`): the mean of ``(pH - reference) / ph_scale`` over the
    bin's readings (``reference`` the known input ``reference_index``, the measured
    initial pH, so the probe offset cancels; or ``ph_center``), the mean reading time
    over ``time_scale`` and its square root, ``log1p(count) / log1p(1000)`` and 1 for an
    occupied bin. Empty bins are all zeros, told apart by the "occupied" channel only: the
    layer gives no Keras mask, so the encoder and pooling see every bin (the models trained
    so far learnt so; a mask of empty bins would change their answers).

    Args:
        n_bins: number of bins.
        ph_scale: divisor of the pH difference (> 0).
        time_scale: divisor of the reading times, e.g. the longest training prefix (> 0).
        reference_index: column of the known inputs subtracted from every reading, or None.
        ph_center: constant subtracted when ``reference_index`` is None.
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[pH, t, known]``: pH ``(batch, steps)`` or ``(batch, steps, 1)``, t
        ``(batch, steps)``, known ``(batch, n_known)``; NaN pH or t marks padding.

    Output shape:
        ``(batch, n_bins, 5)``, no mask.
    """

    def __init__(self, n_bins=64, ph_scale=1.0, time_scale=1.0, reference_index=None,
                 ph_center=0.0, **kwargs):
        super().__init__(**kwargs)
        self.n_bins = _check_bins(n_bins)
        self.ph_scale = positive_float("ph_scale", ph_scale)
        self.time_scale = positive_float("time_scale", time_scale)
        self.reference_index = check_reference_index(reference_index)
        self.ph_center = float(ph_center)

    def call(self, inputs):
        ph, t, known = inputs
        ph = ops.cast(squeeze_readings(ph), self.compute_dtype)
        t = ops.cast(t, self.compute_dtype)
        valid, index, _ = reading_bins(ph, t, self.n_bins)
        reference = reading_reference(known, self.reference_index, self.ph_center,
                                      self.compute_dtype)
        per_reading = ops.stack([ops.ones_like(ph), (ph - reference) / self.ph_scale,
                                 t / self.time_scale], axis=-1)
        # Count and both sums in one segment sum (three before; the same floats, fewer ops)
        sums = bin_sums(ops.where(valid[..., None], per_reading, 0.0), index, self.n_bins)
        count = sums[..., :1]
        means = sums[..., 1:] / ops.maximum(count, 1.0)
        return ops.concatenate([means, ops.sqrt(ops.maximum(means[..., 1:], 0.0)),
                                ops.log1p(count) / math.log1p(1000.0),
                                ops.cast(count > 0, self.compute_dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], self.n_bins, len(BIN_CHANNELS))

    def get_config(self):
        config = super().get_config()
        config.update({
            "n_bins": self.n_bins,
            "ph_scale": self.ph_scale,
            "time_scale": self.time_scale,
            "reference_index": self.reference_index,
            "ph_center": self.ph_center,
        })
        return config


@keras.saving.register_keras_serializable(package="ei_keras")
class TraceFormat(keras.layers.Layer):
    """``[pH, t]`` → the trace's format ``(batch, 3)``: how long, how many readings, how
    dense (:data:`FORMAT_CHANNELS`), each as a log scaled to about [-1, 1] over the
    training formats.

    Args:
        time_scale: the longest training prefix in seconds (> 0).
        dt_scale: a typical reading spacing in seconds (> 0).
        **kwargs: base ``Layer`` arguments.
    """

    def __init__(self, time_scale=1.0, dt_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.time_scale = positive_float("time_scale", time_scale)
        self.dt_scale = positive_float("dt_scale", dt_scale)

    def call(self, inputs):
        ph, t = inputs
        ph = ops.cast(squeeze_readings(ph), self.compute_dtype)
        t = ops.cast(t, self.compute_dtype)
        valid = ops.logical_and(ops.isfinite(ph), ops.isfinite(t))
        t = ops.where(valid, t, ops.zeros_like(t))
        t_first = ops.min(ops.where(valid, t, ops.full_like(t, 1e30)), axis=1)
        t_last = ops.max(t, axis=1)
        count = ops.sum(ops.cast(valid, self.compute_dtype), axis=1)
        spacing = (t_last - ops.minimum(t_first, t_last)) / ops.maximum(count - 1.0, 1.0)
        return ops.stack([
            ops.log1p(t_last) / math.log1p(self.time_scale),
            ops.log(ops.maximum(count, 1.0)) / math.log(1000.0),
            ops.log(ops.maximum(spacing, 1e-3) / self.dt_scale) / math.log(100.0),
        ], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], len(FORMAT_CHANNELS))

    def get_config(self):
        config = super().get_config()
        config.update({"time_scale": self.time_scale, "dt_scale": self.dt_scale})
        return config


@keras.saving.register_keras_serializable(package="ei_keras")
class BinnedReadingAttention(keras.layers.Layer):
    """Spread attention over bins back onto the readings: each reading gets its bin's
    weight divided by the bin's reading count, renormalised over the bins that hold
    readings (the pooling also weighs empty bins, whose features carry only where they
    are), so the result sums to 1 per trace and padding gets exactly zero.

    Args:
        n_bins: the number of bins of the :class:`TraceBins` layer.
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[weights (batch, n_bins), pH, t]``.

    Output shape:
        ``(batch, steps)``.
    """

    def __init__(self, n_bins=64, **kwargs):
        super().__init__(**kwargs)
        self.n_bins = _check_bins(n_bins)

    def call(self, inputs):
        weights, ph, t = inputs
        ph = ops.cast(squeeze_readings(ph), weights.dtype)
        valid, index, _ = reading_bins(ph, ops.cast(t, weights.dtype), self.n_bins)
        count = bin_sums(ops.cast(valid, weights.dtype), index, self.n_bins)
        weights = ops.where(count > 0, weights, ops.zeros_like(weights))
        weights = weights / ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1e-30)
        share = weights / ops.maximum(count, 1.0)
        spread = ops.take_along_axis(share, index, axis=1)
        return ops.where(valid, spread, ops.zeros_like(spread))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[2][:2])

    def get_config(self):
        config = super().get_config()
        config.update({"n_bins": self.n_bins})
        return config
