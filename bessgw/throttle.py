"""At most one log line per interval for events a flood can cause; each line counts those since the last.

Why: a client's, a peer's or a device's misbehaviour (a malformed request or datagram, a refused session, a
connection closed to make room, an error frame) is counted and summarised, never logged once per event:
a flood would otherwise fill the journal and hide the gateway's own faults. Every such summary keeps time
the same way, here. The first event of a quiet period is logged at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    """Says when a summary line is due (at most one per ``interval_s``) and how many events it reports."""

    __slots__ = ("_clock", "_logged_at", "interval_s", "total", "unlogged")

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._logged_at: float | None = None  # never logged yet: the first line is due at once
        self.total = 0  #: events counted since start (for metrics)
        self.unlogged = 0  #: events counted since the last line

    def due(self) -> bool:
        """Whether a line may be written now; if so, its time is taken (the caller writes it)."""
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self.interval_s:
            return False
        self._logged_at = now
        return True

    def count(self, events: int = 1) -> int:
        """Count ``events``; the number a line written now reports (those since the last line), or 0 when
        no line is due (or nothing is left to report)."""
        self.total += events
        self.unlogged += events
        if not self.unlogged or not self.due():
            return 0
        reported, self.unlogged = self.unlogged, 0
        return reported
