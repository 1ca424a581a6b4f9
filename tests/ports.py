"""Free ports for the servers tests start: one home, and outside the kernel's ephemeral port range.

A port found free by binding port 0 comes from the ephemeral range, the same range the kernel draws the
*source* port of every outgoing connection from. Between the test choosing it and the server binding it —
often seconds later, or again on every restart of a gateway that keeps its config — any outgoing connection on
the machine (the gateway's own Modbus and OPC UA clients included) may take it as its local port, and the
server then fails with "address already in use". Ports below the ephemeral range are never handed out
that way; they are picked at random and proven free by binding them.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: the lowest port handed out (above the well-known and commonly registered service ports)
_LOWEST = 10000
_TRIES = 400
#: every port this process handed out: never twice (a test's ports are not held between the draws, and a
#: random draw, unlike the kernel's port 0, may repeat itself)
_HANDED_OUT: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' source ports (Linux default 32768–60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(count: int, kind: int = socket.SOCK_STREAM) -> int:
    """The first of ``count`` consecutive ports on 127.0.0.1 free for ``kind`` right now, all below the
    ephemeral range; bounded retries."""
    low, _high = ephemeral_range()
    highest_first = low - count
    if highest_first < _LOWEST:
        raise RuntimeError(f"the ephemeral port range starts at {low}: no room below it for {count} ports")
    rng = random.SystemRandom()  # two test processes must not walk the same sequence
    for _ in range(_TRIES):
        first = rng.randint(_LOWEST, highest_first)
        ports = range(first, first + count)
        if _HANDED_OUT.isdisjoint(ports) and all(_bindable(port, kind) for port in ports):
            _HANDED_OUT.update(ports)
            return first
    raise RuntimeError(f"no {count} consecutive free ports between {_LOWEST} and {low} after {_TRIES} tries")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range."""
    return free_port_run(1)


def free_tcp_port_run(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports (a simulator's containers listen on PORT + i)."""
    return free_port_run(count)


def free_udp_ports(count: int) -> list[int]:
    """``count`` distinct free UDP ports on 127.0.0.1, outside the ephemeral range."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port_run(1, socket.SOCK_DGRAM)
        if port not in ports:
            ports.append(port)
    return ports
