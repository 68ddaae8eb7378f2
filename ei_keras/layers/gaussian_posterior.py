"""The model's output layer: Gaussian mean and log-variance, plus how to decode them."""

import math

import keras
import numpy as np
from keras import ops

TRANSFORMS = ("identity", "log10")


def forward_transform(transform, values):
    """Physical units → the space the network predicts in (before standardisation)."""
    values = np.asarray(values, dtype=np.float64)
    if transform == "log10":
        return np.log10(values)
    if transform == "identity":
        return values
    raise ValueError(f"transform must be one of {TRANSFORMS}; got {transform!r}")


def inverse_transform(transform, values):
    """The network's (unstandardised) space → physical units; monotone increasing."""
    values = np.asarray(values, dtype=np.float64)
    if transform == "log10":
        return 10.0 ** values
    if transform == "identity":
        return values
    raise ValueError(f"transform must be one of {TRANSFORMS}; got {transform!r}")


@keras.saving.register_keras_serializable(package="ei_keras")
class GaussianPosterior(keras.layers.Layer):
    """Concatenate ``[mean, log_var]`` and carry what is needed to read them.

    The network predicts, per target, a Gaussian over ``z = (transform(y) - loc) / scale``
    (e.g. ``log10(activity)`` standardised). The layer itself only concatenates; its
    config holds the target names, transforms, standardisation and the log-variance
    clamp the loss uses, and :meth:`encode` / :meth:`decode` convert with them (NumPy,
    outside the graph).

    Args:
        target_names: names of the p targets, e.g. ``("activity", "k_d")``.
        transforms: one of ``"identity"``/``"log10"`` per target (default identity).
        loc: per-target centre in transformed units (default 0).
        scale: per-target positive scale in transformed units (default 1).
        log_var_min: lower clamp of the predicted log-variance (as in the loss).
        log_var_max: upper clamp of the predicted log-variance (as in the loss).
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[mean, log_var]``, each ``(batch, p)``.

    Output shape:
        ``(batch, 2 p)``.
    """

    def __init__(self, target_names, transforms=None, loc=None, scale=None, log_var_min=-4.6,
                 log_var_max=10.0, **kwargs):
        super().__init__(**kwargs)
        names = [str(n) for n in target_names]
        p = len(names)
        if not p or len(set(names)) != p:
            raise ValueError(f"target_names must be distinct and non-empty; got {target_names!r}")
        transforms = ["identity"] * p if transforms is None else list(transforms)
        loc = [0.0] * p if loc is None else [float(v) for v in np.ravel(loc)]
        scale = [1.0] * p if scale is None else [float(v) for v in np.ravel(scale)]
        if len(transforms) != p or any(t not in TRANSFORMS for t in transforms):
            raise ValueError(f"transforms needs {p} entries from {TRANSFORMS}; got {transforms!r}")
        if len(loc) != p or len(scale) != p or not all(s > 0 for s in scale):
            raise ValueError(f"loc and scale need {p} entries, scale > 0; got {loc!r}, {scale!r}")
        if not log_var_min < log_var_max:
            raise ValueError(
                f"log_var_min must be < log_var_max; got {log_var_min!r}, {log_var_max!r}")
        self.target_names = names
        self.transforms = transforms
        self.loc = loc
        self.scale = scale
        self.log_var_min = float(log_var_min)
        self.log_var_max = float(log_var_max)

    def call(self, inputs):
        mean, log_var = inputs
        return ops.concatenate([mean, log_var], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (2 * len(self.target_names),)

    def encode(self, targets):
        """Physical targets ``(n, p)`` → standardised transformed values (float32)."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 2 or targets.shape[1] != len(self.target_names):
            raise ValueError(
                f"targets must be (n, {len(self.target_names)}) for {self.target_names}; "
                f"got shape {targets.shape}")
        columns = [(forward_transform(tr, targets[:, j]) - self.loc[j]) / self.scale[j]
                   for j, tr in enumerate(self.transforms)]
        return np.stack(columns, axis=1).astype(np.float32)

    def decode(self, y_pred):
        """Model output ``(n, 2 p)`` → per target a dict of arrays ``(n,)``.

        ``loc``/``scale``: mean and standard deviation of the Gaussian in transformed units
        (log10 for activity); ``median``, ``mean``, ``std``: the same distribution in
        physical units (log-normal for log10 targets); ``transform``: its name. Quantiles
        in physical units are ``inverse_transform(transform, loc + z * scale)``.
        """
        y_pred = np.asarray(y_pred, dtype=np.float64)
        p = len(self.target_names)
        if y_pred.ndim != 2 or y_pred.shape[1] != 2 * p:
            raise ValueError(f"y_pred must be (n, {2 * p}); got shape {y_pred.shape}")
        log_var = np.clip(y_pred[:, p:], self.log_var_min, self.log_var_max)
        decoded = {}
        for j, (name, transform) in enumerate(zip(self.target_names, self.transforms)):
            loc = y_pred[:, j] * self.scale[j] + self.loc[j]
            scale = np.exp(0.5 * log_var[:, j]) * self.scale[j]
            if transform == "log10":
                mu, sigma = loc * math.log(10.0), scale * math.log(10.0)
                mean = np.exp(mu + 0.5 * sigma**2)
                std = mean * np.sqrt(np.expm1(sigma**2))
            else:
                mean, std = loc, scale
            decoded[name] = {"loc": loc, "scale": scale, "transform": transform,
                             "median": inverse_transform(transform, loc), "mean": mean,
                             "std": std}
        return decoded

    def get_config(self):
        config = super().get_config()
        config.update({
            "target_names": self.target_names,
            "transforms": self.transforms,
            "loc": self.loc,
            "scale": self.scale,
            "log_var_min": self.log_var_min,
            "log_var_max": self.log_var_max,
        })
        return config
