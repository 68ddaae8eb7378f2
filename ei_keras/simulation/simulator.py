"""Placeholder replaced within the hour by the real simulator (see issue 2)."""

CONDITION_NAMES = (
    "substrate_mM", "grams_urease_powder", "volume_L", "temperature_C",
    "initial_pH", "activity", "k_d",
)


def simulate(conditions, t, *, totals=False, options=None):
    raise NotImplementedError("simulator lands shortly")
