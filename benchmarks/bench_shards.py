"""Sharded generation: throughput on 1 vs 2 workers (local pool and Dask) and the cost of
shards against today's single file.

    python benchmarks/bench_shards.py [--n-samples 8000] [--shards 8] [--workers 1 2]
                                      [--executors single local dask]
                                      [--dask-malloc ei_keras|dask]

The config is ``bench_generate.py``'s fixed case (adaptive readings, prefixes of 10, 30, 60
and 300 s, the 401-point trajectory). For every executor and worker count it generates
the same dataset into a fresh place and prints the wall time, samples per second, CPU
time of this process and its pool workers (Dask worker processes are not counted: their
CPU is not ours to read) and bytes on disk. ``single`` is ``generate_dataset`` into one
file; ``local`` and ``dask`` write ``--shards`` shard files, the manifest and the virtual
``dataset.h5``. The Dask LocalCluster (processes, one thread each) is started, and
ei_keras imported on its workers (keras and torch: seconds, once per worker), before the
clock; both are printed apart. At the end: the speed-up of 2 workers over 1, the
overhead of shards over the single file at the same workers, the time of
``load_prefix(…, 300)`` from each (the sharded one checks every shard's sha256 first), and
whether all runs wrote identical arrays.
"""

import argparse
import importlib
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ei_keras.data import generate_dataset, load_prefix
from ei_keras.data import shards as shards_module
from ei_keras.executors import WORKER_MALLOC
from ei_keras.data.shards import generate_sharded

CONFIG = {"use_adaptive_n_points": True}


def cpu_seconds():
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def disk_bytes(path):
    path = Path(path)
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


def run(executor, workers, args, scratch):
    """Generate once; returns (seconds, cpu seconds, dataset path, bytes on disk)."""
    config = {**CONFIG, "n_samples": args.n_samples, "seed": 1}
    cluster = None
    if executor == "dask":
        import dask
        import distributed

        # The settings generate_sharded gives the LocalCluster it starts; with
        # --dask-malloc dask, Dask's defaults (a cluster started without them).
        malloc = WORKER_MALLOC if args.dask_malloc == "ei_keras" else {}

        begin = time.perf_counter()
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": value
                              for name, value in malloc.items()}):
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                               processes=True, dashboard_address=None,
                                               silence_logs=40)
        started = time.perf_counter()
        with distributed.Client(cluster, set_as_default=False) as client:
            client.run(importlib.import_module, "ei_keras.data.shards")
        print(f"  dask LocalCluster of {workers} worker(s) started in {started - begin:.1f} s, "
              f"ei_keras imported on its workers in {time.perf_counter() - started:.1f} s "
              "(neither counted)")
    begin, cpu_begin = time.perf_counter(), cpu_seconds()
    try:
        if executor == "single":
            path = generate_dataset(config, Path(scratch) / f"single{workers}.h5",
                                    workers=workers, progress=False)
            where = path
        else:
            where = Path(scratch) / f"{executor}{workers}"
            path = generate_sharded(config, where, shards=args.shards, executor=executor,
                                    scheduler=cluster, workers=workers, progress=False)
        seconds, cpu = time.perf_counter() - begin, cpu_seconds() - cpu_begin
    finally:
        if cluster is not None:
            cluster.close()
    return seconds, cpu, path, disk_bytes(where)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=8000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executors", nargs="+", default=["single", "local", "dask"],
                        choices=["single", "local", "dask"])
    parser.add_argument("--dask-malloc", choices=["ei_keras", "dask"], default="ei_keras",
                        help="worker malloc settings: those generate_sharded's own "
                        "LocalCluster uses (default) or Dask's defaults")
    args = parser.parse_args()
    print(f"{args.n_samples} samples, {args.shards} shards, fixed case of "
          "bench_generate.py")
    results, reference, identical = {}, None, True
    with tempfile.TemporaryDirectory() as scratch:
        for executor in args.executors:
            for workers in args.workers:
                seconds, cpu, path, size = run(executor, workers, args, scratch)
                results[executor, workers] = (seconds, path)
                print(f"{executor:>6} workers={workers}: {seconds:6.1f} s  "
                      f"{args.n_samples / seconds:6.0f} samples/s  CPU {cpu:6.1f} s  "
                      f"{size / 1e6:6.1f} MB")
                arrays = load_prefix(path, 300).pH
                reference = arrays if reference is None else reference
                if not np.array_equal(arrays, reference):
                    identical = False
                    print(f"  DIFFERENT arrays from {executor} workers={workers}")
        print("2 workers over 1 (speed-up):")
        for executor in args.executors:
            if (executor, 1) in results and (executor, 2) in results:
                speedup = results[executor, 1][0] / results[executor, 2][0]
                print(f"  {executor:>6}: {speedup:.2f}x")
        print("shards over the single file (time ratio, same workers):")
        for executor in ("local", "dask"):
            for workers in args.workers:
                if (executor, workers) in results and ("single", workers) in results:
                    ratio = results[executor, workers][0] / results["single", workers][0]
                    print(f"  {executor:>6} workers={workers}: {ratio:.2f}x")
        for executor, workers in (("single", args.workers[0]), ("local", args.workers[0])):
            if (executor, workers) in results:
                path = results[executor, workers][1]
                shards_module._HASHED.clear()  # hash as a fresh process would
                begin = time.perf_counter()
                load_prefix(path, 300)
                what = "every shard's sha256 checked" if executor == "local" else "one file"
                print(f"load_prefix(300) from {executor}: {time.perf_counter() - begin:.2f} s "
                      f"({what})")
        print("all runs wrote identical arrays (prefix_300s/pH)" if identical
              else "ARRAYS DIFFER between runs")


if __name__ == "__main__":
    main()
