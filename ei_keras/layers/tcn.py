"""Temporal convolutional encoder: residual blocks of dilated causal ``Conv1D``."""

import keras
from keras import ops

from ei_keras.layers.masking import detach_mask, downsample_mask, masked_average_downsample
from ei_keras.layers.sublayers import call_sublayer


def _positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _padding(value):
    if value not in ("causal", "same"):
        raise ValueError(f"padding must be 'causal' or 'same'; got {value!r}")
    return value


def _dropout_rate(value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="ei_keras")
class TCNBlock(keras.layers.Layer):
    """One residual TCN block, optionally downsampling first.

    ``pool_size > 1`` first averages that many consecutive steps (valid steps only), so the
    block and everything after it run on ``ceil(steps / pool_size)`` steps. Then two dilated
    causal convolutions, each followed by ReLU and dropout, are added to the residual (a
    1×1 convolution when the width changes) and passed through a final ReLU. Causal
    padding and mask-aware averaging keep padded steps from changing any valid output.

    Args:
        filters: output channels.
        kernel_size: width of both convolutions.
        dilation_rate: dilation of both convolutions.
        pool_size: downsampling factor applied before the convolutions (1 = none).
        dropout: dropout rate after each convolution, in [0, 1).
        kernel_initializer: initializer of all convolutions.
        data_format: ``"channels_last"`` or ``"channels_first"`` (the torch backend's
            native layout, which saves a transpose around every convolution there).
        padding: ``"causal"`` (each output sees only earlier steps) or ``"same"`` (a
            centred, bounded window: the local features an attention pooling can weigh).
        **kwargs: base ``Layer`` arguments.

    Input shape:
        ``(batch, steps, channels)`` (``(batch, channels, steps)`` with channels first)
        with an optional mask ``(batch, steps)``.

    Output shape:
        ``(batch, ceil(steps / pool_size), filters)`` (or channels first); the mask is
        downsampled alike.
    """

    def __init__(self, filters, kernel_size=3, dilation_rate=1, pool_size=1, dropout=0.0,
                 kernel_initializer="he_normal", data_format="channels_last", padding="causal",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.dilation_rate = _positive_int("dilation_rate", dilation_rate)
        self.pool_size = _positive_int("pool_size", pool_size)
        self.dropout = _dropout_rate(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"data_format must be 'channels_last' or 'channels_first'; got {data_format!r}")
        self.data_format = data_format
        self.padding = _padding(padding)
        self.supports_masking = True
        conv = dict(kernel_size=self.kernel_size, dilation_rate=self.dilation_rate,
                    padding=self.padding, kernel_initializer=self.kernel_initializer,
                    data_format=data_format, dtype=self.dtype_policy)
        self.conv1 = keras.layers.Conv1D(self.filters, name="conv1", **conv)
        self.conv2 = keras.layers.Conv1D(self.filters, name="conv2", **conv)
        self.dropout1 = keras.layers.Dropout(self.dropout, name="dropout1")
        self.dropout2 = keras.layers.Dropout(self.dropout, name="dropout2")

    def _shape(self, batch, steps, channels):
        if self.data_format == "channels_first":
            return (batch, channels, steps)
        return (batch, steps, channels)

    def build(self, input_shape):
        first = self.data_format == "channels_first"
        channels, steps = (input_shape[1], input_shape[2]) if first else input_shape[2:0:-1]
        steps = None if steps is None else -(-steps // self.pool_size)
        self.conv1.build(self._shape(input_shape[0], steps, channels))
        self.conv2.build(self._shape(input_shape[0], steps, self.filters))
        if channels != self.filters:
            self.residual = keras.layers.Conv1D(
                self.filters, 1, kernel_initializer=self.kernel_initializer,
                data_format=self.data_format, dtype=self.dtype_policy, name="residual")
            self.residual.build(self._shape(input_shape[0], steps, channels))
        else:
            self.residual = None

    def call(self, inputs, mask=None, training=None):
        x, _ = masked_average_downsample(detach_mask(inputs), mask, self.pool_size,
                                         channels_first=self.data_format == "channels_first")
        h = self._dropout(self.dropout1, ops.relu(call_sublayer(self.conv1, x)), training)
        h = self._dropout(self.dropout2, ops.relu(call_sublayer(self.conv2, h)), training)
        skip = x if self.residual is None else call_sublayer(self.residual, x)
        return ops.relu(h + skip)

    def _dropout(self, layer, h, training):
        # Dropout is the identity outside training: not calling it there saves a layer call
        # per convolution, a tenth of the time of a one-trace inference.
        return layer(h, training=training) if training and self.dropout > 0 else h

    def compute_mask(self, inputs, mask=None):
        return downsample_mask(mask, self.pool_size)

    def compute_output_shape(self, input_shape):
        steps = input_shape[2] if self.data_format == "channels_first" else input_shape[1]
        steps = None if steps is None else -(-steps // self.pool_size)
        return self._shape(input_shape[0], steps, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "pool_size": self.pool_size,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "data_format": self.data_format,
            "padding": self.padding,
        })
        return config


@keras.saving.register_keras_serializable(package="ei_keras")
class TCNEncoder(keras.layers.Layer):
    """A stack of :class:`TCNBlock` with an optional input downsampling.

    ``input_pool`` averages that many readings before the first block, so a long prefix
    (e.g. 1000 readings) costs about as much as a short one; ``pool_sizes`` downsample
    further inside the stack. The total factor, ``downsampling``, maps an encoder step back
    to the readings it summarises. Inside, the blocks run in the backend's fastest layout
    (channels first on torch); inputs and outputs are channels last, and the weights are
    the same either way, so saved models move between backends.

    Args:
        filters: output channels of each block, e.g. ``(32, 48, 64)``.
        kernel_size: convolution width in every block.
        dilations: dilation of each block (same length as ``filters``).
        pool_sizes: downsampling before each block (same length as ``filters``).
        input_pool: downsampling of the readings before the first block.
        dropout: dropout rate in every block.
        kernel_initializer: initializer of all convolutions.
        padding: ``"causal"`` or ``"same"`` convolutions (see :class:`TCNBlock`).
        **kwargs: base ``Layer`` arguments.

    Input shape:
        ``(batch, steps, channels)`` with an optional mask ``(batch, steps)``.

    Output shape:
        ``(batch, ceil(steps / downsampling), filters[-1])`` (ceil taken at each stage),
        with the mask downsampled alike.
    """

    def __init__(self, filters=(32, 48, 64), kernel_size=3, dilations=(1, 2, 4),
                 pool_sizes=(1, 2, 2), input_pool=1, dropout=0.0,
                 kernel_initializer="he_normal", padding="causal", **kwargs):
        super().__init__(**kwargs)
        filters, dilations, pool_sizes = tuple(filters), tuple(dilations), tuple(pool_sizes)
        if not filters:
            raise ValueError(f"filters must name at least one block; got {filters!r}")
        if len(dilations) != len(filters) or len(pool_sizes) != len(filters):
            raise ValueError(
                f"filters, dilations and pool_sizes need one entry per block; got "
                f"{filters!r}, {dilations!r}, {pool_sizes!r}")
        self.filters = filters
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.dilations = dilations
        self.pool_sizes = pool_sizes
        self.input_pool = _positive_int("input_pool", input_pool)
        self.dropout = _dropout_rate(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.padding = _padding(padding)
        self.supports_masking = True
        self._channels_first = keras.backend.backend() == "torch"
        self.blocks = [
            TCNBlock(width, self.kernel_size, dilation, pool, self.dropout,
                     kernel_initializer=self.kernel_initializer,
                     data_format="channels_first" if self._channels_first else "channels_last",
                     padding=self.padding, dtype=self.dtype_policy, name=f"block{index}")
            for index, (width, dilation, pool) in enumerate(zip(filters, dilations, pool_sizes))
        ]

    @property
    def downsampling(self):
        """How many readings one output step summarises."""
        factor = self.input_pool
        for pool in self.pool_sizes:
            factor *= pool
        return factor

    def build(self, input_shape):
        batch, steps, channels = self._pooled_shape(input_shape, self.input_pool)
        shape = (batch, channels, steps) if self._channels_first else (batch, steps, channels)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def call(self, inputs, mask=None, training=None):
        x, mask = masked_average_downsample(detach_mask(inputs), mask, self.input_pool)
        if self._channels_first:
            x = ops.transpose(x, (0, 2, 1))
        for block in self.blocks:
            x, mask = (call_sublayer(block, x, mask=mask, training=training),
                       block.compute_mask(x, mask))
        return ops.transpose(x, (0, 2, 1)) if self._channels_first else x

    def compute_mask(self, inputs, mask=None):
        mask = downsample_mask(mask, self.input_pool)
        for pool in self.pool_sizes:
            mask = downsample_mask(mask, pool)
        return mask

    @staticmethod
    def _pooled_shape(shape, pool):
        steps = None if shape[1] is None else -(-shape[1] // pool)
        return (shape[0], steps, shape[2])

    def compute_output_shape(self, input_shape):
        shape = self._pooled_shape(input_shape, self.input_pool)
        for pool in self.pool_sizes:
            shape = self._pooled_shape(shape, pool)
        return shape[:2] + (self.filters[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "dilations": list(self.dilations),
            "pool_sizes": list(self.pool_sizes),
            "input_pool": self.input_pool,
            "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "padding": self.padding,
        })
        return config
