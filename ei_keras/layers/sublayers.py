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
    """``layer(*args, **kwargs)``; inside :func:`direct_calls`, ``layer.call(...)`` once built."""
    if _DIRECT.get() and layer.built:
        return layer.call(*args, **kwargs)
    return layer(*args, **kwargs)
