"""When a live answer has settled: :class:`SettleRule` (NumPy only, so ``ei-keras watch
--help`` shows its defaults without loading keras)."""

import math
from dataclasses import dataclass

import numpy as np

from ei_keras.errors import EiKerasError


@dataclass(frozen=True)
class SettleRule:
    """When has a live answer settled?

    The answer is **settled** at time ``t`` when, over the last ``window_s`` seconds of
    the run (every update since ``t - window_s``, and the last one before it), neither end
    of its 90 % band moved by more than ``tolerance`` (a fraction) of that end's current
    value. The band is that of the time to the threshold (5–95 % of the forecast draws; "not
    reached by ``t_max``" counts as ``t_max``, so a band end that stays "never" does not
    move) when at least ``min_p_reached`` of the draws reach the threshold, else the 90 %
    interval of the activity. Time ends below ``floor`` seconds (the forecast's time step)
    are compared with ``floor``, so a threshold reached within seconds does not demand
    sub-second agreement. The window must be covered: no run settles before ``window_s``
    seconds of updates.

    Args:
        window_s: seconds of the run over which the band must hold still.
        tolerance: largest relative move of a band end allowed over the window.
        min_p_reached: fraction of draws reaching the threshold from which the time to
            threshold is the settled quantity.
    """

    window_s: float = 60.0
    tolerance: float = 0.05
    min_p_reached: float = 0.5

    def __post_init__(self):
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise EiKerasError(f"settle window_s must be a positive number of seconds; got "
                               f"{self.window_s!r}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise EiKerasError(f"settle tolerance must be a positive fraction; got "
                               f"{self.tolerance!r}")
        if not 0.0 <= self.min_p_reached <= 1.0:
            raise EiKerasError(f"settle min_p_reached must lie in 0–1; got "
                               f"{self.min_p_reached!r}")

    def quantity(self, p_reached) -> str:
        """``"time_to_threshold"`` or ``"activity"``: the band this rule follows."""
        return "time_to_threshold" if p_reached >= self.min_p_reached else "activity"

    def change(self, times, lo, hi, floor=0.0) -> float:
        """The largest relative move of either band end over the window (a fraction of
        the end's latest value, at least ``floor``); ``inf`` while the updates do not yet
        span the window.

        ``times``, ``lo``, ``hi``: one value per update, oldest first, the last is now.
        """
        times = np.asarray(times, dtype=float)
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        if times.size == 0:
            return math.inf
        start = times[-1] - self.window_s
        if times[0] > start + 1e-9:
            return math.inf
        first = max(int(np.searchsorted(times, start + 1e-9, side="right")) - 1, 0)
        moves = []
        for ends in (lo, hi):
            scale = max(abs(float(ends[-1])), float(floor))
            if not (scale > 0 and np.all(np.isfinite(ends[first:]))):
                return math.inf
            moves.append(np.abs(ends[first:] - ends[-1]).max() / scale)
        return float(max(moves))

    def settled(self, times, lo, hi, floor=0.0) -> bool:
        """Whether :meth:`change` is below ``tolerance``."""
        return self.change(times, lo, hi, floor) < self.tolerance

    def assess(self, history, *, t_max, time_floor):
        """``(quantity, change)`` at the last entry of a :attr:`LiveInference.history`
        (a list of its dicts; a draw never reaching the threshold counts as ``t_max``;
        ``time_floor`` is the forecast's time step)."""
        quantity = self.quantity(history[-1]["time_to_threshold_p_reached"])
        start = history[-1]["elapsed_s"] - self.window_s
        first = len(history) - 1
        while first > 0 and history[first]["elapsed_s"] > start + 1e-9:
            first -= 1
        window = history[first:]
        times = [entry["elapsed_s"] for entry in window]
        if quantity == "time_to_threshold":
            lo = [min(entry["time_to_threshold_lo"], t_max) for entry in window]
            hi = [min(entry["time_to_threshold_hi"], t_max) for entry in window]
            return quantity, self.change(times, lo, hi, time_floor)
        lo = [entry["activity_lo90"] for entry in window]
        hi = [entry["activity_hi90"] for entry in window]
        return quantity, self.change(times, lo, hi)
