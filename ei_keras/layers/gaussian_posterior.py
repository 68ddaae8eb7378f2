"""The model's output layer: Gaussian mean and log-variance, plus how to decode them."""

import math

import keras
import numpy as np
from keras import ops
from scipy.special import expit

from ei_keras.losses import LOG_VAR_MAX, LOG_VAR_MIN

TRANSFORMS = ("identity", "log10", "logit")
# A bounded value is encoded at least this fraction of its range inside the bounds, so a
# target drawn exactly on a bound (k_d = 0) has a finite logit.
LOGIT_MARGIN = 1e-6
# Gauss–Hermite nodes for the physical-unit mean and std of a logit-Gaussian (100 nodes:
# better than 1e-4 relative even at a logit scale of 4).
_HERMITE_X, _HERMITE_W = np.polynomial.hermite_e.hermegauss(100)
_HERMITE_W = _HERMITE_W / _HERMITE_W.sum()


def _check_bounds(transform, bounds):
    if transform != "logit":
        return None
    if bounds is None or len(bounds) != 2 or not float(bounds[0]) < float(bounds[1]):
        raise ValueError(f"the logit transform needs bounds [low, high] with low < high; "
                         f"got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


def forward_transform(transform, values, bounds=None):
    """Physical units → the space the network predicts in (before standardisation).

    ``log10`` for positive values, ``identity``, or ``logit``: ``ln((y - lo) / (hi - y))``
    over ``bounds = [lo, hi]``, which maps the bounded range onto the whole real line.
    """
    values = np.asarray(values, dtype=np.float64)
    if transform == "log10":
        return np.log10(values)
    if transform == "identity":
        return values
    if transform == "logit":
        low, high = _check_bounds(transform, bounds)
        margin = LOGIT_MARGIN * (high - low)
        inside = np.clip(values, low + margin, high - margin)
        return np.log(inside - low) - np.log(high - inside)
    raise ValueError(f"transform must be one of {TRANSFORMS}; got {transform!r}")


def inverse_transform(transform, values, bounds=None):
    """The network's (unstandardised) space → physical units; monotone increasing, and
    for ``logit`` always inside ``bounds``."""
    values = np.asarray(values, dtype=np.float64)
    if transform == "log10":
        return 10.0 ** values
    if transform == "identity":
        return values
    if transform == "logit":
        low, high = _check_bounds(transform, bounds)
        return low + (high - low) * expit(values)
    raise ValueError(f"transform must be one of {TRANSFORMS}; got {transform!r}")


def physical_moments(loc, scale, transform, bounds=None):
    """Mean and std in physical units of N(loc, scale²) in transformed units.

    Closed form for ``identity`` and ``log10`` (log-normal); Gauss–Hermite quadrature
    (100 nodes) for ``logit``.
    """
    loc, scale = np.asarray(loc, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if transform == "identity":
        return loc.copy(), scale.copy()
    if transform == "log10":
        mu, sigma = loc * math.log(10.0), scale * math.log(10.0)
        mean = np.exp(mu + 0.5 * sigma**2)
        return mean, mean * np.sqrt(np.expm1(sigma**2))
    values = inverse_transform(transform, loc[..., None] + scale[..., None] * _HERMITE_X, bounds)
    mean = values @ _HERMITE_W
    variance = np.maximum((values - mean[..., None]) ** 2 @ _HERMITE_W, 0.0)
    return mean, np.sqrt(variance)


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
        transforms: one of ``"identity"``/``"log10"``/``"logit"`` per target (default
            identity).
        loc: per-target centre in transformed units (default 0).
        scale: per-target positive scale in transformed units (default 1).
        log_var_min: lower clamp of the predicted log-variance (as in the loss).
        log_var_max: upper clamp of the predicted log-variance (as in the loss).
        bounds: per target ``[low, high]`` for ``logit`` targets, None for the others.
        domain: what the model was trained on (JSON-able dict: prior ranges, noise,
            trace formats), read back by the domain guard of ``ei_keras.infer``.
        **kwargs: base ``Layer`` arguments.

    Input shape:
        list ``[mean, log_var]``, each ``(batch, p)``.

    Output shape:
        ``(batch, 2 p)``.
    """

    def __init__(self, target_names, transforms=None, loc=None, scale=None,
                 log_var_min=LOG_VAR_MIN, log_var_max=LOG_VAR_MAX, bounds=None, domain=None,
                 **kwargs):
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
        bounds = [None] * p if bounds is None else list(bounds)
        if len(bounds) != p:
            raise ValueError(f"bounds needs {p} entries (None or [low, high]); got {bounds!r}")
        bounds = [_check_bounds(tr, b) if tr == "logit" else None
                  for tr, b in zip(transforms, bounds)]
        self.target_names = names
        self.transforms = transforms
        self.bounds = [None if b is None else list(b) for b in bounds]
        self.domain = None if domain is None else dict(domain)
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
        columns = [(forward_transform(tr, targets[:, j], self.bounds[j]) - self.loc[j])
                   / self.scale[j] for j, tr in enumerate(self.transforms)]
        return np.stack(columns, axis=1).astype(np.float32)

    def decode(self, y_pred):
        """Model output ``(n, 2 p)`` → per target a dict of arrays ``(n,)``.

        ``loc``/``scale``: mean and standard deviation of the Gaussian in transformed units
        (log10 for activity, logit over the prior range for bounded ones); ``median``,
        ``mean``, ``std``: the same distribution in physical units; ``transform`` and
        ``bounds``: how to map back. Quantiles in physical units are
        ``inverse_transform(transform, loc + z * scale, bounds)``.
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
            bounds = self.bounds[j]
            mean, std = physical_moments(loc, scale, transform, bounds)
            decoded[name] = {"loc": loc, "scale": scale, "transform": transform,
                             "bounds": bounds, "median": inverse_transform(transform, loc, bounds),
                             "mean": mean, "std": std}
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
            "bounds": self.bounds,
            "domain": self.domain,
        })
        return config
