"""How honest is the local fit's σ? The factor its intervals need, per parameter, held out.

    python benchmarks/sharpen_calibration.py --data data/calib.h5 [--model M.keras]
        [--traces 20000]

For every trace: the network's answer, its local Laplace fit
(:func:`ei_keras.inference.laplace.local_fits`) and, for each parameter the fit would
answer with its raw σ (:func:`~ei_keras.inference.laplace.sharpen` with factors 1), the
truth's z-score under the fit's Gaussian. Prints per parameter and per band of readings
(fewer than ``MANY_READINGS``, as many or more) the traces sharpened, the factor
``q90(|z|) / 1.645`` that makes the fit's 90 % intervals hold 90 % of those truths
(``LAPLACE_FACTORS`` in ``ei_keras/inference/laplace.py`` come from this on the calibration
set, never from a test set) with its bootstrap standard error, the 90 % coverage of the raw
fit, of the fit with the shipped factors and of the network on the same traces, and the
median σ_fit / σ_network.
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
    MANY_READINGS,
    SHARPEN_FROM_S,
    exact_prior,
    local_fits,
    sharpen,
)
from ei_keras.targets import forward_transform

Z90 = 1.6448536269514722


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
    raw, shipped = copy.deepcopy(network), copy.deepcopy(network)
    raw_names = sharpen(raw, fits, factors={name: (1.0, 1.0) for name in network})
    shipped_names = sharpen(shipped, fits)
    print(f"{len(fits)} traces of {args.data}; {fitted} of {SHARPEN_FROM_S:g} s or more "
          f"fitted, {seconds * 1e3:.1f} ms each")
    print(f"{'parameter':<10} {'readings':>9} {'sharpened':>9} {'factor':>13} {'cov90 raw':>10} "
          f"{'shipped':>8} {'network':>8} {'σ fit/net':>10}  (shipped factor, its share)")
    many = np.sum(np.isfinite(data.pH), axis=1) >= MANY_READINGS
    rng = np.random.default_rng(0)
    for j, name in enumerate(data.latent_names):
        if name not in network:
            continue
        d = network[name]
        truth = forward_transform(d["transform"], data.latent[:, j].astype(float),
                                  d.get("bounds"))
        z_raw = np.abs(raw[name]["loc"] - truth) / raw[name]["scale"]
        z_shipped = np.abs(shipped[name]["loc"] - truth) / shipped[name]["scale"]
        z_network = np.abs(d["loc"] - truth) / d["scale"]
        for band, (label, rows) in enumerate(((f"< {MANY_READINGS}", ~many),
                                              (f">= {MANY_READINGS}", many))):
            used = rows & np.array([name in names for names in raw_names])
            factor = np.quantile(z_raw[used], 0.9) / Z90
            error = np.std([np.quantile(rng.choice(z_raw[used], used.sum()), 0.9) / Z90
                            for _ in range(200)])
            share = np.mean([name in names for names, row in zip(shipped_names, rows) if row])
            print(f"{name:<10} {label:>9} {used.sum():>9} {factor:>7.3f} ± {error:.3f} "
                  f"{np.mean(z_raw[used] <= Z90):>10.3f} "
                  f"{np.mean(z_shipped[used] <= Z90):>8.3f} "
                  f"{np.mean(z_network[used] <= Z90):>8.3f} "
                  f"{np.median(raw[name]['scale'][used] / d['scale'][used]):>10.2f}  "
                  f"({LAPLACE_FACTORS[name][band]:g}, {share:.2f})")


if __name__ == "__main__":
    main()
