"""Raw pH prefix and reading times → normalised encoder channels, with a padding mask."""

import keras
from keras import ops


def positive_float(name, value):
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return value


def check_reference_index(value):
    """A known-input column index (int >= 0) or None; ValueError otherwise."""
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(f"reference_index must be a non-negative int or None; got {value!r}")
    return value


def reading_reference(known, reference_index, ph_center, dtype):
    """What every reading is measured from: the known input ``reference_index`` per trace
    ``(batch, 1)`` (the measured initial pH, so the probe offset cancels), or
    ``ph_center`` when it is None."""
    if reference_index is None:
        return ph_center
    return ops.cast(known[:, reference_index:reference_index + 1], dtype)


def squeeze_readings(ph):
    """``(batch, steps, 1)`` readings → ``(batch, steps)``; 2-D input passes through."""
    return ph[..., 0] if len(ph.shape) == 3 else ph


@keras.saving.register_keras_serializable(package="ei_keras")
class PrefixFeatures(keras.layers.Layer):
    """Turn raw readings into the channels ``[normalised pH, time, dt]``.

    * normalised pH: ``(pH - reference) / ph_scale``, where ``reference`` is the known input
      ``reference_index`` (the measured initial pH, so the probe offset cancels) or the
      constant ``ph_center`` when ``reference_index`` is ``None``;
    * time: ``t / time_scale``;
    * dt: the spacing to the previous reading (the first reading takes the next spacing),
      divided by ``dt_scale``.

    Non-finite pH or time (NaN padding) marks a step as invalid: its channels are zero and
    the layer's Keras mask is False there, so traces of different lengths share a batch.
    The statistics are plain config numbers, so a saved model needs no side file.

    Args:
        ph_scale: divisor of the pH difference (> 0).
        time_scale: divisor of the reading times, e.g. the training prefix length (> 0).
        dt_scale: divisor of the reading spacing (> 0).
        reference_index: column of the known inputs subtracted from every reading, or None.
        ph_center: constant subtracted when ``reference_index`` is None.
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[pH, t, known]``: pH ``(batch, steps)`` or ``(batch, steps, 1)``, t
        ``(batch, steps)``, known ``(batch, n_known)``.

    Output shape:
        ``(batch, steps, 3)`` with mask ``(batch, steps)``.
    """

    def __init__(self, ph_scale=1.0, time_scale=1.0, dt_scale=1.0, reference_index=None,
                 ph_center=0.0, **kwargs):
        super().__init__(**kwargs)
        self.ph_scale = positive_float("ph_scale", ph_scale)
        self.time_scale = positive_float("time_scale", time_scale)
        self.dt_scale = positive_float("dt_scale", dt_scale)
        self.reference_index = check_reference_index(reference_index)
        self.ph_center = float(ph_center)

    def call(self, inputs):
        ph, t, known = inputs
        ph = ops.cast(squeeze_readings(ph), self.compute_dtype)
        t = ops.cast(t, self.compute_dtype)
        valid = ops.logical_and(ops.isfinite(ph), ops.isfinite(t))
        reference = reading_reference(known, self.reference_index, self.ph_center,
                                      self.compute_dtype)
        ph = (ph - reference) / self.ph_scale
        spacing = t[:, 1:] - t[:, :-1]
        # The first step repeats the first spacing, 0 for a single reading (no test of the
        # length: a traced one may be unknown).
        first = ops.concatenate([spacing[:, :1], ops.zeros_like(t[:, :1])], axis=1)[:, :1]
        dt = ops.concatenate([first, spacing], axis=1)
        features = ops.stack([ph, t / self.time_scale, dt / self.dt_scale], axis=-1)
        features = ops.where(ops.isfinite(features), features, ops.zeros_like(features))
        return ops.where(valid[..., None], features, ops.zeros_like(features))

    def compute_mask(self, inputs, mask=None):
        ph, t, _ = inputs
        return ops.logical_and(ops.isfinite(squeeze_readings(ph)), ops.isfinite(t))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1][:2]) + (3,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "ph_scale": self.ph_scale,
            "time_scale": self.time_scale,
            "dt_scale": self.dt_scale,
            "reference_index": self.reference_index,
            "ph_center": self.ph_center,
        })
        return config
