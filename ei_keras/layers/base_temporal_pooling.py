"""Shared part of the temporal pooling layers: weights over time → pooled vector."""

import keras
from keras import ops


class BaseTemporalPooling(keras.layers.Layer):
    """Pools (batch, steps, channels) to (batch, channels) with weights (batch, steps).

    Subclasses compute the weights; this class applies them, consumes the mask and
    declares the output of ``call(inputs, mask=None, return_attention=False)``.
    """

    def _pool(self, inputs, weights, return_attention):
        pooled = ops.sum(weights[..., None] * inputs, axis=1)
        if return_attention:
            return pooled, weights
        return pooled

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_spec(self, inputs, mask=None, return_attention=False):
        batch, steps, channels = inputs.shape
        pooled = keras.KerasTensor((batch, channels), dtype=self.compute_dtype)
        if return_attention:
            return pooled, keras.KerasTensor((batch, steps), dtype=self.compute_dtype)
        return pooled
