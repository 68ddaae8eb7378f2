"""A fit's batched simulation: the compiled readings kernel against the numpy simulator.

    python benchmarks/bench_readings_kernel.py [--repeats 300]

Every Gauss–Newton try of ``infer``'s local fit simulates the readings of 5 parameter sets
(a point and its 4 forward-difference neighbours, two initial pHs between them) at the
trace's times: ``ReadingsModel`` does it in the compiled kernel
(:mod:`ei_keras.simulation.readings_kernel`), the numpy simulator was the way before. Both
are timed here on the same calls, per trace length, with the largest difference of their
readings; then batches of 5–256 sets with an offset each (a table each), which is where
the kernel hands over to numpy (``KERNEL_CASES``).
"""

import argparse
import time

import numpy as np

from ei_keras.inference.least_squares import ReadingsModel
from ei_keras.simulation.readings_kernel import KERNEL_CASES

KNOWN = {"substrate_mM": 50.0, "grams_urease_powder": 0.1, "volume_L": 0.1,
         "temperature_C": 25.0, "initial_pH": 7.0}
FIT_TRY = {"activity": np.array([0.05, 0.0505, 0.05, 0.05, 0.05]),
           "k_d": np.array([1e-3, 1e-3, 1.01e-3, 1e-3, 1e-3]),
           "tau_probe": np.array([5.0, 5.0, 5.0, 5.05, 5.0]),
           "pH_offset": np.array([0.02, 0.02, 0.02, 0.02, 0.0201])}


def numpy_readings(model, latent):
    """What ``model(latent)`` gave before the kernel: the numpy measurement model."""
    offset = latent["pH_offset"]
    b = len(offset)
    conditions = {name: np.full(b, value) for name, value in model.known.items()}
    conditions.update(initial_pH=model.known["initial_pH"] - offset,
                      activity=latent["activity"], k_d=latent["k_d"])
    return model.times.response(conditions, latent["tau_probe"])[1] + offset[:, None]


def per_call_ms(work, repeats):
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - started) / repeats * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    print("one Gauss-Newton try (5 parameter sets):")
    for span, readings in [(10, 34), (30, 100), (60, 61), (120, 1201), (300, 301), (600, 601)]:
        model = ReadingsModel(np.linspace(0.0, span, readings), KNOWN)
        kernel = per_call_ms(lambda: model(FIT_TRY), args.repeats)
        numpy = per_call_ms(lambda: numpy_readings(model, FIT_TRY), args.repeats)
        worst = np.max(np.abs(model(FIT_TRY) - numpy_readings(model, FIT_TRY)))
        print(f"  {span:4d} s, {readings:5d} readings: kernel {kernel:.3f} ms, numpy "
              f"{numpy:.3f} ms -> {numpy / kernel:.1f}x   max |difference| {worst:.1e} pH")
    print(f"batches with an offset each (kernel up to KERNEL_CASES = {KERNEL_CASES}), 600 s:")
    rng = np.random.default_rng(0)
    model = ReadingsModel(np.linspace(0.0, 600.0, 601), KNOWN)
    for b in (5, 16, 32, 64, 256):
        latent = {"activity": 10 ** rng.uniform(-2, -1, b), "k_d": rng.uniform(0, 5e-3, b),
                  "tau_probe": rng.uniform(0, 30, b), "pH_offset": rng.uniform(-0.1, 0.1, b)}
        answered = per_call_ms(lambda: model(latent), max(args.repeats // b, 5))
        numpy = per_call_ms(lambda: numpy_readings(model, latent), max(args.repeats // b, 5))
        print(f"  {b:3d} sets: ReadingsModel {answered:.2f} ms, numpy {numpy:.2f} ms "
              f"-> {numpy / answered:.1f}x")


if __name__ == "__main__":
    main()
