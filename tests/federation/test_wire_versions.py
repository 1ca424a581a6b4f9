"""Versioned gossip: a gateway of the previous release and gateways of this one run one campus, and a
gateway of a later, incompatible wire range is shown as such and never trusted.

The previous release runs from its own source tree (``tests.upgrade.release``) in its own process.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bessgw.federation.service import FederationService
from bessgw.federation.wire import WIRE_CURRENT, WIRE_MIN, VersionRange
from bessgw.northbound.http.metrics import FederationCollector
from bessgw.testing import wait_until
from tests.federation.conftest import fast_settings, new_key
from tests.federation.processes import NodeProcess

pytestmark = [pytest.mark.federation, pytest.mark.integration]


def _poll(predicate, timeout_s: float, what: str) -> None:
    """Wait (bounded) until ``predicate()`` holds, polling a child process between tries."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def test_a_previous_release_node_and_new_nodes_gossip_each_in_the_version_the_other_speaks(
        previous_release: Path) -> None:
    """old (release 0.2.0) is the seed; new1 and new2 join through it. Everyone sees everyone alive with
    their units; old never drops anything as unreadable; new1 and new2 find each other's range through
    old (which replicates the ``wire`` key without knowing it) and talk version 3 to each other, version 2
    to old."""
    key = new_key()
    old = NodeProcess("old", key, [], units=2, root=previous_release)
    nodes = [old]
    try:
        new1 = NodeProcess("new1", key, [old.addr], units=2)
        nodes.append(new1)
        new2 = NodeProcess("new2", key, [old.addr], units=1)
        nodes.append(new2)
        everyone = {"old", "new1", "new2"}
        units = {("old", "u0"), ("old", "u1"), ("new1", "u0"), ("new1", "u1"), ("new2", "u0")}
        for node in nodes:
            _poll(lambda n=node: set(n.statuses().items()) == {(g, "alive") for g in everyone},
                  30, f"{node.id} to see everyone alive")
            _poll(lambda n=node: set(n.units()) == units, 30, f"{node.id} to hold every unit")
        _poll(lambda: new1.members()["new2"]["speaks"] == f"{WIRE_MIN}..{WIRE_CURRENT}", 30,
              "new1 to learn new2's range")
        assert new1.members()["old"]["speaks"] == ""  # release 0.2.0 never says: written to in version 2
        assert new2.members()["new1"]["speaks"] == f"{WIRE_MIN}..{WIRE_CURRENT}"
        # old holds (and passes on) the new gateways' ``wire`` key without reading it
        assert "wire" in old.versions()["new1"]["keys"]
        before = new1.ask("counters")["sent_versions"]
        _poll(lambda: new1.ask("counters")["sent_versions"].get(str(WIRE_CURRENT), 0)
              > before.get(str(WIRE_CURRENT), 0) + 5, 30, "new1 to keep writing version 3 to new2")
        assert int(new1.ask("counters")["sent_versions"][str(WIRE_MIN)]) > 0  # and version 2 to old
        old_drops = old.ask("counters")["drops"]
        for reason in ("format", "invalid", "malformed", "internal"):
            assert old_drops.get(reason, 0) == 0, old_drops
        for node in (new1, new2):
            drops = node.ask("counters")["drops"]
            for reason in ("format", "invalid", "malformed", "internal", "version", "required_field"):
                assert drops.get(reason, 0) == 0, (node.id, drops)
        # state still flows both ways after the switch: a change on old reaches new2, one on new2 reaches old
        old.ask("set_unit", unit_id="u0", soc_pct=12.5)
        new2.ask("set_unit", unit_id="u0", soc_pct=87.5)
        _poll(lambda: new2.units()[("old", "u0")]["summary"]["soc_pct"] == 12.5, 30, "new2 to see old's change")
        _poll(lambda: old.units()[("new2", "u0")]["summary"]["soc_pct"] == 87.5, 30, "old to see new2's change")
    finally:
        for node in nodes:
            node.close()


FUTURE = VersionRange(WIRE_CURRENT + 1, WIRE_CURRENT + 1, WIRE_CURRENT + 2)
#: a gateway of a later release that still speaks our current version and the future one
BRIDGE = VersionRange(WIRE_MIN, WIRE_CURRENT + 1, WIRE_CURRENT + 1)


async def _service(name: str, key: str, seeds: list[str], wire: VersionRange,
                   tasks: list[asyncio.Task[None]]) -> FederationService:
    service = FederationService(fast_settings(key, seeds), name, wire=wire)
    await service.start()
    tasks.append(asyncio.create_task(service.run()))
    return service


def _seed(service: FederationService) -> str:
    host, port = service.node.addr
    return f"{host}:{port}"


def _incompatible_gauge(service: FederationService) -> float:
    for family in FederationCollector(lambda: service).collect():
        if family.name == "bessgw_gossip_members":
            return sum(value for labels, value in family.rows if tuple(labels) == ("incompatible",))
    raise AssertionError("no bessgw_gossip_members family")


def test_a_future_peer_is_incompatible_and_its_state_is_never_used() -> None:
    """ours (this release) and future (a range above ours) meet only through bridge, which speaks both.
    ours learns future's range from its replicated ``wire`` key, lists it ``incompatible`` (members table,
    metrics gauge), keeps none of its state and never writes to it; bridge, compatible with both, holds
    future's units, so future is genuinely up and gossiping."""
    key = new_key()

    async def scenario() -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            ours = await _service("ours", key, [], VersionRange(WIRE_MIN, WIRE_CURRENT, WIRE_CURRENT), tasks)
            bridge = await _service("bridge", key, [_seed(ours)], BRIDGE, tasks)
            await wait_until(lambda: {m.gateway_id: m.status for m in ours.members()}.get("bridge") == "alive",
                             20, "ours and bridge to meet")
            future = await _service("future", key, [_seed(bridge)], FUTURE, tasks)
            from tests.federation.run_node import unit

            future.update_local_units([unit("f0"), unit("f1")])
            await wait_until(lambda: {(u.gateway_id, u.summary.unit_id) for u in bridge.campus_view().units}
                             >= {("future", "f0"), ("future", "f1")}, 20, "bridge to hold future's units")
            await wait_until(lambda: {m.gateway_id: m.status for m in ours.members()}.get("future")
                             == "incompatible", 20, "ours to list future as incompatible")
            row = {m.gateway_id: m for m in ours.members()}["future"]
            assert row.speaks == str(FUTURE) and row.units == 0
            assert _incompatible_gauge(ours) == 1
            # a while later, after many anti-entropy rounds through bridge: still nothing of future's used
            sent_before = future.node.transport.counters.received_datagrams
            await wait_until(lambda: future.node.transport.counters.received_datagrams > sent_before + 20, 20,
                             "more gossip rounds")
            assert list(ours.node.state.items("future")) == []
            assert not [u for u in ours.campus_view().units if u.gateway_id == "future"]
            assert {m.gateway_id: m.status for m in ours.members()}["future"] == "incompatible"
            assert ours.node.versions.version_for("future", ours.node.boot_of("future")) is None
            # and future, likewise, lists ours as incompatible, while bridge sees both alive
            await wait_until(lambda: {m.gateway_id: m.status for m in future.members()}.get("ours")
                             == "incompatible", 20, "future to list ours as incompatible")
            assert {m.gateway_id: m.status for m in bridge.members()} == {
                "bridge": "alive", "ours": "alive", "future": "alive"}
            assert bridge.node.drops.get("version", 0) == 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_a_future_peer_writing_to_us_directly_is_dropped_as_version_and_listed_incompatible() -> None:
    """A gateway of a later range that knows us as its seed: its datagrams authenticate, their preamble
    says who wrote them and what it speaks, the body is never read (``version`` drops)."""
    key = new_key()

    async def scenario() -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            ours = await _service("ours", key, [], VersionRange(WIRE_MIN, WIRE_CURRENT, WIRE_CURRENT), tasks)
            future = await _service("future", key, [_seed(ours)], FUTURE, tasks)
            await wait_until(lambda: ours.node.drops.get("version", 0) >= 2, 20, "future's joins to be dropped")
            rows = {m.gateway_id: m for m in ours.members()}
            assert rows["future"].status == "incompatible" and rows["future"].speaks == str(FUTURE)
            assert rows["future"].address == _seed(future)
            assert ours.node.membership is not None and "future" not in ours.node.membership.members
            assert list(ours.node.state.items("future")) == []
            assert _incompatible_gauge(ours) == 1
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_the_opcua_campus_view_shows_an_incompatible_peer_with_no_units(tmp_path: Path) -> None:
    """A real OPC UA server fed by our campus view, a real client: the future peer's gateway node says
    ``incompatible`` and carries no units, while a compatible peer's units are there."""
    import structlog
    from asyncua import Client

    from bessgw.northbound.server import OpcUaServer
    from bessgw.unit.directory import UnitDirectory
    from tests.federation.run_node import unit
    from tests.federation.test_opcua_campus import NS_URI, Browser
    from tests.integration.test_opcua_server import make_settings

    key = new_key()

    async def scenario() -> None:
        tasks: list[asyncio.Task[None]] = []
        client: Client | None = None
        try:
            ours = await _service("ours", key, [], VersionRange(WIRE_MIN, WIRE_CURRENT, WIRE_CURRENT), tasks)
            peer = await _service("peer", key, [_seed(ours)], VersionRange(WIRE_MIN, WIRE_CURRENT, WIRE_CURRENT),
                                  tasks)
            future = await _service("future", key, [_seed(ours)], FUTURE, tasks)
            peer.source = lambda: [unit("p1")]
            future.source = lambda: [unit("f1")]
            settings = make_settings(tmp_path, security_policies=["None"], anonymous="read", sampling_interval_s=0.1)
            server = OpcUaServer(settings, "ours", UnitDirectory(), tmp_path / "state",
                                 structlog.get_logger("test-wire-opcua"), campus=ours.campus_view)
            tasks.append(asyncio.create_task(server.run(), name="opcua"))
            await asyncio.wait_for(server.started.wait(), 30)
            client = Client(server.endpoint_url, timeout=8)
            await asyncio.wait_for(client.connect(), 20)
            browse = Browser(client, await client.get_namespace_index(NS_URI))

            async def shown() -> bool:
                if await browse.names("Campus", "Gateways", "peer", "Units") != {"p1"}:
                    return False
                status = await browse.value("Campus", "Gateways", "future", "Status")
                return status.Value.Value == "incompatible"

            await wait_until(shown, 20, "peer's unit and future as incompatible in the address space", step_s=0.1)
            assert await browse.names("Campus", "Gateways", "future", "Units") == set()
            assert (await browse.value("Campus", "Gateways", "peer", "Status")).Value.Value == "alive"
        finally:
            if client is not None:
                await asyncio.wait_for(client.disconnect(), 10)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_nothing_is_written_to_an_incompatible_member_and_no_queued_update_is_spent_on_it() -> None:
    from bessgw.federation.node import GossipNode
    from bessgw.federation.wire import MemberUpdate, Message, MsgType, Status

    async def scenario() -> None:
        node = GossipNode("ours", fast_settings(new_key(), retransmit_mult=1))  # each update rides once
        await node.start()
        try:
            assert node.membership is not None
            node.membership.apply(MemberUpdate("future", "127.0.0.1", 9, 1, Status.ALIVE, "", 5))
            node.membership.apply(MemberUpdate("peer", "127.0.0.1", 10, 1, Status.ALIVE, "", 6))
            node.versions.learn("future", 5, FUTURE)
            assert node.incompatible("future") and not node.incompatible("peer")
            queued, sent = len(node.membership.queue), node.transport.counters.sent_datagrams
            assert queued > 0  # our own ``wire`` key and the two members' updates wait for a ride
            node._send("future", ("127.0.0.1", 9), Message(MsgType.PING, probe_seq=1))
            assert (len(node.membership.queue), node.transport.counters.sent_datagrams) == (queued, sent)
            node._send("peer", ("127.0.0.1", 10), Message(MsgType.PING, probe_seq=2))
            assert node.transport.counters.sent_datagrams == sent + 1 and node.sent_versions[WIRE_MIN] == 1
            assert len(node.membership.queue) < queued  # the peer's datagram did carry them
        finally:
            node.transport.close()

    asyncio.run(scenario())
