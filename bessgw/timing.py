"""A fixed-bucket duration histogram: what hot paths record so that metrics can read it at scrape time.

Plain counters, no lock, no library: an observation is one bisect and two additions in the event loop
(or under the caller's own lock), and the exporter turns the buckets into a Prometheus histogram only
when it is scraped. Lower layers (transports, the journal, control) use it without knowing about metrics.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

#: upper bounds in seconds: 0.5 ms .. 10 s, covering a fsync, a Modbus request and a slow OPC UA call
DEFAULT_BUCKETS_S: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1.0, 2.5, 5.0, 10.0)


class DurationHistogram:
    """Counts of durations per bucket (``le`` upper bounds, non-cumulative) plus their count and sum."""

    __slots__ = ("bounds_s", "count", "counts", "sum_s")

    def __init__(self, bounds_s: tuple[float, ...] = DEFAULT_BUCKETS_S) -> None:
        self.bounds_s = bounds_s
        self.counts = [0] * (len(bounds_s) + 1)  # the last one: above the largest bound (+Inf)
        self.count = 0
        self.sum_s = 0.0

    def observe(self, duration_s: float) -> None:
        self.counts[bisect_left(self.bounds_s, duration_s)] += 1
        self.count += 1
        self.sum_s += duration_s

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs in Prometheus order, ending with ``+Inf``."""
        pairs, running = [], 0
        for bound, count in zip((*self.bounds_s, float("inf")), self.counts, strict=True):
            running += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return pairs

    @classmethod
    def merged(cls, histograms: Iterable[DurationHistogram],
               bounds_s: tuple[float, ...] = DEFAULT_BUCKETS_S) -> DurationHistogram:
        """One histogram of several with the same bounds (a transport's over its endpoints); others are skipped."""
        total = cls(bounds_s)
        for hist in histograms:
            if hist.bounds_s != bounds_s:
                continue
            total.counts = [a + b for a, b in zip(total.counts, hist.counts, strict=True)]
            total.count += hist.count
            total.sum_s += hist.sum_s
        return total
