"""Mask helpers shared by the sequence layers (``keras.ops`` only)."""

import keras
from keras import ops

# Keras keeps masks as tensor attributes; the setter is not public API yet. Its own
# MultiHeadAttention detaches masks the same way before calling mask-unaware sublayers.
from keras.src.backend import get_keras_mask, set_keras_mask


def large_negative(dtype):
    """A logit that softmax turns into an exact zero, finite in ``dtype``."""
    return -6.5e4 if "float16" in str(dtype) else -1e9


def normalised_positions(steps, mask, dtype):
    """Position of each step on [0, 1], counting only the valid steps of each row.

    Returns ``(1, steps)`` without a mask, ``(batch, steps)`` with one; the first valid
    step is 0 and the last 1 (a single valid step is 0).
    """
    if mask is None:
        index = ops.cast(ops.arange(steps), dtype)[None, :]
        return index / ops.cast(max(steps - 1, 1), dtype)
    valid = ops.cast(mask, dtype)
    index = ops.cumsum(valid, axis=1) - 1.0
    count = ops.sum(valid, axis=1, keepdims=True)
    return ops.maximum(index, 0.0) / ops.maximum(count - 1.0, 1.0)


def detach_mask(x):
    """Return ``x`` without an attached Keras mask, so mask-unaware sublayers don't warn.

    The caller must already hold the mask (it arrives as the ``mask`` argument).
    """
    if get_keras_mask(x) is not None:
        set_keras_mask(x, None)
    return x


def _pad_axis(x, axis, pad):
    if isinstance(pad, int) and pad == 0:  # a static shape; tensorflow's may be a tensor
        return x
    widths = [[0, 0] for _ in x.shape]
    widths[axis] = [0, pad]
    return ops.pad(x, widths)


def downsample_mask(mask, pool_size):
    """A block of ``pool_size`` steps is valid when any of its steps is valid."""
    if mask is None or pool_size == 1:
        return mask
    if isinstance(mask, keras.KerasTensor):
        batch, steps = mask.shape
        steps = None if steps is None else -(-steps // pool_size)
        return keras.KerasTensor((batch, steps), dtype="bool")
    steps = ops.shape(mask)[1]
    pad = (-steps) % pool_size
    valid = _pad_axis(ops.cast(mask, "int32"), 1, pad)
    blocks = ops.reshape(valid, (-1, (steps + pad) // pool_size, pool_size))
    return ops.sum(blocks, axis=2) > 0


def masked_average_downsample(x, mask, pool_size, channels_first=False):
    """Average ``pool_size`` consecutive steps of ``(batch, steps, channels)`` (or of
    ``(batch, channels, steps)`` with ``channels_first``).

    Only valid steps enter each average; a final partial block averages what it has.
    Returns ``(downsampled, mask)`` with ``ceil(steps / pool_size)`` steps; the mask is
    ``None`` when the input had none.
    """
    if pool_size == 1:
        return x, mask
    time_axis = 2 if channels_first else 1
    steps, channels = ops.shape(x)[time_axis], ops.shape(x)[3 - time_axis]
    pad = (-steps) % pool_size
    blocks = (steps + pad) // pool_size
    if mask is None:
        valid = ops.ones((1, steps), x.dtype)
    else:
        valid = ops.cast(mask, x.dtype)
    weights = valid[:, None, :] if channels_first else valid[..., None]
    total = _pad_axis(x * weights if mask is not None else x, time_axis, pad)
    count = ops.sum(ops.reshape(_pad_axis(valid, 1, pad), (-1, blocks, pool_size)), axis=2)
    if channels_first:
        total = ops.sum(ops.reshape(total, (-1, channels, blocks, pool_size)), axis=3)
        mean = total / ops.maximum(count, 1.0)[:, None, :]
    else:
        total = ops.sum(ops.reshape(total, (-1, blocks, pool_size, channels)), axis=2)
        mean = total / ops.maximum(count, 1.0)[..., None]
    return mean, (None if mask is None else count > 0)
