"""How honest is the local fit's σ? The weight and factor its intervals need, held out.

    python benchmarks/sharpen_calibration.py --data data/calib.h5 [--model M.keras]
        [--traces 20000]

For every trace: the network's answer, its local Laplace fit
(:func:`ei_keras.inference.laplace.local_fits`) and, for each parameter the fit answers
(:func:`~ei_keras.inference.laplace.sharpen`: the readings carry most of its precision),
the error of the fit's mode against the truth, the fit's σ and the network's σ. The answer's
σ is f · σ_fit^w · σ_net^(1 − w). Prints per parameter the weight w that gives the truths the
highest Gaussian likelihood (each band's scale matched to its errors), and at the shipped
weight, per band of trace length (spanning less than ``LONG_SPAN_S``, as long or longer),
the factor f = q90(|z|) / 1.645 that makes the 90 % intervals hold 90 % of those truths,
with its bootstrap standard error (``LAPLACE_WEIGHTS`` and ``LAPLACE_FACTORS`` in
``ei_keras/inference/laplace.py`` come from this on the calibration set, never from a test
set); then the 90 % coverage of the shipped answers, of the network on the same traces, split
by whether the fit was the narrower or the wider of the two, and the median σ_fit / σ_network.
"""

import argparse
import copy
import time

import numpy as np

import ei_keras
from ei_keras.data import load_any_format
from ei_keras.evaluation.evaluate import _rows_of, decode_dataset, thinned_as_infer
from ei_keras.inference import load_model
from ei_keras.inference.laplace import (
    LAPLACE_FACTORS,
    LAPLACE_WEIGHTS,
    LONG_SPAN_S,
    SHARPEN_FROM_S,
    exact_prior,
    local_fits,
    sharpen,
)
from ei_keras.targets import forward_transform

Z90 = 1.6448536269514722
WEIGHTS = np.linspace(0.0, 1.0, 21)


def band_scales(errors, sigma, long, q=None):
    """Per band (spanning less / as long as LONG_SPAN_S) the factor on ``sigma``: the RMS
    of errors / sigma, or with ``q`` its q-quantile of |errors / sigma| over Z90."""
    ratios = np.abs(errors / sigma)
    return np.array([np.sqrt(np.mean(ratios[long == band] ** 2)) if q is None else
                     np.quantile(ratios[long == band], q) / Z90 for band in (False, True)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="held-out any-format set (the calibration set, not a test set)")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--traces", type=int, default=20000, help="the first N traces")
    args = parser.parse_args()
    model = load_model(args.model or ei_keras.default_model_path())
    data = load_any_format(args.data)
    data, _ = thinned_as_infer(model, _rows_of(data, np.arange(min(args.traces, len(data.pH)))))
    network, _ = decode_dataset(model, data)
    started = time.perf_counter()
    fits = local_fits(exact_prior(model), network, data.t, data.pH, data.known,
                      min_span_s=SHARPEN_FROM_S, progress=True)
    fitted = sum(fit is not None for fit in fits)
    seconds = (time.perf_counter() - started) / max(fitted, 1)
    ones = {name: (1.0, 1.0) for name in network}
    raw, shipped = copy.deepcopy(network), copy.deepcopy(network)
    raw_names = sharpen(raw, fits, factors=ones, weights=dict.fromkeys(network, 1.0))
    shipped_names = sharpen(shipped, fits)
    print(f"{len(fits)} traces of {args.data}; {fitted} of {SHARPEN_FROM_S:g} s or more "
          f"fitted, {seconds * 1e3:.1f} ms each")
    print(f"{'parameter':<10} {'answered':>8} {'best w':>6} {'shipped w':>9} "
          f"{f'factor < / >= {LONG_SPAN_S:g} s':>30} {'cov90 shipped':>13} {'network':>8} "
          f"{'fit narrower / wider: shipped, network':>39} {'σ fit/net':>9}")
    long_rows = np.array([fit is not None and fit["span_s"] >= LONG_SPAN_S for fit in fits])
    rng = np.random.default_rng(0)
    for j, name in enumerate(data.latent_names):
        if name not in network:
            continue
        d = network[name]
        truth = forward_transform(d["transform"], data.latent[:, j].astype(float),
                                  d.get("bounds"))
        used = np.array([name in names for names in raw_names])
        errors = raw[name]["loc"][used] - truth[used]
        fit_sigma, net_sigma = raw[name]["scale"][used], d["scale"][used]
        long = long_rows[used]

        def blended(weight):
            return fit_sigma ** weight * net_sigma ** (1.0 - weight)

        def nll(weight):
            sigma = blended(weight) * band_scales(errors, blended(weight), long)[long.astype(int)]
            return np.sum(np.log(sigma) + 0.5 * (errors / sigma) ** 2)

        best = WEIGHTS[int(np.argmin([nll(weight) for weight in WEIGHTS]))]
        weight = LAPLACE_WEIGHTS[name]
        factors = band_scales(errors, blended(weight), long, q=0.9)
        resampled = [rng.integers(0, used.sum(), used.sum()) for _ in range(200)]
        spread = np.std([band_scales(errors[i], blended(weight)[i], long[i], q=0.9)
                         for i in resampled], axis=0)
        inside = np.abs(shipped[name]["loc"] - truth) / shipped[name]["scale"] <= Z90
        network_inside = np.abs(d["loc"] - truth) / d["scale"] <= Z90
        narrower = fit_sigma < net_sigma
        print(f"{name:<10} {used.sum():>8} {best:>6.2f} {weight:>9.2f} "
              f"{factors[0]:>7.3f} ± {spread[0]:.3f} / {factors[1]:.3f} ± {spread[1]:.3f} "
              f"{np.mean(inside[used]):>13.3f} {np.mean(network_inside[used]):>8.3f} "
              f"{np.mean(inside[used][narrower]):>13.3f}, "
              f"{np.mean(network_inside[used][narrower]):.3f} / "
              f"{np.mean(inside[used][~narrower]):.3f}, "
              f"{np.mean(network_inside[used][~narrower]):.3f} "
              f"{np.median(fit_sigma / net_sigma):>9.2f}  (shipped factors "
              f"{LAPLACE_FACTORS[name][0]:g} / {LAPLACE_FACTORS[name][1]:g})")


if __name__ == "__main__":
    main()
