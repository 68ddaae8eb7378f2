"""Single-trace inference time of ``ei_keras.infer`` at several trace lengths, against least
squares on the same traces, in the same run.

    python benchmarks/bench_inference.py [--model M.keras] [--repeats 20]

For traces of 3 to 1200 readings (simulated with the package's measurement model), times
``infer`` on one trace at a time after a warm-up call with the model already loaded:
the network alone (``check_fit=False, sharpen=False``), and as ``infer`` answers by default:
with the local fit that sharpens it and the domain guard's misfit check (a few small
simulator calls, shared); and ``fit_least_squares`` of all four parameters. Prints medians, the
ratio least squares / ``infer``, and the network's forward pass alone both ways: Keras's
``predict_on_batch`` (the baseline) and ``ei_keras.models.predict_batch`` (each layer's
``call`` run directly, what ``infer`` uses), with their ratio.

With ``--data`` (a format-grid test set, e.g. ``data/test_grid.h5``) it also times
``infer`` as it answers by default on ``--per-span`` held-out traces of each trace length
(all reading intervals; each trace's median of ``--repeats`` calls): the local fit takes
as many Gauss–Newton steps as each trace needs, so this is the spread a user meets, where
the fixed traces above show one case each.
"""

import argparse
import time

import numpy as np

import ei_keras  # noqa: I001 — first: it picks the default backend (torch)
import keras
from ei_keras.data import load_any_format
from ei_keras.inference import fit_least_squares, infer, load_model
from ei_keras.models import model_info, predict_batch
from ei_keras.simulation.measurement import measure
from ei_keras.simulation.priors import simulator_conditions

KNOWN = dict(substrate_mM=30.0, grams_urease_powder=0.2, volume_L=0.5, temperature_C=30.0,
             initial_pH=7.02)
LATENT = dict(activity=0.05, k_d=1e-3, tau_probe=5.0, pH_offset=0.02)
FORMATS = ((3, 2.0), (30, 1.0), (100, 0.3), (300, 1.0), (1200, 0.5))  # readings, interval


def trace(n, interval, seed):
    t = np.arange(n) * interval
    case = {name: np.array([value]) for name, value in {**KNOWN, **LATENT}.items()}
    return t, measure(simulator_conditions(case), t, tau_probe=LATENT["tau_probe"],
                      pH_offset=LATENT["pH_offset"], rng=np.random.default_rng(seed))[0]


def median_seconds(call, repeats):
    call()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data", default=None, help="also time held-out traces of this set")
    parser.add_argument("--per-span", type=int, default=20, help="traces per trace length")
    args = parser.parse_args()
    model = load_model(args.model or ei_keras.default_model_path())
    fit = ("activity", "k_d", "tau_probe", "pH_offset")
    print(f"backend {keras.backend.backend()} (predict_batch is predict_on_batch except on "
          f"torch)")
    print(f"{'readings':>8} {'span':>7} {'network':>10} {'+ fit, guard':>13} {'least sq.':>10} "
          f"{'ratio':>7} {'predict_on_batch':>17} {'predict_batch':>14} {'ratio':>6}")
    for n, interval in FORMATS:
        t, pH = trace(n, interval, seed=n)
        batch = {"pH": pH[None].astype("float32"), "t": t[None].astype("float32"),
                 "known": np.array([[KNOWN[name] for name in model_info(model)["known_names"]]],
                                   dtype="float32")}
        keras_call = median_seconds(lambda: model.predict_on_batch(batch), args.repeats)
        direct = median_seconds(lambda: predict_batch(model, batch), args.repeats)
        network = median_seconds(
            lambda: infer(model, t, pH, KNOWN, check_fit=False, sharpen=False), args.repeats)
        guarded = median_seconds(lambda: infer(model, t, pH, KNOWN), args.repeats)
        classical = median_seconds(lambda: fit_least_squares(t, pH, KNOWN, fit=fit),
                                   max(3, args.repeats // 5))
        print(f"{n:>8} {t[-1]:>6g}s {network * 1e3:>8.1f}ms {guarded * 1e3:>11.1f}ms "
              f"{classical * 1e3:>8.0f}ms {classical / guarded:>6.0f}x "
              f"{keras_call * 1e3:>15.1f}ms {direct * 1e3:>12.1f}ms "
              f"{keras_call / direct:>5.2f}x")
    if args.data:
        held_out(model, args.data, args.per_span, args.repeats)


def held_out(model, path, per_span, repeats):
    """Per trace length of the set at ``path``, the median and 90th percentile over
    ``per_span`` of its traces of each trace's median ``infer`` time."""
    data = load_any_format(path)
    order = np.random.default_rng(0).permutation(len(data.pH))
    print(f"infer on held-out traces of {path} ({per_span} per length, all intervals)")
    print(f"{'length':>7} {'readings':>13} {'median':>8} {'p90':>8} {'under 10 ms':>11}")
    for span in np.unique(data.sample_prefix_lengths):
        rows = order[data.sample_prefix_lengths[order] == span][:per_span]
        seconds, readings = [], []
        for row in rows:
            n = int(data.lengths[row])
            t, pH = data.t[row, :n], data.pH[row, :n]
            known = dict(zip(data.known_names, data.known[row].astype(float)))
            seconds.append(median_seconds(lambda: infer(model, t, pH, known), repeats))
            readings.append(n)
        seconds = np.array(seconds) * 1e3
        print(f"{span:>6g}s {min(readings):>6}–{max(readings):<6} {np.median(seconds):>6.1f}ms "
              f"{np.quantile(seconds, 0.9):>6.1f}ms {np.mean(seconds <= 10):>10.0%}")


if __name__ == "__main__":
    main()
