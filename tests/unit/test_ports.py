"""The tests' free ports stay below the kernel's ephemeral range, so no outgoing connection can take one
between the test choosing it and a server binding it (a gateway restarted on the same config rebinds it)."""

from __future__ import annotations

import socket

from tests.ports import ephemeral_range, free_tcp_port, free_tcp_port_run, free_udp_ports


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low, _high = ephemeral_range()
    first = free_tcp_port_run(4)
    assert first + 4 <= low
    for port in (free_tcp_port(), *range(first, first + 4)):
        assert port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    udp = free_udp_ports(3)
    assert len(set(udp)) == 3 and all(port < low for port in udp)


def test_a_port_in_use_is_never_handed_out() -> None:
    held = []
    try:
        for _ in range(20):
            sock = socket.socket()
            sock.bind(("127.0.0.1", free_tcp_port()))
            sock.listen(1)
            held.append(sock)
        assert len({sock.getsockname()[1] for sock in held}) == 20
    finally:
        for sock in held:
            sock.close()


def test_no_port_is_handed_out_twice_by_one_process() -> None:
    ports = [free_tcp_port() for _ in range(300)]
    runs = [free_tcp_port_run(4) for _ in range(50)]
    every = ports + [first + i for first in runs for i in range(4)]
    assert len(set(every)) == len(every)
