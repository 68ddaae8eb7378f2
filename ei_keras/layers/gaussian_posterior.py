"""The model's output layer: Gaussian mean and log-variance, carrying the target codec."""

import keras
from keras import ops

from ei_keras.targets import LOG_VAR_MAX, LOG_VAR_MIN, TargetCodec


@keras.saving.register_keras_serializable(package="ei_keras")
class GaussianPosterior(keras.layers.Layer):
    """Concatenate ``[mean, log_var]`` and carry the :class:`~ei_keras.targets.TargetCodec`.

    The network predicts, per target, a Gaussian over ``z = (transform(y) - loc) / scale``
    (e.g. ``log10(activity)`` standardised). The layer itself only concatenates; its
    config is the codec's (target names, transforms, standardisation, bounds and the
    log-variance clamp) plus the training domain and configs, so a saved model decodes itself:
    ``layer.codec.encode`` / ``layer.codec.decode`` (NumPy, outside the graph).

    Args:
        target_names: names of the p targets, e.g. ``("activity", "k_d")``.
        transforms: one of ``"identity"``/``"log10"``/``"logit"`` per target (default
            identity).
        loc: per-target centre in transformed units (default 0).
        scale: per-target positive scale in transformed units (default 1).
        log_var_min: lower clamp of the predicted log-variance (as in the loss).
        log_var_max: upper clamp of the predicted log-variance (as in the loss).
        bounds: per target ``[low, high]`` for ``logit`` targets, None for the others.
        domain: what the model was trained on (JSON-able dict: prior ranges, noise,
            trace formats), read back by the domain guard of ``ei_keras.infer``.
        run_config: the configs it was trained with (JSON-able dict: ``dataset``, the
            dataset config; ``train``, the training config), for the record; None for a
            model not made by ``ei_keras.train``.
        std_scale: per-target factor on the decoded standard deviation from a calibration
            after training (``ei-keras calibrate``); None: 1 for every target.
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[mean, log_var]``, each ``(batch, p)``.

    Output shape:
        ``(batch, 2 p)``.
    """

    def __init__(self, target_names, transforms=None, loc=None, scale=None,
                 log_var_min=LOG_VAR_MIN, log_var_max=LOG_VAR_MAX, bounds=None, domain=None,
                 run_config=None, std_scale=None, **kwargs):
        super().__init__(**kwargs)
        self.codec = TargetCodec.create(target_names, transforms, loc, scale, bounds,
                                        log_var_min, log_var_max, std_scale)
        self.domain = None if domain is None else dict(domain)
        self.run_config = None if run_config is None else dict(run_config)

    @property
    def target_names(self):
        return list(self.codec.target_names)

    @property
    def transforms(self):
        return list(self.codec.transforms)

    @property
    def bounds(self):
        return self.codec.get_config()["bounds"]

    def call(self, inputs):
        mean, log_var = inputs
        return ops.concatenate([mean, log_var], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (2 * len(self.codec.target_names),)

    def get_config(self):
        config = super().get_config()
        config.update(self.codec.get_config())
        config["domain"] = self.domain
        config["run_config"] = self.run_config
        return config
