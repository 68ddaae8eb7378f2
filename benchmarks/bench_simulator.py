"""Per-trajectory time of ``ei_keras.simulate`` against per-case ``solve_ivp``, same run.

    python benchmarks/bench_simulator.py [--cases 2000] [--times 2000] [--reference-cases 20]

The reference (tests/reference_solver.py: DOP853 at rtol 1e-11 with a bracketed pH root in
every right-hand side) is timed on the first ``--reference-cases`` cases of the same prior
draws — running it on all 2000 would take about ten minutes — and both are reported per
trajectory, with the speed-up ratio and the largest pH difference on those cases.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ei_keras import simulate  # noqa: E402
from ei_keras.simulation.priors import sample_priors, simulator_conditions  # noqa: E402
from reference_solver import reference_pH  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--times", type=int, default=2000)
    parser.add_argument("--reference-cases", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    conditions = simulator_conditions(sample_priors(
        np.random.default_rng(2026), args.cases, use_probe_lag=False, use_offset=False))
    t = np.linspace(0.0, 2000.0, args.times)
    simulate({k: v[:8] for k, v in conditions.items()}, t)  # warm-up
    best = min(_timed(lambda: simulate(conditions, t)) for _ in range(args.repeats))
    ours = best / args.cases

    pH = simulate(conditions, t)
    started = time.perf_counter()
    worst = 0.0
    for i in range(args.reference_cases):
        case = {k: float(v[i]) for k, v in conditions.items()}
        worst = max(worst, float(np.abs(reference_pH(**case, t=t) - pH[i]).max()))
    reference = (time.perf_counter() - started) / args.reference_cases

    print(f"simulate:  {args.cases} cases x {args.times} times in {best:.3f} s "
          f"-> {ours * 1e6:.0f} us per trajectory")
    print(f"solve_ivp: {reference * 1e3:.1f} ms per trajectory "
          f"(mean of {args.reference_cases} cases)")
    print(f"speed-up:  {reference / ours:.0f}x   max |pH - reference| = {worst:.1e}")


def _timed(work):
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
