"""Gossip captured on the wire and replayed after a kill -9 restart, or to another gateway: none accepted.

Three gateway processes; two of them keep a copy of every datagram they receive (a wiretap in the test
harness, below the node). Then the receiver is killed with SIGKILL and restarted on the same port and state
directory, and the captures are replayed at it — its own traffic from before the restart, and traffic meant
for another gateway — and at that other gateway. Every replayed datagram must be refused and counted under
the reason the guard gives, and membership and the replicated state must come through unchanged.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from bessgw.federation.crypto import KeyRing, version_of
from bessgw.federation.wire import decode
from bessgw.testing import wait_until_sync as poll_until
from tests.federation.conftest import new_key
from tests.federation.processes import NodeProcess

pytestmark = [pytest.mark.federation, pytest.mark.chaos, pytest.mark.timeout(180)]

#: no periodic re-publishing, so that "every node holds the same versions" is a fixed point to wait for
QUIET = {"refresh_interval_s": 1000.0, "stale_after_s": 1000.0}
CAPTURE = 400


def addr_of(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host, int(port))


def captured(node: NodeProcess) -> list[bytes]:
    return [base64.b64decode(data) for data, _ in node.ask("captured")["captured"]]


def refused(node: NodeProcess) -> Counter[str]:
    """Everything ``node`` refused so far: drops per reason, plus first contacts (refused, answered)."""
    counters = node.ask("counters")
    return Counter({**counters["drops"], "first_contact": counters["handshakes"]})


def expected_reason(ring: KeyRing, data: bytes, receiver: str) -> str:
    """Why ``receiver`` (restarted, or having seen ``data`` before) must refuse ``data``, from its envelope."""
    header, _ = decode(ring.open(data), version_of(data) or 0)
    if header.sender == receiver:
        return "self"
    if header.to != receiver:
        return "recipient"
    return "first_contact" if header.to_boot == 0 else "epoch"


def views_agree(nodes: list[NodeProcess], names: set[str]) -> bool:
    for node in nodes:
        if {k for k, v in node.statuses().items() if v == "alive"} != names:
            return False
        if {gw for gw, _ in node.units()} != names:
            return False
    return len({json.dumps(n.versions(), sort_keys=True) for n in nodes}) == 1


def test_captures_replayed_after_a_kill_restart_and_to_another_gateway_are_all_refused(tmp_path: Path) -> None:
    key = new_key()
    ring = KeyRing([base64.b64decode(key)])
    nodes: list[NodeProcess] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        seed = NodeProcess("p1", key, [], units=1, **QUIET)
        nodes.append(seed)
        other = NodeProcess("p2", key, [seed.addr], units=1, args=("--capture", str(CAPTURE)), **QUIET)
        nodes.append(other)
        state_dir = tmp_path / "r-state"
        receiver = NodeProcess("r", key, [seed.addr], units=1,
                               args=("--capture", str(CAPTURE), "--state-dir", str(state_dir)), **QUIET)
        nodes.append(receiver)
        names = {"p1", "p2", "r"}
        poll_until(lambda: views_agree(nodes, names), 30, "3 gateways with the same view")
        # traffic worth replaying: state updates on every gateway, spread by gossip and push-pull
        for round_ in range(3):
            for node in nodes:
                node.ask("set_unit", unit_id="u0", soc_pct=10.0 * round_ + len(node.id))
        poll_until(lambda: len(receiver.ask("captured")["captured"]) >= 40
                   and len(other.ask("captured")["captured"]) >= 40, 30, "40 datagrams captured at r and p2")
        poll_until(lambda: views_agree(nodes, names), 30, "the updates everywhere")
        to_receiver = captured(receiver)
        to_other = captured(other)
        old_boot, port = receiver.boot, receiver.bound

        receiver.kill()
        nodes[2] = receiver = NodeProcess("r", key, [seed.addr], units=1, bind=port,
                                          args=("--state-dir", str(state_dir)), **QUIET)
        assert receiver.boot > old_boot
        receiver.ask("set_unit", unit_id="u0", soc_pct=99.0)

        def settled() -> bool:
            if any(n.ask("counters")["boots"].get("r") != receiver.boot for n in nodes[:2]):
                return False  # a peer still writes to r's previous life
            return views_agree(nodes, names) and all(
                n.units()[("r", "u0")]["summary"]["soc_pct"] == 99.0 for n in nodes
            )

        poll_until(settled, 30, "r back, its new boot known to both peers, its fresh state everywhere")
        versions = nodes[0].versions()
        before_r, before_other = refused(receiver), refused(other)

        # the replays: r's own traffic from before the restart, p2's traffic, and p2's traffic at p2 again
        for data in to_receiver + to_other:
            sock.sendto(data, addr_of(receiver.addr))
        for data in to_other:
            sock.sendto(data, addr_of(other.addr))
        sent_r, sent_other = len(to_receiver) + len(to_other), len(to_other)
        deadline = time.monotonic() + 15.0
        while True:  # until every replay is counted; an accepted one never is, so then the deadline ends it
            delta_r, delta_other = refused(receiver) - before_r, refused(other) - before_other
            if (sum(delta_r.values()) >= sent_r and sum(delta_other.values()) >= sent_other) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.05)
        # none accepted: every replayed datagram is counted as refused, under the reason its envelope gives
        assert sum(delta_r.values()) == sent_r, (delta_r, sent_r)
        assert sum(delta_other.values()) == sent_other, (delta_other, sent_other)
        expected_r = Counter(expected_reason(ring, data, "r") for data in to_receiver + to_other)
        assert delta_r == expected_r
        assert expected_r["epoch"] == len(to_receiver)  # r's previous life, every one of them
        assert expected_r["recipient"] > 0
        # at p2 everything was seen before (or, from r's previous life, is over)
        assert set(delta_other) == {"replay"}, delta_other

        # nothing changed: the same members, nobody suspected, the same versions
        assert views_agree(nodes, names)
        assert nodes[0].versions() == versions
        for node in nodes:
            assert "internal" not in node.ask("counters")["drops"]
            assert all(m["status"] == "alive" for m in node.members().values())
    finally:
        sock.close()
        for node in nodes:
            node.close()
