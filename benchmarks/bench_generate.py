"""Wall time of ``ei_keras.generate_dataset``: the issue-2 set-up and any-format data.

    python benchmarks/bench_generate.py [--n-samples 50000] [--workers N] [--out FILE.h5]
                                        [--case fixed|any-format|both]

``fixed`` (the issue-2 target set-up): the default config with ``use_adaptive_n_points=True``,
prefixes of 10, 30, 60 and 300 s with 100, 100, 200 and 1000 readings, plus the 401-point
trajectory to 2000 s. ``any-format`` (issue 8): no fixed prefixes; the ``any_format`` group
with its default ranges (L log-uniform in [2, 600] s, dt in [0.1, 10] s, 3–1201 readings),
plus the same 401-point trajectory. ``both`` (default) runs fixed, then any-format, and
prints the any-format time as a ratio of the fixed one measured in the same run.

Prints the time of the import (Python start-up of the package, not counted) and of each
generation, samples per second, the file size, and the CPU time of this process and its
workers (on a shared machine, wall time / CPU time shows how much other load slowed the
run). With ``--n-samples`` below 50 000 the 50 000-sample time is extrapolated from the
measured rate and labelled as such. Target: < 60 s for each case.
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
CASES = {
    "fixed": {"use_adaptive_n_points": True},
    "any-format": {"prefix_lengths": [], "any_format": {"enabled": True}},
}


def cpu_seconds():
    """User + system CPU time of this process and its finished workers."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def run_case(name, args, scratch):
    """Generate one case; print its line and return the (possibly extrapolated) 50 000 time."""
    config = {"n_samples": args.n_samples, **CASES[name]}
    out = args.out.with_name(f"{args.out.stem}_{name}{args.out.suffix}") if args.out else (
        Path(scratch) / f"{name}.h5")
    begin, cpu_begin = time.perf_counter(), cpu_seconds()
    generate_dataset(config, out, workers=args.workers, progress=False)
    seconds, cpu = time.perf_counter() - begin, cpu_seconds() - cpu_begin
    size_mb = out.stat().st_size / 1e6
    if not args.out:
        out.unlink()
    rate = args.n_samples / seconds
    print(f"{name}: generated {args.n_samples} samples in {seconds:.1f} s "
          f"({rate:.0f} samples/s, {size_mb:.0f} MB, workers={args.workers or 'all cores'}, "
          f"CPU {cpu:.1f} s)")
    if args.n_samples == TARGET_SAMPLES:
        print(f"{name}: 50 000 samples: {seconds:.1f} s measured (target < 60 s)")
        return seconds
    print(f"{name}: 50 000 samples: {TARGET_SAMPLES / rate:.1f} s EXTRAPOLATED from "
          f"{args.n_samples} (target < 60 s)")
    return TARGET_SAMPLES / rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=TARGET_SAMPLES)
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path,
                        help="keep the files here, the case name added (default: deleted)")
    parser.add_argument("--case", choices=[*CASES, "both"], default="both")
    args = parser.parse_args()
    print(f"import ei_keras: {IMPORT_SECONDS:.1f} s (not counted)")
    names = list(CASES) if args.case == "both" else [args.case]
    with tempfile.TemporaryDirectory() as scratch:
        seconds = {name: run_case(name, args, scratch) for name in names}
    if len(seconds) == 2:
        print(f"any-format / fixed: {seconds['any-format'] / seconds['fixed']:.2f}x "
              "(same run)")


if __name__ == "__main__":
    main()
