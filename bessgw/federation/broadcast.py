"""The dissemination queue: updates piggybacked on outgoing datagrams a bounded number of times.

As in SWIM/memberlist, each update is sent ``retransmit_mult * ceil(log10(members + 1))`` times, least
sent first, so news spreads epidemically in O(log n) rounds while old news stops costing bytes. A newer
update about the same subject (a member, or an owner's key) replaces the queued older one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any


class BroadcastQueue:
    """Pending updates keyed by subject; :meth:`take` fills a byte budget, least-transmitted first."""

    def __init__(self, retransmit_mult: int, max_items: int = 10_000) -> None:
        self.retransmit_mult = retransmit_mult
        self.max_items = max_items
        self._items: dict[Hashable, list[Any]] = {}  # subject -> [transmits, order, item, size]
        self._order = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, subject: Hashable, item: Any, size: int) -> None:
        """Queue ``item`` (replacing anything queued about ``subject``); oldest dropped beyond ``max_items``."""
        self._order += 1
        self._items[subject] = [0, self._order, item, size]
        if len(self._items) > self.max_items:
            oldest = min(self._items, key=lambda s: self._items[s][1])
            del self._items[oldest]

    def limit(self, members: int) -> int:
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))

    def take(self, budget_bytes: int, members: int, accept: Callable[[Any], bool] = lambda item: True) -> list[Any]:
        """Items fitting ``budget_bytes``, least sent (then newest) first; counts the transmission."""
        if not self._items or budget_bytes <= 0:
            return []
        limit = self.limit(members)
        out = []
        for subject, slot in sorted(self._items.items(), key=lambda kv: (kv[1][0], -kv[1][1])):
            if slot[3] > budget_bytes or not accept(slot[2]):
                continue
            budget_bytes -= slot[3]
            out.append(slot[2])
            slot[0] += 1
            if slot[0] >= limit:
                del self._items[subject]
            if budget_bytes < 16:
                break
        return out
