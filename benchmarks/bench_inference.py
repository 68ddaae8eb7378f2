"""Single-trace inference time of ``ei_keras.infer`` against least squares, same run.

    python benchmarks/bench_inference.py [--model M.keras] [--data TEST.h5] [--traces 20]

Times ``infer`` on one trace at a time (after a warm-up call, model already loaded) and
``fit_least_squares`` (fitting the parameters the data's measurement model switches on)
on the same traces; prints medians and the ratio.
"""

import argparse
import time

import numpy as np

import ei_keras
from ei_keras.data import load_prefix
from ei_keras.inference import fit_least_squares, infer, load_model
from ei_keras.inference.posterior import trained_prefix_length


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--data", required=True, help="dataset with the model's prefix length")
    parser.add_argument("--traces", type=int, default=20)
    args = parser.parse_args()

    model = load_model(args.model or ei_keras.default_model_path())
    data = load_prefix(args.data, trained_prefix_length(model))
    switches = data.config["measurement_model"]
    fit = ["activity", "k_d"] + [name for name, on in (("tau_probe", switches["use_probe_lag"]),
                                                      ("pH_offset", switches["use_offset"])) if on]
    known = [dict(zip(data.known_names, row.astype(float))) for row in data.known]
    infer(model, data.t[0], data.pH[0], known[0])  # warm-up

    network, classical = [], []
    for row in range(args.traces):
        started = time.perf_counter()
        infer(model, data.t[row], data.pH[row], known[row])
        network.append(time.perf_counter() - started)
        started = time.perf_counter()
        fit_least_squares(data.t[row], data.pH[row], known[row], fit=fit)
        classical.append(time.perf_counter() - started)
    ours, theirs = np.median(network), np.median(classical)
    print(f"infer (one trace, {data.pH.shape[1]} readings): {ours * 1e3:.1f} ms median")
    print(f"least squares ({', '.join(fit)}):  {theirs * 1e3:.0f} ms median")
    print(f"speed-up: {theirs / ours:.0f}x")


if __name__ == "__main__":
    main()
