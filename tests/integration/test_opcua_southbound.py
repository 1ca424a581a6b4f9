"""The OPC UA southbound transport end to end: vendor_b simulator ↔ OpcUaTransport ↔ driver ↔ UnitSupervisor.

One simulator (two containers, real asyncua servers on 127.0.0.1) is shared by the module's tests and its
fault knobs are reset after each test; every test runs its own gateway (its own client session) in a fresh
event loop, so tests do not depend on each other's sessions.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from bessgw.config import OpcUaDeviceLink, parse_config
from bessgw.errors import ConfigError, DeviceProtocolError, DeviceTimeoutError
from bessgw.model import Quality, Setpoint, UnitState
from bessgw.plugin import DriverContext
from bessgw.southbound.opcua.transport import OpcUaTransport
from bessgw.southbound.transport import build_transport
from bessgw.testing import RecordingLog, installed_plugins, wait_until
from tests.plugins.vendor_b.harness import Gateway, SimulatorThread, gateway_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim_thread():
    thread = SimulatorThread(count=2, tick_s=0.05)
    yield thread
    thread.close()


@pytest.fixture
def sim(sim_thread):
    yield sim_thread
    sim_thread.reset_knobs()


def run(coroutine, timeout_s: float = 30.0):
    return asyncio.run(asyncio.wait_for(coroutine, timeout_s))


def _good(t) -> bool:
    return t.quality is Quality.GOOD


def test_transport_is_registered_by_name(sim):
    transport = build_transport("opcua", parse_config(gateway_config(sim.sim)), RecordingLog())
    assert isinstance(transport, OpcUaTransport)


def test_telemetry_arrives_by_subscription_not_polling(sim):
    async def scenario():
        async with Gateway(gateway_config(sim.sim)) as gw:
            first = await gw.wait_for("b0", _good, 15.0)
            seen = {first.extra["sequence"]}
            await gw.wait_for("b0", lambda t: seen.add(t.extra["sequence"]) or len(seen) >= 5, 5.0)
            endpoint = gw.endpoint("b0")
            return first, endpoint.reads, endpoint.notifications, len(seen)

    first, reads, notifications, distinct = run(scenario())
    assert first.soc_pct == pytest.approx(50.0, abs=1.0) and first.state is UnitState.STANDBY
    assert first.extra["pump_running"] == 0.0 and math.isfinite(first.extra["electrolyte_temp_c"])
    # the identity block is the only read request; the changing values came by subscription
    assert reads == 1
    assert distinct >= 5 and notifications >= distinct


def test_set_power_and_start_reach_the_simulator(sim):
    async def scenario():
        async with Gateway(gateway_config(sim.sim, indexes=(1,))) as gw:
            supervisor = gw.supervisors["b1"]
            await gw.wait_for("b1", _good, 15.0)
            await supervisor.set_running(True)
            written = await supervisor.apply(Setpoint(p_kw=80.0, q_kvar=5.0, command_id="t-1"))
            running = await gw.wait_for("b1", lambda t: t.state is UnitState.RUNNING and t.p_kw == 80.0, 5.0)
            heartbeat = await sim.acall(sim.sim.control_value(1, "HeartbeatCounter"))
            await supervisor.apply(Setpoint(p_kw=0.0, q_kvar=0.0, command_id="t-2"))
            await supervisor.set_running(False)
            return written, running, heartbeat

    written, running, heartbeat = run(scenario())
    container = sim.sim.containers[1]
    assert written.p_kw == 80.0 and container.set_power_calls >= 2
    assert running.q_kvar == 5.0 and running.extra["pump_running"] == 1.0 and running.soc_pct < 50.0
    assert heartbeat >= 1  # the driver's heartbeat writes reach the controller's variable


def test_stale_then_bad_when_publishing_stops_and_good_again_after(sim):
    async def scenario():
        async with Gateway(gateway_config(sim.sim)) as gw:
            await gw.wait_for("b0", _good, 15.0)
            sim.do(lambda: setattr(sim.sim, "frozen", True))
            frozen_at = (await gw.wait_for("b0", _good, 2.0)).timestamp
            stale = await gw.wait_for("b0", lambda t: t.quality is Quality.STALE, 5.0)
            bad = await gw.wait_for("b0", lambda t: t.quality is Quality.BAD, 5.0)
            connected = gw.supervisors["b0"].connected
            sim.do(lambda: setattr(sim.sim, "frozen", False))
            good = await gw.wait_for("b0", _good, 5.0)
            return frozen_at, stale, bad, connected, good

    frozen_at, stale, bad, connected, good = run(scenario())
    # the timestamp is the controller's last source timestamp, not the time of reading
    assert stale.timestamp <= frozen_at + 0.5 and bad.timestamp == stale.timestamp
    assert "old" in stale.quality_reason
    assert connected  # the session stayed up: only the data aged
    assert good.timestamp > bad.timestamp


def test_reconnects_after_simulator_restart_with_subscriptions_restored(sim):
    async def scenario():
        async with Gateway(gateway_config(sim.sim)) as gw:
            await gw.wait_for("b0", _good, 15.0)
            endpoint = gw.endpoint("b0")
            await sim.acall(sim.sim.stop())
            down = await gw.wait_for("b0", lambda t: t.quality is not Quality.GOOD, 10.0)
            await wait_until(lambda: not endpoint.connected.is_set(), 5.0, "watchdog notices the dead server")
            await sim.acall(sim.sim.start())
            before = endpoint.notifications
            try:
                good = await gw.wait_for("b0", lambda t: _good(t) and t.timestamp > down.timestamp, 20.0)
            except AssertionError as err:  # say where reconnection stands, not only the last telemetry
                state = {k: getattr(endpoint, k) for k in ("connects", "connect_failures", "last_error",
                                                           "notifications", "subscribe_errors")}
                raise AssertionError(f"{err}; endpoint {state}; down was {down}") from None
            sequences = {good.extra["sequence"]}
            await gw.wait_for("b0", lambda t: sequences.add(t.extra["sequence"]) or len(sequences) >= 3, 5.0)
            # what is asserted below is waited for: the restored subscription delivers again
            await wait_until(lambda: endpoint.notifications - before >= 3, 10.0, "notifications after restart")
            return endpoint.connects, endpoint.notifications - before, endpoint.reads

    connects, new_notifications, reads = run(scenario(), 45.0)
    assert connects >= 2
    assert new_notifications >= 3  # the restored subscription delivers again
    assert reads <= 3  # identity again after reconnecting, never telemetry polling


def test_dropped_sessions_reconnect(sim):
    async def scenario():
        async with Gateway(gateway_config(sim.sim)) as gw:
            await gw.wait_for("b0", _good, 15.0)
            endpoint = gw.endpoint("b0")
            sim.do(sim.sim.drop_sessions)
            await wait_until(lambda: endpoint.connects >= 2, 15.0, "reconnected after the session was dropped")
            before = endpoint.notifications
            await wait_until(lambda: endpoint.notifications > before + 3, 5.0, "notifications after reconnect")
            return await gw.wait_for("b0", _good, 5.0)

    assert run(scenario(), 40.0).quality is Quality.GOOD


def test_rejected_certificate_is_a_clear_error_and_is_retried(sim, tmp_path):
    async def scenario():
        sim.do(lambda: setattr(sim.sim, "reject_certificates", True))
        log = RecordingLog()
        config = gateway_config(sim.sim, opcua={"connect_timeout_s": 1.0}, state_dir=str(tmp_path))
        async with Gateway(config, log) as gw:
            endpoint = gw.endpoint("b0")
            await wait_until(lambda: endpoint.connect_failures >= 2, 10.0, "connection retried")
            refused = await gw.wait_for("b0", lambda t: "BadCertificateUntrusted" in t.quality_reason, 10.0)
            sim.do(lambda: setattr(sim.sim, "reject_certificates", False))
            await gw.wait_for("b0", _good, 15.0)
            return refused, endpoint, log

    refused, _endpoint, log = run(scenario(), 45.0)
    assert refused.quality is Quality.BAD
    assert sim.sim.rejected >= 2
    assert (tmp_path / "pki" / "southbound" / "client_cert.der").is_file()  # generated into state_dir
    assert any("BadCertificateUntrusted" in fields.get("reason", "") for fields in log.named("opcua endpoint down"))


def test_slow_responses_time_out_with_a_device_timeout(sim):
    async def scenario():
        async with Gateway(gateway_config(sim.sim, opcua={"request_timeout_s": 0.3})) as gw:
            await gw.wait_for("b0", _good, 15.0)
            sim.do(lambda: setattr(sim.sim, "slow_s", 2.0))
            with pytest.raises(DeviceTimeoutError, match="no answer in time"):
                await gw.supervisors["b0"].driver.write_setpoint(Setpoint(p_kw=1.0, q_kvar=0.0, command_id="s"))

    run(scenario())


def test_unknown_node_is_a_protocol_error_naming_the_status(sim):
    async def scenario():
        config = parse_config(gateway_config(sim.sim))
        transport = OpcUaTransport(config, RecordingLog())
        link = transport.link_for(config.units[0])
        try:
            with pytest.raises(DeviceProtocolError, match=r"BadNoMatch|BadNodeIdUnknown"):
                await link.read(["Telemetry/NoSuchValue"])
            assert (await link.read(["Identity/Vendor"]))[0].value == "VENDOR-B"
        finally:
            await transport.close()

    run(scenario())


def test_security_none_is_allowed_by_config_for_labs(sim):
    async def scenario():
        config = parse_config(gateway_config(sim.sim, link={"security_policy": "None"}))
        transport = OpcUaTransport(config, RecordingLog())
        driver = installed_plugins().drivers["vendor_b"].factory(
            DriverContext(unit_id="b0", link=transport.link_for(config.units[0])))
        try:
            offer = await driver.identify()
            return offer, await driver.read()
        finally:
            await driver.close()
            await transport.close()

    offer, telemetry = run(scenario())
    assert offer.chemistry == "vrfb" and telemetry.quality is Quality.GOOD


def test_device_link_config_errors():
    base = {"endpoint": "opc.tcp://127.0.0.1:4850/x", "namespace_uri": "urn:x", "object_path": "A/B"}
    assert OpcUaDeviceLink.model_validate(base).security_mode == "SignAndEncrypt"
    with pytest.raises(ValueError, match="needs a username"):
        OpcUaDeviceLink.model_validate({**base, "password": "x"})
    with pytest.raises(ValueError, match="either password or password_file"):
        OpcUaDeviceLink.model_validate({**base, "username": "u", "password": "x", "password_file": "/p"})
    with pytest.raises(ValueError, match="endpoint"):
        OpcUaDeviceLink.model_validate({**base, "endpoint": "http://x"})
    with pytest.raises(ConfigError, match=r"southbound\.opcua: .*set both certificate_path and private_key_path"):
        parse_config({"gateway": {"id": "g"}, "southbound": {"opcua": {"certificate_path": "/c"}}})


def test_a_unit_with_a_wrong_object_path_does_not_take_its_neighbour_down(sim):
    async def scenario():
        config = gateway_config(sim.sim, indexes=(0,))
        good_unit = config["units"][0]
        wrong_link = {**good_unit["opcua"], "object_path": "Containers/NoSuchContainer"}
        wrong = {**good_unit, "id": "wrong", "opcua": wrong_link}
        config["units"] = [good_unit, wrong]
        async with Gateway(config) as gw:
            good = await gw.wait_for("b0", _good, 15.0)
            refused = await gw.wait_for("wrong", lambda t: "BadNoMatch" in t.quality_reason, 10.0)
            assert gw.endpoint("b0") is gw.endpoint("wrong")  # same server and login: one shared session
            return good, refused, gw.endpoint("b0").connects

    good, refused, connects = run(scenario())
    assert good.quality is Quality.GOOD and refused.quality is Quality.BAD
    assert connects == 1  # the wrong path did not make the shared session reconnect


def test_a_failing_change_handler_is_counted_and_delivery_goes_on(sim):
    async def scenario():
        data = gateway_config(sim.sim, indexes=(0,))
        data["units"] = [data["units"][0], {**data["units"][0], "id": "twin"}]
        config = parse_config(data)
        twin = config.units[1]
        log = RecordingLog()
        transport = OpcUaTransport(config, log)
        broken, healthy = transport.link_for(config.units[0]), transport.link_for(twin)
        received = []

        def explode(change):
            raise RuntimeError("driver bug")

        broken.subscribe(["Telemetry/Sequence", "Telemetry/AlarmCode"], explode)
        healthy.subscribe(["Telemetry/Sequence", "Telemetry/AlarmCode"], received.append)
        endpoint = transport.endpoint_for(twin)

        def delivered() -> bool:  # everything asserted below, not just one of the counters
            return (endpoint.handler_errors >= 3 and len(received) >= 4
                    and any(c.path == "Telemetry/AlarmCode" for c in received)
                    and bool(log.named("opcua change handler failed")))

        try:
            await wait_until(delivered, 10.0, "changes delivered, and the broken handler's failures counted")
            return endpoint, received, log
        finally:
            await transport.close()

    endpoint, received, log = run(scenario())
    assert endpoint.handler_errors >= 3 and endpoint.connects == 1
    sequence = [c.value for c in received if c.path == "Telemetry/Sequence"]
    # in order, not doubled although two units watch the node (the first value may come twice: as the
    # shared item's initial notification and as the read that gives a late watcher the current value)
    assert sequence == sorted(sequence) and len(sequence) - len(set(sequence)) <= 1
    # a value that never changes still reaches the second watcher of the node
    alarm_codes = [c.value for c in received if c.path == "Telemetry/AlarmCode"]
    assert alarm_codes and set(alarm_codes) == {0}
    assert all(c.source_timestamp <= c.received_at + 1.0 for c in received)
    assert log.named("opcua change handler failed")[0]["error"] == "RuntimeError('driver bug')"
