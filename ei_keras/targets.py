"""The target codec: how physical parameters become what the network predicts, and back.

The network predicts, per target, a Gaussian over ``z = (transform(y) - loc) / scale``
with its log-variance clamped to ``[log_var_min, log_var_max]``. Everything about that
space lives here, in one NumPy object the model carries in its output layer's config
(:class:`ei_keras.layers.GaussianPosterior`), so a ``.keras`` file decodes itself:

* transforms: ``log10`` (activity), ``logit`` over the prior range (bounded parameters,
  so every summary and draw is physically valid), ``identity``;
* standardisation: per-target ``loc`` and ``scale`` in transformed units;
* the log-variance clamp, shared by the loss, the output layer and the decoder;
* summaries (median, mean, std, central intervals) and posterior draws in physical units.

Training encodes targets with :meth:`TargetCodec.encode` and compiles the loss with the
codec's clamp; ``infer``, ``forecast``, the live view and the report decode with
:meth:`TargetCodec.decode` and summarise with :func:`summarize_gaussian`.
"""

import dataclasses
import math

import numpy as np
from scipy.special import expit, ndtri

from ei_keras.simulation.simulator import CONDITION_LIMITS

TRANSFORMS = ("identity", "log10", "logit")
# The one log-variance clamp (standardised units): σ ≥ 0.001 of a target's spread, so an
# interval can shrink to what the data allow (the exact posterior of an informative trace
# is up to 50× narrower than the prior); the upper clamp only guards against overflow.
LOG_VAR_MIN = -13.8
LOG_VAR_MAX = 10.0
# A bounded value is encoded at least this fraction of its range inside the bounds, so a
# target drawn exactly on a bound (k_d = 0) has a finite logit.
LOGIT_MARGIN = 1e-6
# Central interval levels (percent) of every summary.
INTERVALS = (50, 90, 95)
# Models trained before the bounded (logit) targets can draw outside what the simulator
# accepts; their draws are clipped to these. Bounded targets never need it.
DRAW_LIMITS = {"activity": CONDITION_LIMITS["activity"], "k_d": CONDITION_LIMITS["k_d"],
               "tau_probe": (0.0, 3600.0), "pH_offset": (-2.0, 2.0)}
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


def summarize_gaussian(loc, scale, transform, bounds=None) -> dict:
    """Median, mean, std and central intervals in physical units of a Gaussian in
    transformed units (log10 for activity, logit over ``bounds`` for bounded targets);
    each value an array shaped like ``loc``. Bounded targets stay inside their bounds."""
    loc, scale = np.asarray(loc, dtype=float), np.asarray(scale, dtype=float)
    summary = {"median": inverse_transform(transform, loc, bounds)}
    summary["mean"], summary["std"] = physical_moments(loc, scale, transform, bounds)
    for level in INTERVALS:
        z = ndtri(0.5 + level / 200.0)
        summary[f"lo{level}"] = inverse_transform(transform, loc - z * scale, bounds)
        summary[f"hi{level}"] = inverse_transform(transform, loc + z * scale, bounds)
    return summary


def summarize(decoded) -> dict:
    """:func:`summarize_gaussian` of every target of a :meth:`TargetCodec.decode` result."""
    return {name: summarize_gaussian(d["loc"], d["scale"], d["transform"], d.get("bounds"))
            for name, d in decoded.items()}


def latents_at(decoded, row, z) -> dict:
    """The latent parameters in physical units at ``z`` (k, p) posterior standard
    deviations from trace ``row``'s posterior median, one column per target in the order
    of ``decoded`` (a :meth:`TargetCodec.decode` result): a dict of (k,) arrays."""
    latent = {}
    for j, (name, d) in enumerate(decoded.items()):
        values = inverse_transform(d["transform"], d["loc"][row] + z[:, j] * d["scale"][row],
                                   d.get("bounds"))
        latent[name] = np.clip(values, *DRAW_LIMITS.get(name, (-np.inf, np.inf)))
    return latent


def draw_latents(decoded, n_draws, rng) -> list:
    """Per trace, a dict of (n_draws,) latent-parameter draws in physical units from a
    :meth:`TargetCodec.decode` result (``rng``: a ``numpy.random.Generator``)."""
    n = len(next(iter(decoded.values()))["loc"])
    return [latents_at(decoded, row, rng.standard_normal((n_draws, len(decoded))))
            for row in range(n)]


@dataclasses.dataclass(frozen=True)
class TargetCodec:
    """Physical targets ⇄ the standardised Gaussian space of the network.

    Args:
        target_names: names of the p targets, e.g. ``("activity", "k_d")``.
        transforms: one of ``"identity"``/``"log10"``/``"logit"`` per target.
        loc: per-target centre in transformed units.
        scale: per-target positive scale in transformed units.
        bounds: per target ``(low, high)`` for ``logit`` targets, None for the others.
        log_var_min: lower clamp of the predicted log-variance.
        log_var_max: upper clamp of the predicted log-variance.
        std_scale: per-target factor on the decoded standard deviation, fitted after
            training on held-out traces (:mod:`ei_keras.evaluation.calibration`); 1 for
            an uncalibrated model. Training never sees it.
    """

    target_names: tuple
    transforms: tuple
    loc: tuple
    scale: tuple
    bounds: tuple
    log_var_min: float = LOG_VAR_MIN
    log_var_max: float = LOG_VAR_MAX
    std_scale: tuple = None

    @classmethod
    def create(cls, target_names, transforms=None, loc=None, scale=None, bounds=None,
               log_var_min=LOG_VAR_MIN, log_var_max=LOG_VAR_MAX, std_scale=None):
        """A validated codec; ``None`` gives identity transforms, loc 0, scale 1 and
        std_scale 1."""
        names = tuple(str(n) for n in target_names)
        p = len(names)
        if not p or len(set(names)) != p:
            raise ValueError(f"target_names must be distinct and non-empty; got {target_names!r}")
        transforms = ("identity",) * p if transforms is None else tuple(transforms)
        loc = (0.0,) * p if loc is None else tuple(float(v) for v in np.ravel(loc))
        scale = (1.0,) * p if scale is None else tuple(float(v) for v in np.ravel(scale))
        std_scale = (1.0,) * p if std_scale is None else tuple(
            float(v) for v in np.ravel(std_scale))
        if len(std_scale) != p or not all(0 < v < np.inf for v in std_scale):
            raise ValueError(f"std_scale needs {p} finite entries > 0; got {std_scale!r}")
        if len(transforms) != p or any(t not in TRANSFORMS for t in transforms):
            raise ValueError(f"transforms needs {p} entries from {TRANSFORMS}; got {transforms!r}")
        if len(loc) != p or len(scale) != p or not all(s > 0 for s in scale):
            raise ValueError(f"loc and scale need {p} entries, scale > 0; got {loc!r}, {scale!r}")
        if not log_var_min < log_var_max:
            raise ValueError(
                f"log_var_min must be < log_var_max; got {log_var_min!r}, {log_var_max!r}")
        bounds = (None,) * p if bounds is None else tuple(bounds)
        if len(bounds) != p:
            raise ValueError(f"bounds needs {p} entries (None or [low, high]); got {bounds!r}")
        bounds = tuple(_check_bounds(tr, b) for tr, b in zip(transforms, bounds))
        return cls(names, transforms, loc, scale, bounds, float(log_var_min),
                   float(log_var_max), std_scale)

    def encode(self, targets):
        """Physical targets ``(n, p)`` → standardised transformed values (float32)."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 2 or targets.shape[1] != len(self.target_names):
            raise ValueError(
                f"targets must be (n, {len(self.target_names)}) for {list(self.target_names)}; "
                f"got shape {targets.shape}")
        columns = [(forward_transform(tr, targets[:, j], self.bounds[j]) - self.loc[j])
                   / self.scale[j] for j, tr in enumerate(self.transforms)]
        return np.stack(columns, axis=1).astype(np.float32)

    def decode(self, y_pred):
        """Network output ``[mean, log_var]`` ``(n, 2 p)`` → per target a dict of arrays.

        ``loc``/``scale``: mean and standard deviation of the Gaussian in transformed units
        (log10 for activity, logit over the prior range for bounded ones), the log-variance
        clamped and the standard deviation times ``std_scale``; ``median``, ``mean``,
        ``std``: the same distribution in physical units;
        ``transform`` and ``bounds``: how to map back (see :func:`inverse_transform`).
        """
        y_pred = np.asarray(y_pred, dtype=np.float64)
        p = len(self.target_names)
        if y_pred.ndim != 2 or y_pred.shape[1] != 2 * p:
            raise ValueError(f"y_pred must be (n, {2 * p}); got shape {y_pred.shape}")
        log_var = np.clip(y_pred[:, p:], self.log_var_min, self.log_var_max)
        decoded = {}
        for j, (name, transform) in enumerate(zip(self.target_names, self.transforms)):
            loc = y_pred[:, j] * self.scale[j] + self.loc[j]
            scale = np.exp(0.5 * log_var[:, j]) * (self.scale[j] * self.std_scale[j])
            bounds = None if self.bounds[j] is None else list(self.bounds[j])
            mean, std = physical_moments(loc, scale, transform, bounds)
            decoded[name] = {"loc": loc, "scale": scale, "transform": transform,
                             "bounds": bounds, "median": inverse_transform(transform, loc, bounds),
                             "mean": mean, "std": std}
        return decoded

    def get_config(self):
        """JSON-able fields (what the output layer stores in the ``.keras`` file)."""
        return {"target_names": list(self.target_names), "transforms": list(self.transforms),
                "loc": list(self.loc), "scale": list(self.scale),
                "bounds": [None if b is None else list(b) for b in self.bounds],
                "log_var_min": self.log_var_min, "log_var_max": self.log_var_max,
                "std_scale": list(self.std_scale)}
