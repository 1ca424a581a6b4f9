"""The handshake restarts need: unbound datagrams answered with a HELLO, and what a HELLO makes a node do.

A raw UDP socket holding the campus key plays the other gateway, so every datagram is seen and nothing
depends on timing beyond a bounded wait for the next one.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time

import pytest

from bessgw.federation.boot import boot_stamp
from bessgw.federation.crypto import KeyRing
from bessgw.federation.wire import Header, MemberUpdate, Message, MsgType, Status, decode, encode
from bessgw.testing import wait_until
from tests.federation.conftest import Campus, new_key

pytestmark = [pytest.mark.federation, pytest.mark.chaos]


def test_an_unbound_datagram_is_answered_with_a_hello_and_nothing_else() -> None:
    """The handshake a restart needs: a datagram not bound to the receiver's boot is refused, and its
    sender is told the boot (rate-limited); bound to it, the next one is served."""
    key = new_key()
    ring = KeyRing([base64.b64decode(key)])
    mallory_boot = boot_stamp(time.time()) - 50

    async def scenario() -> None:
        async with Campus(key) as campus:
            target = await campus.add("target", probe_interval_s=5.0, probe_timeout_s=2.0)  # HELLO limit: 2 s
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            seq = iter(range(1, 1000))

            def send(msg: Message, to: str = "target", to_boot: int = 0, sender: str = "mallory") -> bytes:
                data = ring.seal(encode(Header(sender, mallory_boot, next(seq), to, to_boot), msg))
                sock.sendto(data, target.node.addr)
                return data

            async def receive() -> tuple[Header, Message]:
                data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5.0)
                return decode(ring.open(data))

            try:
                send(Message(MsgType.PING, probe_seq=7), to_boot=target.node.boot - 1)  # an earlier life of target
                header, msg = await receive()
                assert msg.type == MsgType.HELLO
                assert header == Header("target", target.node.boot, header.seq, "mallory", mallory_boot)
                assert target.node.drops["epoch"] == 1
                send(Message(MsgType.PING, probe_seq=8), to_boot=target.node.boot - 1)  # within the limit: no HELLO
                send(Message(MsgType.PING, probe_seq=9), to_boot=target.node.boot)  # bound: served
                header, msg = await receive()
                assert (msg.type, msg.probe_seq, header.to, header.to_boot) == (MsgType.ACK, 9, "mallory", mallory_boot)
                assert target.node.drops["epoch"] == 2

                send(Message(MsgType.SYNC, join=True), to="", sender="newcomer")  # knows only the address
                header, msg = await receive()
                assert (msg.type, header.to) == (MsgType.HELLO, "newcomer")
                assert target.node.handshakes == 1 and "first_contact" not in target.node.drops

                # a HELLO from someone who is no member of ours: our join follows, bound to its boot
                hello = send(Message(MsgType.HELLO), to_boot=target.node.boot)
                header, msg = await receive()
                assert (msg.type, msg.join, header.to_boot) == (MsgType.SYNC, True, mallory_boot)
                sock.sendto(hello, target.node.addr)
                await wait_until(lambda: target.node.drops["replay"] == 1, 5, "the copied HELLO refused")
            finally:
                sock.close()
            assert {m.gateway_id for m in target.members()} == {"target"}  # none of it made anyone a member

    asyncio.run(scenario())


def test_a_hello_from_a_restarted_member_repeats_the_pending_ping_bound_to_its_new_boot() -> None:
    """A member restarted on the same address refuses our ping (it names its earlier life) and says
    HELLO: the same probe is repeated at once, so the restart does not make it a suspect."""
    key = new_key()
    ring = KeyRing([base64.b64decode(key)])
    old_boot = boot_stamp(time.time()) - 50
    new_boot = old_boot + 30

    async def scenario() -> None:
        async with Campus(key) as campus:
            prober = await campus.add("a", probe_interval_s=0.5, probe_timeout_s=0.4, push_pull_interval_s=600.0)
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            seq = iter(range(1, 1000))

            def send(msg: Message, boot: int) -> None:
                header = Header("b", boot, next(seq), "a", prober.node.boot)
                sock.sendto(ring.seal(encode(header, msg)), prober.node.addr)

            async def next_ping() -> tuple[Header, Message]:
                while True:  # skip gossip and syncs; bounded by the receive timeout
                    data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5.0)
                    header, msg = decode(ring.open(data))
                    if msg.type == MsgType.PING:
                        return header, msg

            try:
                me = MemberUpdate("b", "127.0.0.1", sock.getsockname()[1], 1, Status.ALIVE, "", old_boot)
                send(Message(MsgType.GOSSIP, members=(me,)), old_boot)
                await wait_until(lambda: "b" in prober.node.membership.members, 5, "b is a member of a")
                first, ping = await next_ping()
                assert (first.to, first.to_boot) == ("b", old_boot)
                send(Message(MsgType.HELLO), new_boot)  # b restarted: "I am new_boot now"
                again, repeated = await next_ping()
                assert (again.to, again.to_boot) == ("b", new_boot)
                assert repeated.probe_seq == ping.probe_seq  # the same probe, not the next round's
                send(Message(MsgType.ACK, probe_seq=repeated.probe_seq), new_boot)
                await wait_until(lambda: prober.node.boot_of("b") == new_boot, 5, "b's new boot learned")
                send(Message(MsgType.ACK, probe_seq=ping.probe_seq), old_boot)  # its earlier life is over
                await wait_until(lambda: prober.node.drops["replay"] == 1, 5, "the old life refused")
            finally:
                sock.close()
            assert prober.node.membership.members["b"].status == Status.ALIVE
            assert set(prober.node.drops) == {"replay"}

    asyncio.run(scenario())
