"""Wrong keys, forged, replayed and random datagrams at live nodes: counted per reason, dropped, node stays up."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import time

import msgpack
import pytest

from bessgw.federation.boot import boot_stamp
from bessgw.federation.crypto import KeyRing
from bessgw.federation.wire import Entry, Header, MemberUpdate, Message, MsgType, Status, encode
from bessgw.testing import wait_until
from tests.federation.conftest import Campus, new_key
from tests.federation.run_node import unit

pytestmark = [pytest.mark.federation, pytest.mark.chaos]


def test_a_node_with_the_wrong_campus_key_can_neither_join_nor_inject() -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            a = await campus.add("a")
            b = await campus.add("b")
            intruder = await campus.add("intruder", key=new_key())
            intruder.update_local_units([unit("evil")])
            await wait_until(lambda: a.node.drops["unknown_key"] >= 3,
                             10, "the intruder's join attempts refused")
            await wait_until(lambda: {m.gateway_id for m in b.members()} == {"a", "b"}, 10, "a and b joined")
            assert {m.gateway_id for m in a.members()} == {"a", "b"}
            assert {m.gateway_id for m in intruder.members()} == {"intruder"}
            assert all(u.gateway_id != "intruder" for u in a.campus_view().units)

    asyncio.run(scenario())


def test_key_rotation_keeps_the_campus_together() -> None:
    old, new = new_key(), new_key()

    async def scenario() -> None:
        async with Campus(old) as campus:
            # rollout step 1 done on a (new key accepted), step 2 on b (new key primary): they still talk
            a = await campus.add("a", keys=[old, new])
            b = await campus.add("b", keys=[new, old])
            a.update_local_units([unit("ua")])
            b.update_local_units([unit("ub")])
            await wait_until(lambda: all(len(s.campus_view().units) == 2 for s in (a, b)), 10, "state both ways")
            assert a.node.drops["unknown_key"] == 0 and b.node.drops["unknown_key"] == 0
            # a gateway that never got the new key cannot read b (b sends with the new primary)
            laggard = await campus.add("c", keys=[old])
            await wait_until(lambda: laggard.node.drops["unknown_key"] > 0, 10, "b's datagrams refused by c")

    asyncio.run(scenario())


def test_fuzz_forged_replayed_and_random_datagrams_are_counted_and_dropped() -> None:
    key = new_key()
    ring = KeyRing([base64.b64decode(key)])
    wrong = KeyRing([os.urandom(32)])
    rng = random.Random(8)

    async def scenario() -> None:
        async with Campus(key) as campus:
            target = await campus.add("target")
            peer = await campus.add("peer")
            await wait_until(lambda: len(target.members()) == 2, 10, "target and peer joined")
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            addr = target.node.addr
            boot = boot_stamp(time.time()) - 100  # mallory booted 10 s ago
            target_boot = target.node.boot
            handshakes = target.node.handshakes  # the peer's own join through target, as its seed
            sent: dict[str, int] = {}

            def send(reason: str, data: bytes) -> None:
                sock.sendto(data, addr)
                sent[reason] = sent.get(reason, 0) + 1

            def genuine(seq: int, msg: Message, sender: str = "mallory", to: str = "target",
                        to_boot: int = target_boot) -> bytes:
                return ring.seal(encode(Header(sender, boot, seq, to, to_boot), msg))

            try:
                for round_ in range(10):
                    for _ in range(30):
                        send("random", bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 1500))))
                    for _ in range(10):
                        data = bytearray(genuine(rng.randrange(1, 10**9), Message(MsgType.PING)))
                        data[rng.randrange(7, len(data))] ^= 1 << rng.randrange(8)  # flip one bit
                        send("auth", bytes(data))
                    send("unknown_key", wrong.seal(b"anything"))
                    send("malformed", ring.seal(bytes(rng.getrandbits(8) for _ in range(40)) + b"\xc1"))
                    send("invalid", ring.seal(msgpack.packb(["mallory", boot, 10**6 + round_, "target", target_boot,
                                                             {"t": 77}])))
                    send("epoch", genuine(2 * 10**6 + round_, Message(MsgType.PING), to_boot=target_boot - 1))
                    send("recipient", genuine(5 * 10**6 + round_, Message(MsgType.PING), to="peer"))
                    sock.sendto(genuine(6 * 10**6 + round_, Message(MsgType.PING), to="", to_boot=0), addr)
                    send("self", genuine(3 * 10**6 + round_, Message(MsgType.PING), sender="target"))
                    # an authentic datagram trying to declare the peer dead, sent twice: the copy is a replay
                    forged = genuine(4 * 10**6 + round_, Message(MsgType.GOSSIP, members=(
                        MemberUpdate("peer", "127.0.0.1", 9, 0, Status.DEAD),)))
                    sock.sendto(forged, addr)
                    send("replay", forged)
                    first_contacts = handshakes + round_ + 1
                    await wait_until(lambda n=first_contacts: sum(target.node.drops.values()) >= sum(sent.values())
                                     and target.node.handshakes >= n, 10, f"round {round_} counted")
            finally:
                sock.close()
            drops = dict(target.node.drops)
            assert drops.get("internal", 0) == 0, drops
            for reason in ("invalid", "epoch", "recipient", "self", "replay", "auth"):
                assert drops.get(reason) == sent[reason], (reason, drops, sent)
            assert drops["unknown_key"] >= sent["unknown_key"]  # plus random blobs starting with 0xB1
            # random junk lands in the cheap reasons; a random blob never authenticates
            assert drops.get("short", 0) + drops.get("format", 0) + drops.get(
                "unknown_key", 0) - sent["unknown_key"] + drops.get("auth", 0) - sent["auth"] + drops.get(
                "malformed", 0) - sent["malformed"] == sent["random"]
            assert drops.get("malformed") == sent["malformed"]
            assert target.node.handshakes == handshakes + 10  # first contacts: answered, not used, not counted as drops
            # the node is still up: it answers its peer, and the forged death did not stick
            before = target.node.transport.counters.received_datagrams
            await wait_until(lambda: target.node.transport.counters.received_datagrams > before + 3, 5, "traffic")
            await wait_until(lambda: {m.status for m in target.members()} == {"alive"}, 10, "peer alive again")
            assert peer.node.membership.me.incarnation >= 1  # it refuted the authentic-but-forged death claim

    asyncio.run(scenario())


def test_authenticated_state_for_unknown_or_own_owners_is_not_stored() -> None:
    key = new_key()
    ring = KeyRing([base64.b64decode(key)])

    async def scenario() -> None:
        async with Campus(key) as campus:
            target = await campus.add("target")
            target.update_local_units([unit("mine", soc_pct=1.0)])
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                entries = (Entry("target", 1, 10**6, "unit/mine", {"x": 1}), Entry("ghost", 1, 1, "unit/g", {"x": 1}))
                msg = Message(MsgType.GOSSIP, entries=entries)
                header = Header("m", boot_stamp(time.time()), 1, "target", target.node.boot)
                sock.sendto(ring.seal(encode(header, msg)), target.node.addr)
                await wait_until(lambda: target.node.transport.counters.received_datagrams >= 1, 5, "delivery")
            finally:
                sock.close()
            assert "ghost" not in target.node.state.owners
            assert target.node.state.conflicts == 1
            assert [u.summary.soc_pct for u in target.campus_view().units] == [1.0]

    asyncio.run(scenario())

