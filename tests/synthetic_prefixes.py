"""Tiny, seeded stand-ins for ``ei_keras.data.PrefixData`` (no simulator, no file)."""

import dataclasses

import numpy as np

KNOWN_NAMES = ("substrate_mM", "grams_urease_powder", "volume_L", "temperature_C", "initial_pH")


@dataclasses.dataclass(frozen=True)
class SyntheticPrefixes:
    t: np.ndarray
    pH: np.ndarray
    known: np.ndarray
    known_names: tuple
    targets: np.ndarray
    target_names: tuple
    config: dict


def make_prefixes(n=64, steps=20, prefix_length=30.0, seed=0):
    """Readings whose slope grows with log10(activity) and bends with k_d: learnable."""
    rng = np.random.default_rng(seed)
    known = np.column_stack([
        rng.uniform(1, 100, n), rng.uniform(0.01, 0.5, n), rng.uniform(0.1, 1.0, n),
        rng.uniform(20, 40, n), rng.uniform(6.5, 7.5, n)])
    activity = 10 ** rng.uniform(-3, 0, n)
    k_d = rng.uniform(0, 5e-3, n)
    t = np.tile(np.linspace(0.0, prefix_length, steps), (n, 1))
    rate = 0.02 * (np.log10(activity)[:, None] + 3.5)
    pH = known[:, 4:5] + rate * t * np.exp(-k_d[:, None] * t * 20) + rng.normal(0, 0.01, t.shape)
    return SyntheticPrefixes(
        t=t.astype(np.float32), pH=pH.astype(np.float32), known=known.astype(np.float32),
        known_names=KNOWN_NAMES, targets=np.column_stack([activity, k_d]),
        target_names=("activity", "k_d"), config={"synthetic": True, "seed": seed})
