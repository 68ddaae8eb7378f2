"""What the loss's variance penalty (and log-variance clamp) does to interval coverage.

Trains the compact model with the ``improved`` recipe once per loss setting on the same
training samples, then scores each best checkpoint on a held-out test file generated with
a different seed: per target, the empirical coverage of the central 50/90/95 % intervals
(honest = 50/90/95), the spread of the z-scores (honest = 1), the plain Gaussian NLL
(no penalty term) and the RMSE of the mean, all in the standardised transformed space
(log10 for activity; coverage does not depend on that choice).

    python benchmarks/calibration_variance_penalty.py --train train.h5 --test test.h5
"""

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.special import ndtri  # noqa: E402

SETTINGS = {
    "no penalty": {"variance_weight": 0.0},
    "default (w=0.01)": {"variance_weight": 0.01},
    "w=0.1": {"variance_weight": 0.1},
    "w=1": {"variance_weight": 1.0},
    "no penalty, clamp -9.2": {"variance_weight": 0.0, "log_var_min": -9.2},
}
LEVELS = (50, 90, 95)


def score(model_path, data):
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    posterior = model.get_layer("posterior")
    z_true = posterior.codec.encode(data.targets)
    out = model.predict({"pH": data.pH, "t": data.t, "known": data.known}, batch_size=512,
                        verbose=0)["posterior"]
    p = z_true.shape[1]
    mean = out[:, :p]
    log_var = np.clip(out[:, p:], posterior.codec.log_var_min, posterior.codec.log_var_max)
    sigma = np.exp(0.5 * log_var)
    z = (z_true - mean) / sigma
    result = {}
    for j, name in enumerate(posterior.target_names):
        row = {f"cover{level}": float(np.mean(np.abs(z[:, j]) < ndtri(0.5 + level / 200)))
               for level in LEVELS}
        row["z_std"] = float(np.std(z[:, j]))
        row["nll"] = float(np.mean(0.5 * math.log(2 * math.pi) + 0.5 * log_var[:, j]
                                   + 0.5 * z[:, j] ** 2))
        row["rmse"] = float(np.sqrt(np.mean((z_true[:, j] - mean[:, j]) ** 2)))
        row["mean_sigma"] = float(np.mean(sigma[:, j]))
        row["at_floor"] = float(np.mean(out[:, p + j] <= posterior.codec.log_var_min))
        result[name] = row
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--prefix-length", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default="benchmark_runs/calibration")
    args = parser.parse_args()

    import ei_keras
    from ei_keras.training import train

    test = ei_keras.load_prefix(args.test, args.prefix_length)
    results_path = Path(args.out) / "results.jsonl"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for label in args.settings:
        run = Path(args.out) / label.replace(" ", "_").replace(",", "").replace("=", "")
        train(args.train, args.prefix_length, "improved", run, epochs=args.epochs,
              max_samples=args.max_samples, verbose=0, **SETTINGS[label])
        record = {"setting": label, **SETTINGS[label], "targets": score(run / "best.keras", test)}
        with open(results_path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    rows = [json.loads(line) for line in open(results_path, encoding="utf-8")]
    print(f"\nCoverage of central intervals on {args.test} (honest: 0.50 / 0.90 / 0.95, z std 1)")
    print(f"{'setting':<24}{'target':<10}{'cov50':>7}{'cov90':>7}{'cov95':>7}{'z std':>7}"
          f"{'NLL':>8}{'RMSE':>7}{'mean σ':>8}{'σ at floor':>11}")
    for r in rows:
        for name, t in r["targets"].items():
            print(f"{r['setting']:<24}{name:<10}{t['cover50']:>7.3f}{t['cover90']:>7.3f}"
                  f"{t['cover95']:>7.3f}{t['z_std']:>7.2f}{t['nll']:>8.3f}{t['rmse']:>7.3f}"
                  f"{t['mean_sigma']:>8.3f}{t['at_floor']:>11.2f}")


if __name__ == "__main__":
    main()
