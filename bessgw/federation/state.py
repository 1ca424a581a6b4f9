"""Replicated campus state: scuttlebutt anti-entropy over keys owned per gateway.

Each gateway (*owner*) writes only its own keys (identity, unit summaries, capabilities). Every write gets
the owner's next version number, so one owner's versions totally order its writes. Replicas keep, per
owner, the latest value of each key and a *watermark*: "I hold every write of this owner up to here".
Digests list watermarks; the answer to a digest is, per owner, the entries above the peer's watermark in
ascending version order, with the range they complete (``base``..``upto``). Applying a part advances the
watermark only if it starts at or below ours, so a lost or reordered part never makes a replica skip a
write; individual entries are always safe to apply (a key only ever moves to a higher version).

A restarted owner starts a new *generation* (its boot number, :mod:`bessgw.federation.boot`): everything
of an older generation is dropped when a newer one arrives, so a gateway's fresh state replaces, rather
than mixes with, its old.
A deleted key stays as a tombstone (value ``None``) so the deletion replicates like a write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bessgw.federation.wire import DeltaPart, DigestItem, Entry, pack, packed_size

Value = dict[str, Any] | None


@dataclass
class OwnerState:
    """What this replica holds of one owner."""

    generation: int
    watermark: int = 0
    entries: dict[str, tuple[int, Value]] = field(default_factory=dict)


class StateStore:
    """All owners' versioned keys as this gateway knows them. Pure data structure (no I/O, no clock)."""

    def __init__(self, local: str, generation: int, accept: Callable[[str], bool] = lambda owner: True) -> None:
        self.local = local
        self.accept = accept  #: only owners this says yes to are stored (known, not departed, members)
        self.owners: dict[str, OwnerState] = {local: OwnerState(generation)}
        self.conflicts = 0  #: entries claiming to be ours from another generation (a duplicate gateway id?)

    @property
    def mine(self) -> OwnerState:
        return self.owners[self.local]

    # ------------------------------------------------------------------------------ local writes

    def set(self, key: str, value: Value) -> Entry | None:
        """Write one of our keys; returns the entry to disseminate, or None when nothing changed."""
        mine = self.mine
        current = mine.entries.get(key)
        if current is not None and current[1] == value:
            return None
        if current is None and value is None:
            return None
        mine.watermark += 1
        mine.entries[key] = (mine.watermark, value)
        return Entry(self.local, mine.generation, mine.watermark, key, value)

    def delete(self, key: str) -> Entry | None:
        """Tombstone one of our keys (None if it did not exist)."""
        return self.set(key, None)

    # ------------------------------------------------------------------------------ remote input

    def apply_entry(self, entry: Entry) -> bool:
        """Apply one gossiped entry; True if it was new to us (worth passing on)."""
        owner = self._owner_for(entry.owner, entry.generation)
        if owner is None:
            return False
        current = owner.entries.get(entry.key)
        if current is not None and current[0] >= entry.version:
            return False
        owner.entries[entry.key] = (entry.version, entry.value)
        if owner.watermark == entry.version - 1:
            owner.watermark = entry.version  # the owner numbers writes 1, 2, 3...: this one is next
        return True

    def apply_delta(self, part: DeltaPart) -> list[Entry]:
        """Apply one anti-entropy part; returns the entries that were new to us."""
        owner = self._owner_for(part.owner, part.generation)
        if owner is None:
            return []
        contiguous = owner.watermark >= part.base
        fresh = []
        for key, version, value in part.entries:
            current = owner.entries.get(key)
            if current is None or current[0] < version:
                owner.entries[key] = (version, value)
                fresh.append(Entry(part.owner, part.generation, version, key, value))
        if contiguous and part.upto > owner.watermark:
            owner.watermark = part.upto
        return fresh

    def _owner_for(self, name: str, generation: int) -> OwnerState | None:
        if name == self.local:
            if generation != self.mine.generation:
                self.conflicts += 1
            return None
        if not self.accept(name):
            return None
        owner = self.owners.get(name)
        if owner is None or generation > owner.generation:
            owner = self.owners[name] = OwnerState(generation)  # a restart: the old generation is void
        elif generation < owner.generation:
            return None
        return owner

    def drop(self, name: str) -> None:
        """Forget an owner (it left, or was reaped after being dead too long)."""
        if name != self.local:
            self.owners.pop(name, None)

    # ------------------------------------------------------------------------------ anti-entropy

    def digest(self, names: Iterable[str]) -> list[DigestItem]:
        """Our watermark for each of ``names`` (0/0 for owners we hold nothing of)."""
        out = []
        for name in sorted(set(names) | {self.local}):
            owner = self.owners.get(name)
            out.append(DigestItem(name, owner.generation, owner.watermark) if owner else DigestItem(name, 0, 0))
        return out

    @staticmethod
    def digest_hash(digest: Iterable[DigestItem]) -> bytes:
        """16-byte summary of a digest: equal hashes mean there is nothing to exchange."""
        return hashlib.blake2b(pack([d.to_wire() for d in digest]), digest_size=16).digest()

    def deltas_for(self, digest: Iterable[DigestItem]) -> list[DeltaPart]:
        """What a peer with ``digest`` lacks, one part per owner, entries in ascending version order."""
        parts = []
        for item in digest:
            owner = self.owners.get(item.owner)
            if owner is None or owner.generation < item.generation:
                continue
            base = item.watermark if owner.generation == item.generation else 0
            if owner.watermark <= base and not any(v > base for v, _ in owner.entries.values()):
                continue
            entries = sorted(((k, v, val) for k, (v, val) in owner.entries.items() if v > base), key=lambda e: e[1])
            parts.append(DeltaPart(item.owner, owner.generation, base, max(owner.watermark, base), tuple(entries)))
        return parts

    def behind(self, digest: Iterable[DigestItem]) -> list[DigestItem]:
        """Our digest items for the owners where the peer's ``digest`` shows it knows more than we do."""
        out = []
        for item in digest:
            owner = self.owners.get(item.owner)
            if item.owner == self.local or item.watermark == 0:
                continue
            if owner is None or (item.generation, item.watermark) > (owner.generation, owner.watermark):
                out.append(DigestItem(item.owner, owner.generation, owner.watermark) if owner
                           else DigestItem(item.owner, 0, 0))
        return out

    def items(self, name: str) -> Iterator[tuple[str, int, Value]]:
        owner = self.owners.get(name)
        if owner is not None:
            for key, (version, value) in owner.entries.items():
                yield key, version, value


def split_parts(parts: Iterable[DeltaPart], budget_bytes: int) -> list[list[DeltaPart]]:
    """Pack delta parts into datagram-sized groups, splitting an owner's run while keeping it contiguous.

    A split run's pieces chain (``base`` of one is the last version of the previous), so a receiver that
    misses a piece only stops advancing its watermark; the next round asks again. An entry that alone
    exceeds the budget cannot be sent and is left out (the store never writes such values).
    """
    groups: list[list[DeltaPart]] = []
    group: list[DeltaPart] = []
    used = 0
    for part in parts:
        head = packed_size([part.owner, part.generation, part.base, part.upto, []]) + 2
        base = part.base
        chunk: list[tuple[str, int, Value]] = []
        chunk_size = head
        for entry in part.entries:
            size = packed_size(list(entry))
            if head + size > budget_bytes:
                continue
            if used + chunk_size + size > budget_bytes:
                if chunk:
                    last = chunk[-1][1]
                    group.append(DeltaPart(part.owner, part.generation, base, last, tuple(chunk)))
                    base, chunk = last, []
                if group:
                    groups.append(group)
                group, used, chunk_size = [], 0, head
            chunk.append(entry)
            chunk_size += size
        group.append(DeltaPart(part.owner, part.generation, base, part.upto, tuple(chunk)))
        used += chunk_size
    if group:
        groups.append(group)
    return groups


def split_items(items: list[Any], budget_bytes: int, size: Callable[[Any], int]) -> list[list[Any]]:
    """Greedy split of wire items (digest items, member updates) into datagram-sized lists."""
    groups: list[list[Any]] = [[]]
    used = 0
    for item in items:
        cost = size(item)
        if groups[-1] and used + cost > budget_bytes:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += cost
    return [g for g in groups if g] or [[]]
