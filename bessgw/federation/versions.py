"""Which wire version to write to each peer, and which peers are incompatible.

A peer tells its :class:`~bessgw.federation.wire.VersionRange` in the preamble of every datagram of
version 3 or later and in its replicated ``wire`` key. Both are bound to the peer's boot (the datagram's
sender boot, the entry's generation): a range describes one life of a gateway, and a restart may be an
upgrade or a downgrade, so what we knew of an earlier life is forgotten as soon as a newer boot is known.
A peer that never told its range (release 0.2.0, or a new gateway we have not heard from yet) is written
to at our minimum version, the one release 0.2.0 speaks.

A peer whose range does not meet ours is *incompatible*: we never write to it, never use its state, and
show it as ``incompatible`` (members table, OPC UA campus view, metrics) rather than alive or dead, since
its liveness is not something we can judge.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bessgw.federation.wire import VersionRange

#: peers whose range is remembered (a memory bound far above any campus)
MAX_PEERS = 4096


@dataclass(frozen=True)
class PeerRange:
    """What one life (``boot``) of a peer speaks, and where we last heard from it."""

    node: str
    boot: int
    speaks: VersionRange
    address: str
    since: float


class PeerVersions:
    """The ranges peers told us, bounded; answers "which version do I write to X" and "is X incompatible"."""

    def __init__(self, ours: VersionRange, clock: Callable[[], float]) -> None:
        self.ours = ours
        self.clock = clock
        self._peers: OrderedDict[str, PeerRange] = OrderedDict()

    def learn(self, node: str, boot: int, speaks: VersionRange, address: str = "") -> bool:
        """Record that life ``boot`` of ``node`` speaks ``speaks``; True if it just became incompatible.

        A range of an older life than the one recorded is ignored (a late or replayed datagram).
        """
        known = self._peers.get(node)
        if known is not None and boot < known.boot:
            return False
        was = known is not None and not self.ours.compatible(known.speaks)
        if known is None or known.boot != boot or known.speaks != speaks or (address and known.address != address):
            since = known.since if known is not None and known.speaks == speaks else self.clock()
            self._peers[node] = PeerRange(node, boot, speaks, address or (known.address if known else ""), since)
        self._peers.move_to_end(node)
        while len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)
        return not was and not self.ours.compatible(speaks)

    def range_of(self, node: str, boot: int = 0) -> PeerRange | None:
        """What ``node`` told us, unless it is from a life older than ``boot`` (the newest we know)."""
        known = self._peers.get(node)
        if known is None or known.boot < boot:
            return None
        return known

    def version_for(self, node: str, boot: int = 0) -> int | None:
        """The version to write to ``node`` (newest known life ``boot``); None: it is incompatible."""
        known = self.range_of(node, boot)
        if known is None:
            return self.ours.min
        return self.ours.version_for(known.speaks)

    def incompatible(self, node: str, boot: int = 0) -> bool:
        known = self.range_of(node, boot)
        return known is not None and not self.ours.compatible(known.speaks)

    def incompatible_peers(self, boot_of: Callable[[str], int]) -> list[PeerRange]:
        """Every peer currently known to be incompatible (``boot_of``: the newest boot known per node)."""
        return [p for p in self._peers.values() if p.boot >= boot_of(p.node) and not self.ours.compatible(p.speaks)]
