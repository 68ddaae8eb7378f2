"""How much each reading tells about each parameter: per-reading Fisher information.

With Gaussian noise of standard deviation σ, reading i contributes
``(∂μ_i/∂θ_j)² / σ²`` to the Fisher information of parameter θ_j, where μ_i is the
noise-free measured pH the simulator predicts at the reading's time. The derivatives are
central differences in the space the network predicts in (log10 activity, logit for the
bounded parameters), all parameter sets in one batched simulator call. Comparing this with
the attention weights says whether the network leaned on the readings that carry the answer.
"""

import numpy as np
from scipy.stats import spearmanr

from ei_keras.inference.least_squares import predict_readings
from ei_keras.targets import forward_transform, inverse_transform

# Central-difference step in the transformed space.
STEP = 1e-3


def reading_information(t, known, point, transforms, bounds=None, noise_std=0.01):
    """Fisher information of every reading about every parameter.

    Args:
        t: reading times ``(m,)`` in seconds.
        known: the five known inputs (``initial_pH`` measured).
        point: parameter values in physical units at which to differentiate, e.g. the
            posterior median (``{name: float}``; latents not given are 0).
        transforms: per name in ``point`` its transform (``log10``/``logit``/``identity``).
        bounds: per name ``[low, high]`` for logit transforms.
        noise_std: reading noise σ in pH.

    Returns:
        ``{name: (m,) array}`` of per-reading information in transformed units.
    """
    names = list(point)
    bounds = bounds or {}
    centre = {n: float(forward_transform(transforms[n], point[n], bounds.get(n))) for n in names}
    sets = {n: [] for n in names}
    for shifted in names:  # + and - STEP for each parameter, the others at the centre
        for sign in (1.0, -1.0):
            for n in names:
                value = centre[n] + (sign * STEP if n == shifted else 0.0)
                sets[n].append(float(inverse_transform(transforms[n], value, bounds.get(n))))
    readings = predict_readings(np.asarray(t, float), known,
                                {n: np.array(v) for n, v in sets.items()})
    information = {}
    for k, name in enumerate(names):
        slope = (readings[2 * k] - readings[2 * k + 1]) / (2 * STEP)
        information[name] = slope**2 / noise_std**2
    return information


def attention_agreement(attention, information):
    """Spearman rank correlation between attention and each parameter's information.

    Args:
        attention: ``(m,)`` weights of one trace.
        information: ``{name: (m,)}`` from :func:`reading_information`.

    Returns:
        ``{name: rho}`` and ``"all"``: against the sum of each parameter's information
        share (every parameter counted equally); NaN where a side is constant.
    """
    shares = [info / info.sum() for info in information.values() if info.sum() > 0]
    result = {}
    for name, info in {**information, "all": np.sum(shares, axis=0) if shares else None}.items():
        if info is None or np.ptp(info) == 0 or np.ptp(attention) == 0:
            result[name] = float("nan")
        else:
            result[name] = float(spearmanr(attention, info).statistic)
    return result
