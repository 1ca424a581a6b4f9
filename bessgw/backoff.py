"""Jittered exponential backoff, shared by unit supervisors and transports."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``min_s, 2*min_s, 4*min_s ...`` capped at ``max_s``, each with "full jitter" in [d/2, d].

    Jitter spreads reconnect storms: after a switch reboot, 200 units must not all knock at once.
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until :meth:`reset`."""
        ceiling = min(self.max_s, self.min_s * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Call after a success."""
        self.attempt = 0
