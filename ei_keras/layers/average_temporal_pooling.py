"""Plain (masked) mean over time, with the same interface as the weighted pooling."""

import keras
from keras import ops

from ei_keras.layers.base_temporal_pooling import BaseTemporalPooling


@keras.saving.register_keras_serializable(package="ei_keras")
class AverageTemporalPooling(BaseTemporalPooling):
    """Mean over the valid steps; its "attention" is uniform over them.

    The old recipe's pooling, kept so ``pooling="average"`` reproduces it; it shares the
    call interface of :class:`WeightedTemporalPooling`, so a model built with either has
    the same outputs.

    Args:
        **kwargs: base ``Layer`` arguments.

    Input shape:
        ``(batch, steps, channels)``; optional mask ``(batch, steps)``.

    Output shape:
        ``(batch, channels)``; with ``return_attention=True`` also the uniform weights
        ``(batch, steps)`` (zero on masked steps, summing to 1).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None, return_attention=False):
        if mask is None:
            valid = ops.ones_like(inputs[..., 0])
        else:
            valid = ops.cast(mask, inputs.dtype)
        weights = valid / ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
        return self._pool(inputs, weights, return_attention)
