"""Streaming training against loading everything: throughput and peak memory at 1x and 10x.

    python benchmarks/bench_streaming.py [--n-samples 20000] [--scale 10] [--epochs 2]
                                         [--shards-per-1x 1] [--workers 2]

Generates a fixed-prefix dataset (one 30 s prefix of 100 readings, an 11-point trajectory)
of ``--n-samples`` (1x) and ``--scale`` times as many (10x), each sharded into
``--shards-per-1x`` shard files per 1x, and trains the ``improved`` preset on each, in
memory and streamed (``train(..., stream=True)``), every case in a fresh process.
Printed per case: samples per second of the epochs after the first (the time between the
end of epoch 1 and of the last), the wall time of ``train()`` (loading, normalisation,
model, every epoch), and the peak resident memory of the process (``ru_maxrss``); then
each against the in-memory 1x run of the same invocation.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = {"seed": 1, "prefix_lengths": [30], "prefix_n_points": 100, "n_times": 11}


def case(data, stream, epochs, out):
    """One training run in this process; prints its measurements as a JSON line."""
    from ei_keras.training import train

    start = time.perf_counter()
    result = train(data, 30, "improved", out, stream=stream, epochs=epochs, verbose=0)
    wall = time.perf_counter() - start
    config = json.loads((Path(out) / "config.json").read_text())
    times = [row["time"] for row in result.history]
    n_train = config["data"]["n_train"]
    print(json.dumps({
        "samples_per_s": n_train * (len(times) - 1) / (times[-1] - times[0]),
        "wall_s": wall, "n_train": n_train,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "val_loss": result.history[-1]["val_loss"]}))


def generate(n_samples, shards, workers, folder):
    from ei_keras.data.shards import generate_sharded

    start = time.perf_counter()
    path = generate_sharded({**CONFIG, "n_samples": n_samples}, folder, shards=shards,
                            workers=workers, progress=False)
    return path, time.perf_counter() - start


def measure(data, stream, epochs, out):
    done = subprocess.run([sys.executable, __file__, "--case", str(data), str(int(stream)),
                           str(epochs), str(out)], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20000, help="samples of the 1x set")
    parser.add_argument("--scale", type=int, default=10, help="size of the large set in 1x")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (>= 2)")
    parser.add_argument("--shards-per-1x", type=int, default=1, help="shard files per 1x")
    parser.add_argument("--workers", type=int, default=2, help="generation processes")
    parser.add_argument("--case", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        data, stream, epochs, out = args.case
        return case(data, stream == "1", int(epochs), out)

    with tempfile.TemporaryDirectory(prefix="bench_streaming-") as scratch:
        scratch = Path(scratch)
        results = {}
        for scale in (1, args.scale):
            n = args.n_samples * scale
            data, seconds = generate(n, args.shards_per_1x * scale, args.workers,
                                     scratch / f"data{scale}x")
            size = sum(p.stat().st_size for p in data.parent.iterdir()) / 1e6
            print(f"{scale}x: {n} samples in {args.shards_per_1x * scale} shards, {size:.0f} MB, "
                  f"generated in {seconds:.1f} s", flush=True)
            for stream in (False, True):
                label = f"{scale}x {'streamed' if stream else 'in memory'}"
                results[label] = measure(data, stream, args.epochs, scratch / label.replace(" ", "-"))
                print(f"  {label}: {json.dumps(results[label])}", flush=True)
        base = results["1x in memory"]
        print(f"\n{'case':<18} {'samples/s':>10} {'vs base':>8} {'train() s':>10} "
              f"{'peak RSS MB':>12} {'vs base':>8}")
        for label, row in results.items():
            print(f"{label:<18} {row['samples_per_s']:>10.0f} "
                  f"{row['samples_per_s'] / base['samples_per_s']:>7.2f}x {row['wall_s']:>10.1f} "
                  f"{row['peak_rss_mb']:>12.0f} {row['peak_rss_mb'] / base['peak_rss_mb']:>7.2f}x")


if __name__ == "__main__":
    main()
