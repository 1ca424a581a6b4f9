"""The campus view in the OPC UA server: peers' gateways and units, and the campus aggregate.

Three in-process federation services on 127.0.0.1 (fast timing from conftest) and one real ``OpcUaServer``
whose campus provider is gateway A's ``campus_view``; a real asyncua client (None policy, anonymous read)
connected to A browses ``Campus/Gateways/<peer>/Units/<unit>`` and reads what the peers announce. Then a
peer crashes (cancelled without leaving): its units must turn Uncertain/Bad, never Good again, the
aggregate's GatewaysAlive drops, and once the dead peer is reaped its nodes disappear. Every wait polls a
condition with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from asyncua import Client, Node, ua

from bessgw.federation.view import CampusView
from bessgw.model import Quality
from bessgw.northbound.server import OpcUaServer
from bessgw.testing import wait_until
from bessgw.unit.directory import UnitDirectory
from tests.federation.conftest import Campus, new_key
from tests.federation.run_node import unit
from tests.integration.test_opcua_server import make_settings

pytestmark = pytest.mark.federation

NS_URI = "urn:bessgw:opcua"
WAIT_S = 15.0


class Browser:
    """The asyncua client's view of ``Objects/Campus``."""

    def __init__(self, client: Client, ns: int) -> None:
        self.client, self.ns = client, ns

    async def names(self, *path: str) -> set[str]:
        try:
            node = await self.client.nodes.objects.get_child([f"{self.ns}:{p}" for p in path])
            return {(await child.read_browse_name()).Name for child in await node.get_children()}
        except ua.UaStatusCodeError:  # the path is gone (or not there yet)
            return set()

    async def node(self, *path: str) -> Node:
        return await self.client.nodes.objects.get_child([f"{self.ns}:{p}" for p in path])

    async def value(self, *path: str) -> ua.DataValue:
        return await (await self.node(*path)).read_data_value(raise_on_bad_status=False)

    async def campus(self, name: str) -> Any:
        data = await self.value("Campus", name)
        return data.Value.Value if data.StatusCode.is_good() else None

    async def peer_unit(self, gateway_id: str, unit_id: str, name: str) -> ua.DataValue:
        return await self.value("Campus", "Gateways", gateway_id, "Units", unit_id, name)


def test_peer_units_and_campus_aggregate_follow_the_federation_view(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            a = await campus.add("gw-a", dead_reap_s=3.0)
            b = await campus.add("gw-b")
            c = await campus.add("gw-c")
            b_units = {"b1": 40.0, "b2": 70.0}
            # polled every publish interval: fresh timestamps, so the peers' data stays young while they run
            a.source = lambda: [unit("a1", soc_pct=55.0)]
            b.source = lambda: [unit(u, soc_pct=soc) for u, soc in b_units.items()]
            c.source = lambda: [unit("c1", soc_pct=20.0, state="standby")]
            await wait_until(lambda: len(a.campus_view().units) == 4 and a.campus_view().aggregate.gateways_alive == 3,
                             WAIT_S, "gateway A to see all four units and three gateways alive")

            federation_on = True
            override: list[CampusView] = []  # a hand-made view, to pin down the Stale → Uncertain mapping

            def provider() -> CampusView | None:
                if override:
                    return override[0]
                return a.campus_view() if federation_on else None

            settings = make_settings(tmp_path, security_policies=["None"], anonymous="read", sampling_interval_s=0.1)
            server = OpcUaServer(settings, "gw-a", UnitDirectory(), tmp_path / "state",
                                 structlog.get_logger("test-opcua-campus"), campus=provider)
            server_task = asyncio.create_task(server.run(), name="opcua")
            client: Client | None = None
            try:
                await asyncio.wait_for(server.started.wait(), 30)
                client = Client(server.endpoint_url, timeout=8)
                await asyncio.wait_for(client.connect(), 20)
                ns = await client.get_namespace_index(NS_URI)
                browse = Browser(client, ns)
                await exercise(browse, campus, b_units)
                # stale data (old, or from a suspected peer) is Uncertain with its last value, never Good
                view = a.campus_view()
                b1 = next(u for u in view.units if u.summary.unit_id == "b1")
                stale = replace(b1, quality=Quality.STALE, age_s=30.0, reason="data 30 s old")
                override.append(replace(view, units=tuple(stale if u is b1 else u for u in view.units)))

                async def b1_uncertain() -> bool:
                    data = await browse.peer_unit("gw-b", "b1", "SocPct")
                    return data.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue

                await wait_until(b1_uncertain, WAIT_S, "b1 to turn Uncertain", step_s=0.05)
                assert (await browse.peer_unit("gw-b", "b1", "SocPct")).Value.Value == pytest.approx(40.0)
                assert (await browse.peer_unit("gw-b", "b1", "DataAgeS")).Value.Value == pytest.approx(30.0)
                assert (await browse.peer_unit("gw-b", "b1", "QualityReason")).Value.Value == "data 30 s old"
                override.clear()
                # federation stops (a reload turned it off): the peers go, the aggregate is Bad (waiting)
                federation_on = False
                await wait_until(lambda: _only_own(browse), WAIT_S, "peers to go with the view", step_s=0.05)
                agg = await browse.value("Campus", "GatewaysAlive")
                assert agg.StatusCode.is_bad()
            finally:
                if client is not None:
                    await asyncio.wait_for(client.disconnect(), 10)
                server_task.cancel()
                await asyncio.gather(server_task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 60))


async def _only_own(browse: Browser) -> bool:
    return await browse.names("Campus", "Gateways") == {"gw-a"}


async def exercise(browse: Browser, campus: Campus, b_units: dict[str, float]) -> None:
    # every peer's units appear, each under its own gateway; our own gateway is not duplicated
    await wait_until(lambda: _peers_shown(browse), WAIT_S, "both peers and their units in the address space",
                     step_s=0.05)
    assert await browse.names("Campus", "Gateways") == {"gw-a", "gw-b", "gw-c"}
    assert await browse.names("Campus", "Gateways", "gw-a", "Units") == set()  # a1 is A's own (directory) unit

    soc = await browse.peer_unit("gw-b", "b2", "SocPct")
    assert soc.StatusCode.is_good() and soc.Value.Value == pytest.approx(70.0)
    age_now = dt.datetime.now(dt.timezone.utc)
    assert soc.SourceTimestamp is not None
    assert abs((age_now - soc.SourceTimestamp.replace(tzinfo=dt.timezone.utc)).total_seconds()) < 5.0
    assert (await browse.peer_unit("gw-c", "c1", "State")).Value.Value == "standby"
    assert (await browse.peer_unit("gw-b", "b1", "AvailableDischargeKw")).Value.Value == pytest.approx(500.0)
    assert (await browse.peer_unit("gw-b", "b1", "EnergyKwh")).Value.Value == pytest.approx(1000.0)
    age = await browse.peer_unit("gw-b", "b1", "DataAgeS")
    assert age.StatusCode.is_good() and 0.0 <= age.Value.Value < 2.0
    assert (await browse.value("Campus", "Gateways", "gw-c", "Status")).Value.Value == "alive"

    # read-only: a peer's unit offers no SetPower (nor ResetFault), and its values are not writable
    children = await browse.names("Campus", "Gateways", "gw-b", "Units", "b1")
    assert "SocPct" in children and "SetPower" not in children and "ResetFault" not in children
    access = await (await browse.node("Campus", "Gateways", "gw-b", "Units", "b1", "SocPct")).read_attribute(
        ua.AttributeIds.AccessLevel)
    assert not access.Value.Value & ua.AccessLevel.CurrentWrite.mask

    # the campus-wide aggregate: four units of 500 kW each, 3 gateways alive
    await wait_until(lambda: _campus_is(browse, "GatewaysAlive", 3), WAIT_S, "GatewaysAlive = 3", step_s=0.05)
    assert await browse.campus("UnitCount") == 4
    assert await browse.campus("AvailableDischargeKw") == pytest.approx(2000.0)
    assert await browse.campus("MeanSocPct") == pytest.approx((55.0 + 40.0 + 70.0 + 20.0) / 4)
    assert await browse.campus("UnitsRunning") == 3 and await browse.campus("UnitsStandby") == 1

    # a tombstoned unit disappears
    del b_units["b2"]
    await wait_until(lambda: _names_are(browse, ("Campus", "Gateways", "gw-b", "Units"), {"b1"}), WAIT_S,
                     "b2 to disappear")

    # gw-c crashes: c1 goes Uncertain/Bad and never back to Good; GatewaysAlive drops; then it is reaped
    await campus.stop("gw-c", crash=True)
    statuses: list[ua.StatusCode] = []

    async def c1_is_bad() -> bool:
        data = await browse.peer_unit("gw-c", "c1", "SocPct")
        statuses.append(data.StatusCode)
        return data.StatusCode.is_bad()

    await wait_until(c1_is_bad, WAIT_S, "c1 to turn Bad once gw-c is declared dead", step_s=0.05)
    first_not_good = next(i for i, status in enumerate(statuses) if not status.is_good())
    assert not any(status.is_good() for status in statuses[first_not_good:]), statuses
    assert (await browse.peer_unit("gw-c", "c1", "QualityReason")).Value.Value.startswith("gateway dead")
    assert (await browse.value("Campus", "Gateways", "gw-c", "Status")).Value.Value == "dead"
    assert await browse.campus("GatewaysAlive") == 2 and await browse.campus("GatewaysDead") == 1
    assert await browse.campus("AvailableDischargeKw") == pytest.approx(1000.0)  # a1 and b1: the Good ones
    # the live peer is unaffected
    assert (await browse.peer_unit("gw-b", "b1", "SocPct")).StatusCode.is_good()

    await wait_until(lambda: _names_are(browse, ("Campus", "Gateways"), {"gw-a", "gw-b"}), WAIT_S,
                     "the dead peer to be reaped from the address space")


async def _peers_shown(browse: Browser) -> bool:
    return (await browse.names("Campus", "Gateways", "gw-b", "Units") == {"b1", "b2"}
            and await browse.names("Campus", "Gateways", "gw-c", "Units") == {"c1"})


async def _names_are(browse: Browser, path: tuple[str, ...], expected: set[str]) -> bool:
    return await browse.names(*path) == expected


async def _campus_is(browse: Browser, name: str, expected: Any) -> bool:
    return await browse.campus(name) == expected


def test_daemon_wires_the_campus_provider_to_the_running_federation_service(tmp_path: Path) -> None:
    """``_build_opcua`` hands the server a provider that follows ``gateway.services.federation``."""
    from types import SimpleNamespace

    from bessgw.config import parse_config
    from bessgw.daemon.services import RunningService, Services, _build_opcua

    config = parse_config({"gateway": {"id": "gw-a", "state_dir": str(tmp_path)},
                           "northbound": {"opcua": {"enabled": True,
                                                    "endpoint": "opc.tcp://127.0.0.1:0/bessgw"}}})
    gateway = SimpleNamespace(services=Services(), directory=UnitDirectory(), log=structlog.get_logger("test"))
    server = _build_opcua(gateway, config)  # type: ignore[arg-type]
    assert isinstance(server, OpcUaServer) and server.campus is not None
    assert server.campus() is None  # federation not running
    view = object()
    gateway.services.running["federation"] = RunningService("", SimpleNamespace(campus_view=lambda: view), None)  # type: ignore[arg-type]
    assert server.campus() is view
