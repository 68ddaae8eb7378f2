"""Compact default vs the recipe's full-size TCN: validation NLL and training speed.

Both train with the same recipe (preset ``improved``; only the architecture differs) on
the same samples, one thread, and the script prints best validation NLL, the epoch it
came at, wall time and training throughput. Run variants in separate invocations to use
two cores, then print the table of all results with ``--table``::

    python benchmarks/compare_architectures.py --data train.h5 --variant compact
    python benchmarks/compare_architectures.py --data train.h5 --variant recipe
    python benchmarks/compare_architectures.py --table
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

VARIANTS = {
    "compact": {"architecture": "compact"},
    "compact-nopool": {"architecture": "compact", "model": {"input_pool": 1}},
    "recipe": {"architecture": "recipe"},
}


def run_variant(args):
    from ei_keras.training import train

    out = Path(args.out) / f"{args.variant}-{args.prefix_length:g}s"
    start = time.perf_counter()
    result = train(args.data, args.prefix_length, "improved", out, epochs=args.epochs,
                   max_samples=args.max_samples, verbose=2, **VARIANTS[args.variant])
    wall = time.perf_counter() - start
    config = json.loads((out / "config.json").read_text())
    n_train = config["data"]["n_train"]
    best = min(result.history, key=lambda r: r["val_loss"])
    record = {"variant": args.variant, "prefix_length": args.prefix_length,
              "n_points": config["data"]["n_points"], "n_train": n_train,
              "epochs": len(result.history), "best_val_nll": best["val_loss"],
              "best_epoch": best["epoch"], "final_val_nll": result.history[-1]["val_loss"],
              "wall_s": wall, "samples_per_s": n_train * len(result.history) / wall,
              "model": config["model"]}
    with open(Path(args.out) / "results.jsonl", "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")
    print(json.dumps(record))


def print_table(out):
    rows = [json.loads(line) for line in open(Path(out) / "results.jsonl", encoding="utf-8")]
    print(f"{'variant':<16}{'L [s]':>7}{'points':>8}{'epochs':>8}{'best val NLL':>14}"
          f"{'at epoch':>10}{'wall [s]':>10}{'samples/s':>11}")
    for r in rows:
        print(f"{r['variant']:<16}{r['prefix_length']:>7g}{r['n_points']:>8}{r['epochs']:>8}"
              f"{r['best_val_nll']:>14.4f}{r['best_epoch']:>10}{r['wall_s']:>10.0f}"
              f"{r['samples_per_s']:>11.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="HDF5 dataset from ei-keras generate")
    parser.add_argument("--prefix-length", type=float, default=30.0)
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--out", default="benchmark_runs/architectures")
    parser.add_argument("--table", action="store_true", help="print the results table")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.table:
        print_table(args.out)
    else:
        if not (args.data and args.variant):
            parser.error("--data and --variant are needed to train")
        run_variant(args)


if __name__ == "__main__":
    main()
