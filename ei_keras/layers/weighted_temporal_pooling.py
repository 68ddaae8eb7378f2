"""Attention pooling over time with a learnable bias toward early readings."""

import keras
from keras import ops

from ei_keras.layers.base_temporal_pooling import BaseTemporalPooling
from ei_keras.layers.masking import detach_mask, large_negative, normalised_positions
from ei_keras.layers.sublayers import call_sublayer


@keras.saving.register_keras_serializable(package="ei_keras")
class WeightedTemporalPooling(BaseTemporalPooling):
    """Softmax-weighted sum over time, with the weights available to the caller.

    Attention logits come from two pointwise ``Conv1D`` layers (channels → hidden, ReLU →
    1). To each logit the layer adds ``s · exp(-u / early_bias_decay)``, where ``u`` runs
    from 0 at the first valid step to 1 at the last, whatever the number of steps, and
    ``s`` is a trainable scalar started at ``early_bias``: an initial preference for early
    readings that training may keep, strengthen or unlearn. The weights are a softmax over
    time; steps a Keras mask marks as padding get exactly zero weight, and ``u`` counts only
    valid steps, so a padded sequence pools exactly as the unpadded one.

    Args:
        hidden_units: width of the first scoring convolution; ``None`` means half the
            input channels (at least 1).
        early_bias: initial value of the trainable early-time bias strength ``s``; 0 starts
            without preference.
        early_bias_decay: decay length of the bias in normalised time (> 0); 0.2 means the
            bias has fallen to ``e^-1`` a fifth of the way through the sequence.
        kernel_initializer: initializer of both scoring convolutions.
        **kwargs: base ``Layer`` arguments (``name``, ``dtype``, ...).

    Input shape:
        ``(batch, steps, channels)``, any ``steps`` ≥ 1; optional mask ``(batch, steps)``.

    Output shape:
        ``(batch, channels)``; with ``return_attention=True`` the tuple
        ``((batch, channels), (batch, steps))``, the weights summing to 1 over steps.

    Example:
        >>> pooling = WeightedTemporalPooling()
        >>> pooled, weights = pooling(np.ones((2, 7, 4)), return_attention=True)
        >>> pooled.shape, weights.shape
        ((2, 4), (2, 7))
    """

    def __init__(self, hidden_units=None, early_bias=1.0, early_bias_decay=0.2,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if hidden_units is not None and (not isinstance(hidden_units, int) or hidden_units < 1):
            raise ValueError(f"hidden_units must be a positive int or None; got {hidden_units!r}")
        if not early_bias_decay > 0:
            raise ValueError(f"early_bias_decay must be > 0; got {early_bias_decay!r}")
        self.hidden_units = hidden_units
        self.early_bias = float(early_bias)
        self.early_bias_decay = float(early_bias_decay)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"WeightedTemporalPooling expects (batch, steps, channels) with known channels; "
                f"got {input_shape}")
        channels = input_shape[-1]
        hidden = self.hidden_units or max(1, channels // 2)
        self.score_hidden = keras.layers.Conv1D(
            hidden, 1, activation="relu", kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy, name="score_hidden")
        self.score_out = keras.layers.Conv1D(
            1, 1, kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy,
            name="score_out")
        self.score_hidden.build(input_shape)
        self.score_out.build(tuple(input_shape[:-1]) + (hidden,))
        self.early_bias_strength = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.early_bias),
            name="early_bias_strength")

    def call(self, inputs, mask=None, return_attention=False):
        hidden = call_sublayer(self.score_hidden, detach_mask(inputs))
        logits = call_sublayer(self.score_out, hidden)[..., 0]
        position = normalised_positions(ops.shape(inputs)[1], mask, logits.dtype)
        logits = logits + self.early_bias_strength * ops.exp(-position / self.early_bias_decay)
        if mask is not None:
            mask = ops.cast(mask, "bool")
            logits = ops.where(mask, logits, large_negative(logits.dtype))
        # Softmax over time, written out so masked steps get exactly zero weight.
        scores = ops.exp(logits - ops.max(logits, axis=1, keepdims=True))
        if mask is not None:
            scores = ops.where(mask, scores, ops.zeros_like(scores))
        weights = scores / ops.maximum(ops.sum(scores, axis=1, keepdims=True), 1e-30)
        return self._pool(inputs, weights, return_attention)

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_units": self.hidden_units,
            "early_bias": self.early_bias,
            "early_bias_decay": self.early_bias_decay,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config
