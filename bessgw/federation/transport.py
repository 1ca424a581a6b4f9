"""UDP for gossip, with fault injection (loss, blocked peers) for tests and benchmarks.

A blocked address neither receives from us nor is heard by us, which is what a network partition looks
like from inside; ``drop_rate`` loses that share of our outgoing datagrams at random, like a lossy link
(outgoing only, so with every node at 5 % each datagram is lost with probability 5 %, not 9.75 %).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

Addr = tuple[str, int]


@dataclass
class Faults:
    """Mutable fault plan; change it at any time (tests, the test harness's commands, the bench)."""

    drop_rate: float = 0.0
    blocked: set[Addr] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)

    def passes(self, addr: Addr, outgoing: bool) -> bool:
        if addr in self.blocked:
            return False
        return not (outgoing and self.drop_rate and self.rng.random() < self.drop_rate)


@dataclass
class TrafficCounters:
    sent_datagrams: int = 0
    sent_bytes: int = 0
    received_datagrams: int = 0
    received_bytes: int = 0
    injected_drops: int = 0
    largest_sent: int = 0
    socket_errors: int = 0


class UdpTransport(asyncio.DatagramProtocol):
    """One UDP socket. ``on_datagram`` is called synchronously for every datagram that passes the faults."""

    def __init__(self, on_datagram: Callable[[bytes, Addr], None], faults: Faults | None = None) -> None:
        self.on_datagram = on_datagram
        self.faults = faults or Faults()
        self.counters = TrafficCounters()
        self._transport: asyncio.DatagramTransport | None = None
        self.bound: Addr | None = None  #: the socket's own address once open (may differ from the advertised)

    async def open(self, host: str, port: int) -> Addr:
        """Bind; returns the bound address (the real port when ``port`` is 0)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        self.bound = (sockname[0], sockname[1])
        return self.bound

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def send(self, data: bytes, addr: Addr) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if not self.faults.passes(addr, outgoing=True):
            self.counters.injected_drops += 1
            return
        self.counters.sent_datagrams += 1
        self.counters.sent_bytes += len(data)
        self.counters.largest_sent = max(self.counters.largest_sent, len(data))
        self._transport.sendto(data, addr)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -------------------------------------------------------------------------- protocol callbacks

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        peer = (addr[0], addr[1])
        if not self.faults.passes(peer, outgoing=False):
            self.counters.injected_drops += 1
            return
        self.counters.received_datagrams += 1
        self.counters.received_bytes += len(data)
        self.on_datagram(data, peer)

    def error_received(self, exc: Exception) -> None:
        self.counters.socket_errors += 1  # e.g. ICMP port unreachable from a dead peer: SWIM copes
