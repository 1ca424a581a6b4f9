"""The dissemination queue: updates piggybacked on outgoing datagrams a bounded number of times.

As in SWIM/memberlist, each update is sent ``retransmit_mult * ceil(log10(members + 1))`` times, least
sent first, so news spreads epidemically in O(log n) rounds while old news stops costing bytes.

Each queued update has a *subject*: a newer update about the same subject replaces the queued older one
(a member's newer incarnation, an owner's newer key version). Subjects may belong to a *group* that a
decisive update clears at once: Lifeguard's suspicion confirmations about one member each get their own
subject (``(member, confirmer)``), so a confirmation from B never replaces A's before A's was sent — the
timers elsewhere only shrink if every independent confirmation arrives — while a refutation or a death
about that member drops all of them, since they are moot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Slot:
    transmits: int
    order: int
    item: Any
    size: int
    group: Hashable | None


class BroadcastQueue:
    """Pending updates keyed by subject; :meth:`take` fills a byte budget, least-transmitted first."""

    def __init__(self, retransmit_mult: int, max_items: int = 10_000) -> None:
        self.retransmit_mult = retransmit_mult
        self.max_items = max_items
        self._items: dict[Hashable, _Slot] = {}
        self._groups: dict[Hashable, set[Hashable]] = {}
        self._order = 0
        self.on_add: Callable[[], None] | None = None  #: told of every new item (the node gossips it at once)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, subject: Hashable) -> bool:
        return subject in self._items

    def add(self, subject: Hashable, item: Any, size: int, group: Hashable | None = None) -> None:
        """Queue ``item`` (replacing anything queued about ``subject``); oldest dropped beyond ``max_items``."""
        self._remove(subject)
        self._order += 1
        self._items[subject] = _Slot(0, self._order, item, size, group)
        if group is not None:
            self._groups.setdefault(group, set()).add(subject)
        if len(self._items) > self.max_items:
            self._remove(min(self._items, key=lambda s: self._items[s].order))
        if self.on_add is not None:
            self.on_add()

    def drop_group(self, group: Hashable) -> None:
        """Forget every queued update of ``group`` (they are superseded by what is queued next)."""
        for subject in list(self._groups.get(group, ())):
            self._remove(subject)

    def limit(self, members: int) -> int:
        """Transmissions per update: ``retransmit_mult * ceil(log10(members + 1))``, at least the multiplier."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(members + 1)))

    def take(self, budget_bytes: int, members: int, accept: Callable[[Any], bool] = lambda item: True) -> list[Any]:
        """Items fitting ``budget_bytes``, least sent (then newest) first; counts the transmission."""
        if not self._items or budget_bytes <= 0:
            return []
        limit = self.limit(members)
        out = []
        for subject, slot in sorted(self._items.items(), key=lambda kv: (kv[1].transmits, -kv[1].order)):
            if slot.size > budget_bytes or not accept(slot.item):
                continue
            budget_bytes -= slot.size
            out.append(slot.item)
            slot.transmits += 1
            if slot.transmits >= limit:
                self._remove(subject)
            if budget_bytes < 16:
                break
        return out

    def _remove(self, subject: Hashable) -> None:
        slot = self._items.pop(subject, None)
        if slot is None or slot.group is None:
            return
        members = self._groups.get(slot.group)
        if members is not None:
            members.discard(subject)
            if not members:
                del self._groups[slot.group]
