"""The northbound OPC UA server with real asyncua clients on loopback.

One gateway (``OpcUaServer`` over three in-memory units of the docs example) runs for the whole module
in a background thread with its own event loop, as the daemon would run it; every test connects its own
asyncua client(s) over Basic256Sha256, so tests stay independent while asyncua starts only once.
Waiting is done on subscriptions (data-change notifications) or events, always with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from bessgw.compat import timeout
from bessgw.config import ControlSection, OpcUaSettings, OpcUaUser, UnitDefaults
from bessgw.control.service import ControlService
from bessgw.errors import DeviceTimeoutError
from bessgw.model import SiteLimits
from bessgw.northbound.certificates import CertificateFiles, ensure_certificate
from bessgw.northbound.passwords import hash_password
from bessgw.northbound.server import OpcUaServer
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager
from bessgw.unit.directory import UnitDirectory
from bessgw.unit.supervisor import UnitSupervisor
from tests.ports import free_tcp_port

pytestmark = pytest.mark.integration

TIMING = UnitDefaults(poll_interval_s=0.05, stale_after_s=0.4, bad_after_s=1.2, heartbeat_interval_s=0.5)
GATEWAY = "gw-test"
PASSWORDS = {"vera": "viewer-pass", "otto": "operator-pass", "ada": "admin-pass"}
ROLES = {"vera": "viewer", "otto": "operator", "ada": "admin"}
WAIT_S = 10.0



def client_certificate(directory: Path, name: str) -> tuple[CertificateFiles, str]:
    uri = f"urn:bessgw-test:{name}"
    files = ensure_certificate(CertificateFiles(directory / f"{name}.der", directory / f"{name}.pem"), uri,
                               f"test {name}", client=True, hostnames=("localhost",))
    return files, uri


class Gateway:
    """Units + directory + OpcUaServer on an event loop in a background thread."""

    def __init__(self, tmp: Path, settings: OpcUaSettings, unit_ids: tuple[str, ...]) -> None:
        self.tmp = tmp
        self.settings = settings
        self.unit_ids = unit_ids
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="opcua-gateway", daemon=True)
        self.directory = UnitDirectory()
        self.supervisors: dict[str, UnitSupervisor] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.server: OpcUaServer | None = None
        self.control: ControlService | None = None

    def call(self, coro: Any, timeout_s: float = WAIT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def start(self) -> None:
        self.thread.start()
        self.call(self._start(), timeout_s=60)

    async def _start(self) -> None:
        from bessgw_example import InMemoryBattery

        class FreezableBattery(InMemoryBattery):
            """The docs example battery, plus a switch that makes its link time out."""

            frozen = False
            alarm: str | None = None

            async def read(self):
                if self.frozen:
                    raise DeviceTimeoutError("test froze the link")
                telemetry = await super().read()
                if self.alarm:
                    telemetry = replace(telemetry, alarms=1, alarm_names=frozenset({self.alarm}))
                return telemetry

        pm = build_plugin_manager(modules=["bessgw_example"])
        registry = pm.collect()
        self.spec = registry.drivers["in_memory"]
        self.chemistries = registry.chemistries
        self.battery_class = FreezableBattery
        for unit_id in self.unit_ids:
            self.add_unit(unit_id)
        # commands go through the one command path: a control plane over the units present at start
        self.control = ControlService(ControlSection(period_s=0.05), list(self.supervisors.values()),
                                      self.tmp / "state", structlog.get_logger("test-control"))
        self.control_task = asyncio.get_running_loop().create_task(self.control.run())
        self.server = OpcUaServer(self.settings, GATEWAY, self.directory, self.tmp / "state",
                                  structlog.get_logger("test-opcua"), control=lambda: self.control)
        self.server_task = asyncio.get_running_loop().create_task(self.server.run())
        waiter = asyncio.ensure_future(self.server.started.wait())
        done, _ = await asyncio.wait({waiter, self.server_task}, timeout=45, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self.server_task.done():
                self.server_task.result()
            raise TimeoutError("OPC UA server did not start")
        for supervisor in self.supervisors.values():  # every unit negotiated before the tests look
            while supervisor.limits is None:
                await supervisor.wait_update(WAIT_S)

    def add_unit(self, unit_id: str) -> UnitSupervisor:
        options = self.spec.unit_options(energy_kwh=1000, power_kw=500, soc_pct=60)
        driver = self.battery_class(DriverContext(unit_id=unit_id, link=None, options=options))
        supervisor = UnitSupervisor(unit_id, driver, self.spec, TIMING, SiteLimits(), self.chemistries,
                                    log=structlog.get_logger("test-unit"), reconnect_min_s=0.2,
                                    reconnect_max_s=0.5)
        self.supervisors[unit_id] = supervisor
        self.tasks[unit_id] = asyncio.get_running_loop().create_task(supervisor.run())
        self.directory.add(supervisor)
        return supervisor

    async def remove_unit(self, unit_id: str) -> None:
        self.directory.remove(unit_id)
        task = self.tasks.pop(unit_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.supervisors.pop(unit_id)

    async def _add_unit_async(self, unit_id: str) -> None:
        supervisor = self.add_unit(unit_id)
        while supervisor.limits is None:
            await supervisor.wait_update(WAIT_S)

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [self.server_task, self.control_task, *self.tasks.values()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=8)
            # the daemon relies on this: cancelled, the server is gone within its bounded stop time
            assert self.server_task.done() and self.server_task.cancelled()

        try:
            self.call(shutdown(), timeout_s=15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.endpoint_url

    def driver(self, unit_id: str) -> Any:
        return self.supervisors[unit_id]._driver


async def eventually(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait (bounded) until ``predicate()`` holds: control writes on its next step, after the ramp."""
    async with timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


def make_settings(tmp: Path, **overrides: Any) -> OpcUaSettings:
    users = [OpcUaUser(name=name, password_hash=hash_password(PASSWORDS[name]), role=role)
             for name, role in ROLES.items()]
    values: dict[str, Any] = dict(
        enabled=True, endpoint=f"opc.tcp://127.0.0.1:{free_tcp_port()}/bessgw", users=users,
        sampling_interval_s=0.05, max_subscriptions_per_session=3, session_idle_timeout_s=30,
    )
    values.update(overrides)
    return OpcUaSettings(**values)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    tmp = tmp_path_factory.mktemp("opcua")
    certs = tmp / "clients"
    trusted, _ = client_certificate(certs, "trusted")
    (tmp / "state" / "pki" / "trusted").mkdir(parents=True)
    shutil.copy(trusted.certificate, tmp / "state" / "pki" / "trusted" / "trusted.der")
    gw = Gateway(tmp, make_settings(tmp), ("mem-1", "mem-2", "mem-3"))
    gw.start()
    yield gw
    gw.stop()


@asynccontextmanager
async def connect(gw: Gateway, user: str | None = "otto", cert: str = "trusted",
                  mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt):
    files, uri = client_certificate(gw.tmp / "clients", cert)
    client = Client(gw.url, timeout=8)
    client.application_uri = uri
    client.session_timeout = 30_000
    await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(files.certificate),
                              private_key=str(files.private_key), mode=mode)
    if user is not None:
        client.set_user(user)
        client.set_password(PASSWORDS[user])
    async with timeout(20):
        await client.connect()
    try:
        yield client
    finally:
        await asyncio.wait_for(client.disconnect(), 10)


async def unit_node(client: Client, unit_id: str):
    ns = await client.get_namespace_index("urn:bessgw:opcua")
    return await client.nodes.objects.get_child(
        [f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}", f"{ns}:Units", f"{ns}:{unit_id}"])


class Watch:
    """Data-change notifications of one variable, to wait on instead of polling."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ua.DataValue] = asyncio.Queue()

    def datachange_notification(self, node, val, data) -> None:
        self.queue.put_nowait(data.monitored_item.Value)

    def status_change_notification(self, status) -> None:
        pass  # the subscription ending at disconnect is expected

    async def until(self, predicate: Callable[[ua.DataValue], bool], timeout_s: float = WAIT_S) -> ua.DataValue:
        async with timeout(timeout_s):
            while True:
                value = await self.queue.get()
                if predicate(value):
                    return value


@asynccontextmanager
async def watching(client: Client, node):
    watch = Watch()
    subscription = await client.create_subscription(20, watch)
    await subscription.subscribe_data_change(node)
    try:
        yield watch
    finally:
        await subscription.delete()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------------------------------------ model


def test_browse_model_types_units_and_ranges(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway) as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            base = client.nodes.base_object_type
            unit_type = await base.get_child(f"{ns}:BatteryUnitType")
            gateway_type = await base.get_child(f"{ns}:GatewayType")
            assert {(await c.read_browse_name()).Name for c in await gateway_type.get_children()} >= {
                "SetPower", "Units", "UnitCount", "AvailableDischargeKw"}
            unit = await unit_node(client, "mem-1")
            assert (await unit.read_type_definition()) == unit_type.nodeid
            names = {(await c.read_browse_name()).Name for c in await unit.get_children()}
            assert {"SocPct", "PowerKw", "SetPower", "PowerSetpointKw", "Chemistry", "AlarmNames"} <= names

            soc = await unit.get_child(f"{ns}:SocPct")
            assert (await soc.read_type_definition()) == ua.NodeId(ua.ObjectIds.AnalogItemType)
            eu = await (await soc.get_child("0:EngineeringUnits")).read_value()
            assert eu.UnitId == (ord("P") << 8 | ord("1")) and eu.DisplayName.Text == "%"
            assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
            rng = await (await soc.get_child("0:EURange")).read_value()
            assert (rng.Low, rng.High) == (0.0, 100.0)
            # the power range is the unit's own nameplate (500 kW each way), written once it identified
            power_range = await unit.get_child([f"{ns}:PowerKw", "0:EURange"])
            async with watching(client, power_range) as watch:
                await watch.until(lambda v: v.Value is not None and isinstance(v.Value.Value, ua.Range)
                                  and (v.Value.Value.Low, v.Value.Value.High) == (-500.0, 500.0))
            assert await (await unit.get_child(f"{ns}:Chemistry")).read_value() == "lfp"
            assert await (await unit.get_child(f"{ns}:NameplateDischargeKw")).read_value() == 500.0

    run(scenario())


def test_read_unit_values_with_good_status_and_source_time(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway) as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-2")
            soc = await unit.get_child(f"{ns}:SocPct")
            async with watching(client, soc) as watch:
                value = await watch.until(lambda v: v.StatusCode.is_good())
            telemetry = gateway.supervisors["mem-2"].telemetry
            assert value.Value.Value == pytest.approx(telemetry.soc_pct, abs=0.5)
            age = dt.datetime.now(dt.timezone.utc) - value.SourceTimestamp.replace(tzinfo=dt.timezone.utc)
            assert dt.timedelta(0) <= age < dt.timedelta(seconds=5)
            state = await (await unit.get_child(f"{ns}:State")).read_data_value()
            assert state.Value.Value == "running" and state.StatusCode.is_good()
            limit = await (await unit.get_child(f"{ns}:MaxDischargeKw")).read_value()
            assert limit == pytest.approx(gateway.supervisors["mem-2"].limits.max_discharge_kw)

    run(scenario())


# --------------------------------------------------------------------------------- commands


def test_set_power_writes_the_driver_and_is_idempotent_by_command_id(gateway: Gateway) -> None:
    driver = gateway.driver("mem-1")

    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-1")
            power = await unit.get_child(f"{ns}:PowerKw")
            async with watching(client, power) as watch:
                result = await unit.call_method(f"{ns}:SetPower", 120.0, 0.0, "cmd-setpower-1")
                assert result == [120.0, 0.0]
                await eventually(lambda: driver.p_kw == 120.0)  # through control: envelope and ramp
                # the subscribed client sees the unit deliver it
                await watch.until(lambda v: v.StatusCode.is_good() and v.Value.Value == 120.0)
            setpoint = await (await unit.get_child(f"{ns}:PowerSetpointKw")).read_value()
            assert setpoint == 120.0

            driver.p_kw = 0.0  # someone else changed it: a repeated command must not write again
            again = await unit.call_method(f"{ns}:SetPower", 120.0, 0.0, "cmd-setpower-1")
            assert again == [120.0, 0.0] and driver.p_kw == 0.0
            with pytest.raises(ua.uaerrors.BadInvalidArgument):
                await unit.call_method(f"{ns}:SetPower", 50.0, 0.0, "cmd-setpower-1")
            assert driver.p_kw == 0.0

    run(scenario())


def test_set_power_out_of_range_is_refused_not_clamped(gateway: Gateway) -> None:
    driver = gateway.driver("mem-2")

    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-2")
            before = driver.p_kw
            with pytest.raises(ua.uaerrors.BadOutOfRange):
                await unit.call_method(f"{ns}:SetPower", 5000.0, 0.0, "cmd-range-1")
            with pytest.raises(ua.uaerrors.BadOutOfRange):
                await unit.call_method(f"{ns}:SetPower", 0.0, 10.0, "cmd-range-2")  # unit offers no kvar
            assert driver.p_kw == before

    run(scenario())


def test_writing_the_setpoint_variable_commands_the_unit(gateway: Gateway) -> None:
    driver = gateway.driver("mem-3")

    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-3")
            setpoint = await unit.get_child(f"{ns}:PowerSetpointKw")
            await setpoint.write_value(ua.DataValue(ua.Variant(-80.0, ua.VariantType.Double)))
            await eventually(lambda: driver.p_kw == -80.0)
            with pytest.raises(ua.uaerrors.BadOutOfRange):
                await setpoint.write_value(ua.DataValue(ua.Variant(-9000.0, ua.VariantType.Double)))
            assert driver.p_kw == -80.0
            # measured values are not writable by anyone
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await unit.get_child(f"{ns}:SocPct")).write_value(
                    ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))

    run(scenario())


def test_gateway_set_power_shares_across_units(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            gw = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}"])
            units = [gateway.supervisors[u] for u in ("mem-1", "mem-2", "mem-3")]
            total = sum(s.limits.max_discharge_kw for s in units)
            result = await gw.call_method(f"{ns}:SetPower", 90.0, 0.0, "cmd-gateway-1")
            assert result[0] == pytest.approx(90.0)
            entry = gateway.control.journal.get("cmd-gateway-1")  # journaled before it was acknowledged
            assert entry is not None and entry.principal == "opcua:otto" and entry.source == "scada"
            # the units not overridden by unit commands share the target (SOC-balanced, within limits)
            free = [s for s in units if s.unit_id not in gateway.control.loop.overrides]
            await eventually(lambda: sum(s._driver.p_kw for s in free) == pytest.approx(90.0))
            with pytest.raises(ua.uaerrors.BadOutOfRange):
                await gw.call_method(f"{ns}:SetPower", total + 1.0, 0.0, "cmd-gateway-2")

    run(scenario())


# ----------------------------------------------------------------------------------- quality


def test_stale_shows_uncertain_then_bad_with_the_data_timestamp(gateway: Gateway) -> None:
    supervisor = gateway.supervisors["mem-3"]

    async def scenario() -> None:
        async with connect(gateway, "vera") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            soc = await (await unit_node(client, "mem-3")).get_child(f"{ns}:SocPct")
            async with watching(client, soc) as watch:
                await watch.until(lambda v: v.StatusCode.is_good())
                supervisor._driver.frozen = True
                try:
                    uncertain = await watch.until(lambda v: v.StatusCode.is_uncertain())
                    assert uncertain.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
                    last_good = supervisor.last_good
                    assert last_good is not None
                    expected = dt.datetime.fromtimestamp(last_good.timestamp, dt.timezone.utc)
                    assert _utc(uncertain.SourceTimestamp) == pytest.approx(expected, abs=dt.timedelta(milliseconds=1))
                    assert uncertain.Value.Value == pytest.approx(last_good.soc_pct)
                    bad = await watch.until(lambda v: v.StatusCode.is_bad())
                    assert _utc(bad.SourceTimestamp) == pytest.approx(expected, abs=dt.timedelta(milliseconds=1))
                finally:
                    supervisor._driver.frozen = False
                good = await watch.until(lambda v: v.StatusCode.is_good())
                assert _utc(good.SourceTimestamp) > expected

    run(scenario())


def test_read_returns_the_published_status_value_and_both_timestamps(gateway: Gateway) -> None:
    """The publisher stores DataValues straight into the address space: a Read must see exactly them."""
    supervisor = gateway.supervisors["mem-1"]

    async def scenario() -> None:
        async with connect(gateway, "vera") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-1")
            soc, state, names = [await unit.get_child(f"{ns}:{name}") for name in ("SocPct", "State", "AlarmNames")]
            async with watching(client, soc) as watch:
                await watch.until(lambda v: v.StatusCode.is_good())
                read = await soc.read_data_value()
                assert read.StatusCode.value == ua.StatusCodes.Good
                assert read.Value.VariantType == ua.VariantType.Double
                assert read.SourceTimestamp is not None and read.ServerTimestamp is not None
                # the source time is the measurement's, the server time when it was published: not before it
                assert _utc(read.ServerTimestamp) >= _utc(read.SourceTimestamp) - dt.timedelta(milliseconds=1)
                assert _utc(read.ServerTimestamp) - _utc(read.SourceTimestamp) < dt.timedelta(seconds=5)
                text = await state.read_data_value()
                assert (text.Value.VariantType, text.Value.Value) == (ua.VariantType.String, "running")
                listed = await names.read_data_value()
                assert listed.Value.VariantType == ua.VariantType.String and listed.Value.is_array
                supervisor._driver.frozen = True
                try:
                    await watch.until(lambda v: v.StatusCode.is_bad(), timeout_s=WAIT_S)
                    bad = await soc.read_data_value(raise_on_bad_status=False)
                    assert bad.StatusCode.is_bad()
                    assert bad.Value is None or bad.Value.Value is None  # Bad carries no value (Part 4, 7.7.1)
                    assert bad.SourceTimestamp is not None and bad.ServerTimestamp is not None
                finally:
                    supervisor._driver.frozen = False
                await watch.until(lambda v: v.StatusCode.is_good())

    run(scenario())


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


# ------------------------------------------------------------------------------------ reload


def test_units_appear_and_disappear_with_the_directory(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway, "vera") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            gw = await client.nodes.objects.get_child(
                [f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}", f"{ns}:Units"])
            count = await (await gw.get_parent()).get_child(f"{ns}:UnitCount")
            async with watching(client, count) as watch:
                await watch.until(lambda v: v.Value.Value == 3)
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                    gateway._add_unit_async("mem-new"), gateway.loop))
                await watch.until(lambda v: v.Value.Value == 4)
                names = {(await c.read_browse_name()).Name for c in await gw.get_children()}
                assert "mem-new" in names
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                    gateway.remove_unit("mem-new"), gateway.loop))
                await watch.until(lambda v: v.Value.Value == 3)
            names = {(await c.read_browse_name()).Name for c in await gw.get_children()}
            assert "mem-new" not in names and "mem-1" in names

    run(scenario())


# ---------------------------------------------------------------------------------- security


def test_endpoints_offer_basic256sha256_only_without_none(gateway: Gateway) -> None:
    async def scenario() -> None:
        client = Client(gateway.url, timeout=8)
        endpoints = await asyncio.wait_for(client.connect_and_get_server_endpoints(), 15)
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert offered == {("Basic256Sha256", ua.MessageSecurityMode.Sign),
                           ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt)}
        for endpoint in endpoints:  # user name only: anonymous is off by default
            assert {t.TokenType for t in endpoint.UserIdentityTokens} == {ua.UserTokenType.UserName}

    run(scenario())


def test_anonymous_is_refused_by_default(gateway: Gateway) -> None:
    async def scenario() -> None:
        with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
            async with connect(gateway, user=None):
                pass

    run(scenario())


def test_wrong_password_is_refused(gateway: Gateway) -> None:
    async def scenario() -> None:
        files, uri = client_certificate(gateway.tmp / "clients", "trusted")
        client = Client(gateway.url, timeout=8)
        client.application_uri = uri
        await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(files.certificate),
                                  private_key=str(files.private_key), mode=ua.MessageSecurityMode.SignAndEncrypt)
        client.set_user("otto")
        client.set_password("not-the-password")
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.connect()
        await asyncio.wait_for(client.disconnect(), 10)

    run(scenario())


def test_untrusted_client_certificate_is_rejected_into_rejected_dir(gateway: Gateway) -> None:
    pki = gateway.tmp / "state" / "pki"

    async def attempt() -> None:
        async with connect(gateway, "otto", cert="stranger") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            assert await (await unit_node(client, "mem-1")).get_child(f"{ns}:SocPct")

    with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
        run(attempt())
    rejected = list((pki / "rejected").glob("test stranger *.der"))
    assert len(rejected) == 1
    # the admin's remedy: move it to trusted/ — no restart needed
    shutil.move(rejected[0], pki / "trusted" / rejected[0].name)
    run(attempt())


def test_viewer_reads_but_cannot_command(gateway: Gateway) -> None:
    driver = gateway.driver("mem-2")

    async def scenario() -> None:
        async with connect(gateway, "vera") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-2")
            assert 0.0 <= await (await unit.get_child(f"{ns}:SocPct")).read_value() <= 100.0
            before = driver.p_kw
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await unit.call_method(f"{ns}:SetPower", 42.0, 0.0, "cmd-viewer-1")
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await unit.get_child(f"{ns}:PowerSetpointKw")).write_value(
                    ua.DataValue(ua.Variant(42.0, ua.VariantType.Double)))
            assert driver.p_kw == before
        async with connect(gateway, "otto") as client:  # the same command id works for an operator
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-2")
            assert await unit.call_method(f"{ns}:SetPower", 42.0, 0.0, "cmd-viewer-1") == [42.0, 0.0]
            assert driver.p_kw == 42.0

    run(scenario())


def test_only_admin_may_reset_faults(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await unit_node(client, "mem-1")).call_method(f"{ns}:ResetFault")
        async with connect(gateway, "ada") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            # the in-memory example driver has no remote reset: the admin gets past the role check to that
            with pytest.raises(ua.uaerrors.BadNotSupported):
                await (await unit_node(client, "mem-1")).call_method(f"{ns}:ResetFault")

    run(scenario())


def test_subscriptions_per_session_are_limited(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway, "vera", mode=ua.MessageSecurityMode.Sign) as client:
            handler = Watch()
            subscriptions = [await client.create_subscription(100, handler) for _ in range(3)]
            with pytest.raises(ua.uaerrors.BadTooManySubscriptions):
                await client.create_subscription(100, handler)
            for subscription in subscriptions:
                await subscription.delete()

    run(scenario())


# ------------------------------------------------------------------------------------ alarms


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def event_notification(self, event: Any) -> None:
        self.queue.put_nowait(event)

    def status_change_notification(self, status) -> None:
        pass

    async def next_for(self, unit_id: str) -> Any:
        async with timeout(WAIT_S):
            while True:
                event = await self.queue.get()
                if event.SourceName == unit_id:
                    return event


def test_alarms_are_variables_and_events(gateway: Gateway) -> None:
    driver = gateway.driver("mem-1")

    async def scenario() -> None:
        async with connect(gateway, "vera") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            gw = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}"])
            event_type = await client.nodes.base_event_type.get_child(f"{ns}:UnitAlarmEventType")
            events = Events()
            subscription = await client.create_subscription(20, events)
            await subscription.subscribe_events(gw, event_type)
            active = await (await unit_node(client, "mem-1")).get_child(f"{ns}:AlarmActive")
            try:
                async with watching(client, active) as watch:
                    await watch.until(lambda v: v.StatusCode.is_good() and v.Value.Value is False)
                    driver.alarm = "CELL_OVER_TEMP"
                    raised = await events.next_for("mem-1")
                    assert (raised.AlarmName, raised.Active, raised.Severity) == ("CELL_OVER_TEMP", True, 700)
                    assert "raised" in raised.Message.Text
                    await watch.until(lambda v: v.Value.Value is True)
                    names = await (await unit_node(client, "mem-1")).get_child(f"{ns}:AlarmNames")
                    assert await names.read_value() == ["CELL_OVER_TEMP"]
                    driver.alarm = None
                    cleared = await events.next_for("mem-1")
                    assert (cleared.AlarmName, cleared.Active) == ("CELL_OVER_TEMP", False)
                    await watch.until(lambda v: v.Value.Value is False)
            finally:
                driver.alarm = None
                await subscription.delete()

    run(scenario())
