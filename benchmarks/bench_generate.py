"""Wall time of ``ei_keras.generate_dataset`` for the issue-2 target set-up.

    python benchmarks/bench_generate.py [--n-samples 50000] [--workers N] [--out FILE.h5]

Default config with ``use_adaptive_n_points=True``: prefixes of 10, 30, 60 and 300 s with
100, 100, 200 and 1000 readings, plus the 401-point trajectory to 2000 s. Prints the time
of the import (Python start-up of the package, not counted) and of the generation itself,
samples per second, the file size, and the CPU time of this process and its workers
(on a shared machine, wall time / CPU time shows how much other load slowed the run). With ``--n-samples`` below 50 000 the 50 000-sample
time is extrapolated from the measured rate and labelled as such. Target: < 60 s.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

started = time.perf_counter()
from ei_keras import generate_dataset  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - started
TARGET_SAMPLES = 50_000


def cpu_seconds():
    """User + system CPU time of this process and its finished workers."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=TARGET_SAMPLES)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path, help="keep the file here (default: deleted)")
    args = parser.parse_args()
    config = {"n_samples": args.n_samples, "use_adaptive_n_points": True}
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "bench.h5"
        begin, cpu_begin = time.perf_counter(), cpu_seconds()
        generate_dataset(config, out, workers=args.workers, progress=False)
        seconds, cpu = time.perf_counter() - begin, cpu_seconds() - cpu_begin
        size_mb = out.stat().st_size / 1e6
    rate = args.n_samples / seconds
    print(f"import ei_keras: {IMPORT_SECONDS:.1f} s (not counted)")
    print(f"generated {args.n_samples} samples in {seconds:.1f} s "
          f"({rate:.0f} samples/s, {size_mb:.0f} MB, workers={args.workers or 'all cores'}, "
          f"CPU {cpu:.1f} s)")
    if args.n_samples == TARGET_SAMPLES:
        print(f"50 000 samples: {seconds:.1f} s measured (target < 60 s)")
    else:
        print(f"50 000 samples: {TARGET_SAMPLES / rate:.1f} s EXTRAPOLATED from "
              f"{args.n_samples} (target < 60 s)")


if __name__ == "__main__":
    main()
