"""Runs in parallel: the wall time of a small compare study, runs one after another vs
concurrently.

    python benchmarks/bench_compare.py [--n-samples 2000] [--epochs 5] [--workers 1 2]
                                       [--executor local|dask]

A study of 4 runs (baseline and improved at prefix lengths 10 and 30 s, no ablations)
on a dataset generated first (not timed), each run trained into a fresh directory by
``compare`` with ``--workers N``: 1 is one run after another (each in its own process,
as every run is), 2 is two at a time. Also timed: the 4 runs one after another in this
process (plain ``train`` calls, no process start-up). Prints every wall time, the ratio
of each to ``--workers 1`` and whether every study ended with the same runs and statuses.
"""

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import ei_keras
from ei_keras.evaluation.compare import compare
from ei_keras.training import train

STUDY = {"prefix_lengths": (10, 30), "presets": ("baseline", "improved"),
         "ablation_prefix": None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    args = parser.parse_args()
    settings = {"epochs": args.epochs}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = [ei_keras.generate_dataset({"n_samples": args.n_samples, "seed": seed,
                                           "prefix_lengths": [10, 30]},
                                          scratch / f"{name}.h5", progress=False)
                for seed, name in ((1, "train"), (2, "test"))]
        print(f"4 runs (baseline, improved x 10 s, 30 s), {args.n_samples} samples, "
              f"{args.epochs} epochs, executor {args.executor}")
        begin = time.perf_counter()
        for length in STUDY["prefix_lengths"]:
            for preset in STUDY["presets"]:
                train(data[0], length, preset, scratch / f"inline-{preset}-{length}",
                      verbose=0, **settings)
        inline = time.perf_counter() - begin
        print(f"  in this process, one after another: {inline:6.1f} s")
        seconds, outcomes = {}, {}
        for workers in args.workers:
            begin = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                results = compare(data[0], scratch / f"workers{workers}", test_data=data[1],
                                  workers=workers, executor=args.executor, **STUDY,
                                  **settings)
            seconds[workers] = time.perf_counter() - begin
            outcomes[workers] = [(r["name"], r["status"]) for r in results]
            print(f"  compare --workers {workers}: {seconds[workers]:6.1f} s")
        reference = seconds.get(1)
        if reference:
            print("time over --workers 1:")
            print(f"  in this process: {inline / reference:.2f}x")
            for workers, value in seconds.items():
                print(f"  --workers {workers}: {value / reference:.2f}x "
                      f"(speed-up {reference / value:.2f}x)")
        same = len({tuple(runs) for runs in outcomes.values()}) == 1
        print("every study: the same runs and statuses" if same
              else f"STUDIES DIFFER: {outcomes}")


if __name__ == "__main__":
    main()
