"""Calling a built sublayer without ``Layer.__call__`` while a model answers a few traces.

:func:`ei_keras.models.predict_batch` runs a built model on the torch backend layer by
layer through each layer's bare ``call``: there ``Layer.__call__`` (input conversion, masks,
autocast, name scopes) costs about 0.1 ms a time and nothing of it is needed. Layers made
of sublayers call them through :func:`call_sublayer`, which does the same inside
:func:`direct_calls` and is the ordinary ``layer(...)`` everywhere else (building,
training, symbolic calls, other backends).
"""

import contextlib
import contextvars

import keras
from keras import ops

_DIRECT = contextvars.ContextVar("ei_keras_direct_calls", default=False)


@contextlib.contextmanager
def direct_calls():
    """Within this block :func:`call_sublayer` runs built sublayers by their bare ``call``."""
    token = _DIRECT.set(True)
    try:
        yield
    finally:
        _DIRECT.reset(token)


def call_sublayer(layer, *args, **kwargs):
    """``layer(*args, **kwargs)``; inside :func:`direct_calls`, ``layer.call(...)`` once built
    (a ``Conv1D`` through :func:`conv1d_call`)."""
    if _DIRECT.get() and layer.built:
        if type(layer) is keras.layers.Conv1D:
            return conv1d_call(layer, *args, **kwargs)
        return layer.call(*args, **kwargs)
    return layer(*args, **kwargs)


def conv1d_call(layer, inputs):
    """What ``Conv1D.call`` computes, the same values, with the bias added by broadcasting:
    Keras reshapes the bias and adds it by two more dispatched ops, 0.02 ms a convolution
    on torch (0.3 ms of a one-trace forward)."""
    padding = layer.padding
    if padding == "causal":  # left padding: each output sees only earlier steps
        widths = [[0, 0], [0, 0], [0, 0]]
        widths[2 if layer.data_format == "channels_first" else 1][0] = \
            layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
        inputs, padding = ops.pad(inputs, widths), "valid"
    outputs = ops.conv(inputs, layer.kernel, strides=list(layer.strides), padding=padding,
                       dilation_rate=layer.dilation_rate, data_format=layer.data_format)
    if layer.use_bias:
        bias = layer.bias.value
        outputs = outputs + (bias[:, None] if layer.data_format == "channels_first" else bias)
    return layer.activation(outputs)
