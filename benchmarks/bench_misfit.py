"""The domain guard's misfit check on held-out traces: how often it flags a trace of the
model's own chemistry (a false alarm), whether it still flags traces unlike it, and what
it costs, against the previous check (64 random posterior draws) in the same run.

    python benchmarks/bench_misfit.py [--model M.keras] [--data data/test_grid.h5]
        [--traces 2000] [--seed 0]

Draws ``--traces`` traces of an any-format test set (e.g. the format grid of the README),
runs the network on each, and computes the best RMS misfit of (a) today's candidates
(:func:`ei_keras.inference.posterior.misfit_candidates`: the best explanation the local fit
simulated — the median and the damped Gauss–Newton steps from it to the mode, which
``infer`` uses to sharpen its answer and whose cost is counted here in full — then 16
draws only where it misses the trace) and (b) the median and 64 random draws.
A trace is flagged above ``MISFIT_RATIO`` × the training noise. Three traces unlike the
chemistry (falling, oscillating, accelerating) must be flagged by both.
"""

import argparse
import time

import numpy as np

import ei_keras
from ei_keras.data.load import load_any_format
from ei_keras.inference import load_model
from ei_keras.inference.domain import MISFIT_RATIO
from ei_keras.inference.laplace import exact_prior, local_fits
from ei_keras.inference.least_squares import predict_readings
from ei_keras.inference.posterior import misfit_candidates
from ei_keras.models import decode_predictions, model_info
from ei_keras.simulation import KNOWN_NAMES
from ei_keras.targets import draw_latents, latents_at

KNOWN = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
             initial_pH=7.02)


def unlike_the_chemistry():
    t = np.arange(0.0, 120.0, 1.0)
    return {"falling": (t, 7.02 - 0.004 * t),
            "oscillating": (t, 7.02 + 0.4 * np.sin(t / 10.0)),
            "accelerating": (t, 7.02 + 0.0005 * t**1.5)}


def random_draws_candidates(decoded, t, known, seed=0):
    """The previous check: the posterior median and 64 random draws, (65, m)."""
    draws = draw_latents(decoded, 64, np.random.default_rng(seed))[0]
    median = latents_at(decoded, 0, np.zeros((1, len(decoded))))
    latent = {name: np.concatenate([median[name], draws[name]]) for name in decoded}
    return predict_readings(t, known, latent)


def best_rms(predicted, pH):
    return float(np.sqrt(np.nanmean((predicted - pH) ** 2, axis=1)).min())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--data", default="data/test_grid.h5")
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = load_model(args.model or ei_keras.default_model_path())
    noise = float(model_info(model)["domain"]["noise_std"])
    prior = exact_prior(model)
    data = load_any_format(args.data)
    rows = np.random.default_rng(args.seed).choice(len(data.pH), min(args.traces, len(data.pH)),
                                                   replace=False)
    cases = [(data.t[row][np.isfinite(data.t[row])], data.pH[row][np.isfinite(data.t[row])],
              data.known[row]) for row in rows]
    cases += [(t, pH, np.array([KNOWN[name] for name in KNOWN_NAMES], dtype=np.float32))
              for t, pH in unlike_the_chemistry().values()]
    ratios = {"today": [], "64 draws": []}
    seconds = {"today": 0.0, "64 draws": 0.0}
    for t, pH, known in cases:
        t32, pH32 = t.astype(np.float32)[None], pH.astype(np.float32)[None]
        outputs = model.predict_on_batch({"pH": pH32, "t": t32, "known": known[None]})
        decoded = decode_predictions(model, outputs)
        started = time.perf_counter()
        fits = local_fits(prior, decoded, t32, pH32, known[None])
        today = misfit_candidates(decoded, t32, pH32, known[None], noise, fits)[0]
        seconds["today"] += time.perf_counter() - started
        started = time.perf_counter()
        previous = random_draws_candidates(decoded, t.astype(float),
                                           dict(zip(KNOWN_NAMES, known.astype(float))))
        seconds["64 draws"] += time.perf_counter() - started
        ratios["today"].append(best_rms(today, pH) / noise)
        ratios["64 draws"].append(best_rms(previous, pH) / noise)
    n = len(rows)
    print(f"{n} held-out traces of {args.data}; flagged above {MISFIT_RATIO} × noise {noise:g}")
    print(f"{'check':>9} {'ms/trace':>9} {'median ratio':>13} {'p99 ratio':>10} "
          f"{'false alarms':>13}  unlike the chemistry (ratio)")
    for name, values in ratios.items():
        values = np.array(values)
        held_out, unlike = values[:n], values[n:]
        print(f"{name:>9} {seconds[name] / len(cases) * 1e3:>9.1f} "
              f"{np.median(held_out):>13.2f} {np.percentile(held_out, 99):>10.2f} "
              f"{np.mean(held_out > MISFIT_RATIO):>13.2%}  "
              + " ".join(f"{label} {value:.1f}"
                         for label, value in zip(unlike_the_chemistry(), unlike)))
    print(f"cost ratio (64 draws / today): {seconds['64 draws'] / seconds['today']:.1f}x")


if __name__ == "__main__":
    main()
