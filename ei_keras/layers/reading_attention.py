"""Spread attention weights from encoder steps back onto the raw readings."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ei_keras")
class ReadingAttention(keras.layers.Layer):
    """Map weights over downsampled encoder steps to weights over the readings.

    Encoder step ``j`` summarises readings ``[j · downsampling, (j + 1) · downsampling)``;
    its weight is shared equally among the valid (finite pH and time) readings of that
    block, so the result still sums to 1 and padding gets exactly zero.

    Args:
        downsampling: readings per encoder step (the encoder's total downsampling).
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[weights, pH, t]``: weights ``(batch, ceil(steps / downsampling))``, pH
        ``(batch, steps)`` or ``(batch, steps, 1)``, t ``(batch, steps)``.

    Output shape:
        ``(batch, steps)``.
    """

    def __init__(self, downsampling=1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(downsampling, int) or downsampling < 1:
            raise ValueError(f"downsampling must be a positive int; got {downsampling!r}")
        self.downsampling = downsampling

    def call(self, inputs):
        weights, ph, t = inputs
        if len(ph.shape) == 3:
            ph = ph[..., 0]
        valid = ops.logical_and(ops.isfinite(ph), ops.isfinite(t))
        if self.downsampling == 1:
            return ops.where(valid, weights, ops.zeros_like(weights))
        steps = ops.shape(valid)[1]
        pad = (-steps) % self.downsampling
        per_block = ops.reshape(ops.pad(ops.cast(valid, weights.dtype), [[0, 0], [0, pad]]),
                                (-1, (steps + pad) // self.downsampling, self.downsampling))
        per_block = ops.sum(per_block, axis=2)
        spread = ops.repeat(weights / ops.maximum(per_block, 1.0), self.downsampling, axis=1)
        spread = spread[:, :steps]
        return ops.where(valid, spread, ops.zeros_like(spread))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[2][:2])

    def get_config(self):
        config = super().get_config()
        config.update({"downsampling": self.downsampling})
        return config
