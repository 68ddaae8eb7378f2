"""Seconds per trace of ``ei_keras.refine`` (the exact posterior) against least squares.

    python benchmarks/bench_refine.py [--model M.keras] [--traces 10] [--readings 100 1000]

Simulates ``--traces`` traces from the default priors (probe lag and offset on, σ = 0.01,
30 s, evenly spaced) for each reading count, then times ``refine`` (everything: the
network, every importance-sampling round, the summaries; the model already loaded) and
``fit_least_squares`` fitting activity, k_d, tau_probe and pH_offset on the same traces,
in the same process. Prints medians, the ratio, and the ESS and rounds refine needed.
"""

import argparse
import time

import numpy as np

import ei_keras
from ei_keras.inference import fit_least_squares, load_model
from ei_keras.inference.least_squares import predict_readings
from ei_keras.inference.exact_posterior import refine
from ei_keras.simulation import KNOWN_NAMES, LATENT_NAMES
from ei_keras.simulation.priors import sample_priors

FIT = ("activity", "k_d", "tau_probe", "pH_offset")


def traces(n, readings, seed):
    """``n`` noisy 30 s traces with ``readings`` readings each, from the default priors."""
    rng = np.random.default_rng(seed)
    samples = sample_priors(rng, n)
    t = np.linspace(0.0, 30.0, readings)
    cases = []
    for row in range(n):
        known = {name: float(samples[name][row]) for name in KNOWN_NAMES}
        latent = {name: samples[name][row:row + 1] for name in LATENT_NAMES}
        pH = predict_readings(t, known, latent)[0] + rng.normal(0.0, 0.01, readings)
        cases.append((t, pH, known))
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--traces", type=int, default=10)
    parser.add_argument("--readings", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    model = load_model(args.model or ei_keras.default_model_path())
    for readings in args.readings:
        cases = traces(args.traces, readings, args.seed)
        refine(model, *cases[0], allow_extrapolation=True)  # warm-up
        exact, classical, ess, rounds, verdicts = [], [], [], [], []
        for t, pH, known in cases:
            started = time.perf_counter()
            result = refine(model, t, pH, known, allow_extrapolation=True)
            exact.append(time.perf_counter() - started)
            ess.append(result["ess"])
            rounds.append(result["diagnostics"]["rounds"])
            verdicts.append(result["verdict"])
            started = time.perf_counter()
            fit_least_squares(t, pH, known, fit=FIT)
            classical.append(time.perf_counter() - started)
        ours, theirs = np.median(exact), np.median(classical)
        print(f"{readings} readings, {args.traces} traces:")
        print(f"  refine:        {ours:.2f} s median per trace (max {np.max(exact):.2f} s); "
              f"ESS median {np.median(ess):.0f} (min {np.min(ess):.0f}), rounds "
              f"{np.bincount(rounds, minlength=5)[1:].tolist()} (1/2/3/4)")
        print(f"  least squares: {theirs:.2f} s median per trace ({', '.join(FIT)})")
        print(f"  refine / least squares: {ours / theirs:.2f}x")
        print(f"  verdicts: " + ", ".join(f"{v} {verdicts.count(v)}"
                                          for v in sorted(set(verdicts))))


if __name__ == "__main__":
    main()
