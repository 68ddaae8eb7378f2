"""How close the local fit gets to the posterior mode, and at how many simulations.

    python benchmarks/local_fit_convergence.py --data data/test_grid.h5 [--model M.keras]
        [--traces 400] [--min-span 60]

On the first ``--traces`` held-out traces spanning at least ``--min-span`` seconds (in a
seeded random order): the network's answer, then :func:`ei_keras.inference.laplace.local_fits`
as shipped, with every step checked by a simulation (no unchecked last step) and also with
the forward-difference step of 1e-4 it used before, against a reference fit converged far
tighter (central differences, predicted gain below 1e-5, up to 60 tries). Prints per
setting the simulator calls and milliseconds per fit, and how far each mode lies from the
reference mode in the reference's posterior σ, per parameter (median, 90th percentile,
largest) and the largest over the parameters (99th percentile; fits off by over 0.3 σ).
"""

import argparse
import functools
import time
from unittest import mock

import numpy as np
from scipy.special import expit

import ei_keras
from ei_keras.data import load_any_format
from ei_keras.evaluation.evaluate import _rows_of, decode_dataset, thinned_as_infer
from ei_keras.inference import laplace, load_model
from ei_keras.inference.laplace import exact_prior, local_fits


def central_curvature(points, residuals, step=1e-3):
    """:func:`ei_keras.inference.laplace.curvature` by central differences (O(step²))."""
    k, d = points.shape
    shifts = step * np.eye(d)[None]
    r = residuals(np.concatenate([points, (points[:, None, :] + shifts).reshape(k * d, d),
                                  (points[:, None, :] - shifts).reshape(k * d, d)]))
    r0 = r[:k]
    jacobian = (r[k:k + k * d] - r[k + k * d:]).reshape(k, d, -1) / (2.0 * step)
    sig = expit(points)
    gradient = np.einsum("kdm,km->kd", jacobian, r0) - (1.0 - 2.0 * sig)
    hessian = np.einsum("kdm,kem->kde", jacobian, jacobian) + \
        np.eye(d)[None] * (2.0 * sig * (1.0 - sig))[:, None, :]
    return np.sum(r0**2, axis=1), gradient, hessian


def run(data, network, prior, *, curvature=None, steps=laplace.SHARPEN_STEPS, **mode_options):
    """Local fits of every trace (up to ``steps`` steps) with ``laplace``'s curvature and
    mode options patched; returns the fits, simulator calls per fit and seconds per fit."""
    calls = []
    model_class = laplace.ReadingsModel

    class Counted(model_class):
        def __call__(self, latent):
            calls.append(1)
            return super().__call__(latent)

    patches = [mock.patch.object(laplace, "ReadingsModel", Counted),
               mock.patch.object(laplace, "laplace_mode",
                                 functools.partial(laplace.laplace_mode, **mode_options))]
    if curvature is not None:
        patches.append(mock.patch.object(laplace, "curvature", curvature))
    for patch in patches:
        patch.start()
    try:
        started = time.perf_counter()
        fits = local_fits(prior, network, data.t, data.pH, data.known, steps=steps)
        seconds = (time.perf_counter() - started) / len(fits)
    finally:
        for patch in reversed(patches):
            patch.stop()
    return fits, len(calls) / len(fits), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out any-format set")
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--traces", type=int, default=400)
    parser.add_argument("--min-span", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    model = load_model(args.model or ei_keras.default_model_path())
    data = load_any_format(args.data)
    order = np.random.default_rng(0).permutation(len(data.pH))
    rows = order[data.sample_prefix_lengths[order] >= args.min_span][:args.traces]
    data, _ = thinned_as_infer(model, _rows_of(data, rows))
    network, _ = decode_dataset(model, data)
    prior = exact_prior(model)
    reference, _, _ = run(data, network, prior, curvature=central_curvature, tolerance=1e-5,
                          final_step=0.0, steps=60)
    settings = {
        "shipped": {},
        "every step checked": dict(final_step=0.0),
        "every step checked, step 1e-4": dict(final_step=0.0, step=1e-4),
    }
    print(f"{len(rows)} traces of {args.data} spanning {args.min_span:g} s or more; "
          f"|mode - reference| in the reference's σ, per parameter "
          f"{laplace.PriorSpace(prior).names}, and the largest of them per fit")
    print(f"{'setting':<30} {'calls/fit':>9} {'ms/fit':>7}  {'median':>27}  {'90th pct':>27}  "
          f"{'largest':>27}  {'fit: p99':>8} {'> 0.3 σ':>7}")
    for name, options in settings.items():
        fits, calls, seconds = run(data, network, prior, **options)
        z = np.array([np.abs(fit["mode"] - ref["mode"]) / np.sqrt(np.diag(ref["cov"]))
                      for fit, ref in zip(fits, reference)
                      if fit["cov"] is not None and ref["cov"] is not None])

        def shown(values):
            return " ".join(f"{value:6.3f}" for value in values)

        worst = z.max(axis=1)
        print(f"{name:<30} {calls:>9.2f} {seconds * 1e3:>7.2f}  {shown(np.median(z, axis=0))}  "
              f"{shown(np.quantile(z, 0.9, axis=0))}  {shown(z.max(axis=0))}  "
              f"{np.quantile(worst, 0.99):>8.3f} {np.sum(worst > 0.3):>7}")


if __name__ == "__main__":
    main()
