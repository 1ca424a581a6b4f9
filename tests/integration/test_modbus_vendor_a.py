"""The Modbus transport and the vendor_a driver against real pymodbus servers (the vendor_a simulator).

Map selection by firmware, scale factors and 32-bit word order, read coalescing (requests counted on both
sides), write read-back, heartbeat watchdog, and a unit's full life under core's UnitSupervisor.
"""

from __future__ import annotations

import asyncio

import pytest
from bessgw_vendor_a.driver import VendorADriver
from bessgw_vendor_a.registermap import load_map
from pymodbus.client import AsyncModbusTcpClient

from bessgw.config import parse_config
from bessgw.errors import DeviceProtocolError, IncompatibleDeviceError
from bessgw.model import Quality, Setpoint, UnitState
from bessgw.plugin import DriverContext, RegisterSpan
from bessgw.southbound.modbus.transport import ModbusTransport
from bessgw.testing import RecordingLog, wait_until
from tests.plugins.vendor_a.harness import Gateway, gateway_config, simulator

pytestmark = pytest.mark.integration


def run(coro, timeout_s: float = 30.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def _driver(sim, index: int = 0, **modbus):
    config = parse_config(gateway_config(sim.ports, modbus=modbus))
    transport = ModbusTransport(config, RecordingLog())
    unit = config.units[index]
    driver = VendorADriver(DriverContext(unit_id=unit.id, link=transport.link_for(unit), log=RecordingLog()))
    return transport, unit, driver


async def _raw_registers(port: int, address: int, count: int) -> list[int]:
    """What an independent Modbus client reads (plain pymodbus, nothing of ours)."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        response = await client.read_holding_registers(address, count=count, device_id=1)
        assert not response.isError()
        return list(response.registers)
    finally:
        client.close()


@pytest.mark.parametrize("firmware", ["v1", "v2"])
def test_driver_picks_the_map_of_the_reported_firmware(firmware):
    async def scenario():
        async with simulator(1, firmware=firmware, soc_pct=63.0) as sim:
            transport, _unit, driver = await _driver(sim)
            offer = await driver.identify()
            assert driver.map is load_map(firmware)
            assert offer.protocol_version == f"{firmware[1]}.3" and offer.vendor == "VENDOR-A"
            assert (offer.chemistry, offer.energy_kwh, offer.max_discharge_kw) == ("lfp", 5000.0, 2500.0)
            assert f"map_{firmware}" in offer.features
            telemetry = await driver.read()
            assert telemetry.quality is Quality.GOOD
            resolution = load_map(firmware)["soc_pct"].scale
            assert abs(telemetry.soc_pct - sim.fleet.model.soc_pct[0]) <= resolution
            assert telemetry.soc_pct == pytest.approx(63.0, abs=0.1)
            await transport.close()

    run(scenario())


def test_unknown_firmware_is_refused_with_the_known_ones_named():
    async def scenario():
        async with simulator(1) as sim:
            sim.fleet.set_firmware_major(0, 7)
            transport, _unit, driver = await _driver(sim)
            with pytest.raises(IncompatibleDeviceError, match=r"firmware 7\.3 is not supported.*v1 \(1\.x\), v2"):
                await driver.identify()
            await transport.close()

    run(scenario())


@pytest.mark.parametrize("firmware", ["v1", "v2"])
def test_scale_factors_and_32_bit_word_order_match_the_wire(firmware):
    """Negative power in v2 is an i32, low word first: the raw words prove the order, the driver the value."""

    async def scenario():
        async with simulator(1, firmware=firmware, watchdog_s=30.0) as sim:
            transport, _unit, driver = await _driver(sim)
            await driver.identify()
            await driver.heartbeat()
            await driver.write_setpoint(Setpoint(p_kw=-1234.5 if firmware == "v2" else -1234.0, q_kvar=56.0))
            regmap = load_map(firmware)
            await wait_until(lambda: sim.fleet.p_kw[0] < -1000, 5.0, "the simulator charges")
            telemetry = await driver.read()
            raw = await _raw_registers(sim.ports[0], 100, 22 if firmware == "v2" else 17)
            p_reg = regmap["p_kw"]
            words = raw[p_reg.address - 100 : p_reg.address - 100 + p_reg.width]
            if firmware == "v2":
                low, high = words  # little word order: low word first
                raw_value = (high << 16 | low) - (1 << 32)
                assert raw_value == -12345  # scale 0.1 kW
                assert telemetry.p_kw == pytest.approx(-1234.5)
                dc_v = regmap["dc_v"]  # f32, high word first
                import struct

                value = struct.unpack(">f", struct.pack(">HH", *raw[dc_v.address - 100 : dc_v.address - 98]))[0]
                assert telemetry.dc_v == pytest.approx(value)
            else:
                assert words == [(-1234) & 0xFFFF]
                assert telemetry.p_kw == -1234.0
            assert telemetry.q_kvar == pytest.approx(56.0)
            assert telemetry.dc_a < 0  # charging current
            soc = regmap["soc_pct"]
            assert telemetry.soc_pct == pytest.approx(raw[soc.address - 100] * soc.scale)
            await transport.close()

    run(scenario())


@pytest.mark.parametrize("firmware", ["v1", "v2"])
def test_a_poll_is_one_coalesced_request(firmware):
    async def scenario():
        async with simulator(1, firmware=firmware) as sim:
            transport, unit, driver = await _driver(sim)
            await driver.identify()
            endpoint = transport.endpoint_for(unit)
            container = sim.containers[0]
            before_ours, before_theirs = endpoint.stats.reads, container.counts.reads
            for _ in range(10):
                await driver.read()
            assert endpoint.stats.reads - before_ours == 10
            assert container.counts.reads - before_theirs == 10  # the server saw 10 requests, not 160
            width = max(s.end for s in load_map(firmware).spans()) - 100
            assert endpoint.stats.registers_read >= 10 * width
            await transport.close()

    run(scenario())


def test_read_blocks_coalesces_spans_into_the_fewest_requests():
    async def scenario():
        async with simulator(1) as sim:
            transport, unit, _ = await _driver(sim)
            link = transport.link_for(unit)
            container = sim.containers[0]
            spans = [RegisterSpan(0, 8), RegisterSpan(8, 8), RegisterSpan(16, 8), RegisterSpan(24, 10),  # 0..33
                     RegisterSpan(100, 2), RegisterSpan(101, 5), RegisterSpan(106, 16),  # 100..121
                     RegisterSpan(0, 2)]
            snapshot = await link.read_blocks(spans)
            assert container.counts.reads == 2
            assert [(start, len(values)) for start, values in snapshot.blocks] == [(0, 34), (100, 22)]
            assert snapshot.registers(0, 4) == [0x5645, 0x4E44, 0x4F52, 0x2D41]  # "VENDOR-A"
            # a span longer than one request is split at 125 registers
            await link.read_blocks([RegisterSpan(0, 200)])
            assert container.counts.reads == 4
            await transport.close()

    run(scenario())


def test_writes_are_verified_by_read_back():
    async def scenario():
        async with simulator(1, watchdog_s=30.0) as sim:
            transport, unit, driver = await _driver(sim)
            await driver.identify()
            container = sim.containers[0]
            reads = container.counts.reads
            await driver.write_setpoint(Setpoint(p_kw=500.0, q_kvar=-20.0))
            assert container.counts.reads == reads + 1  # the read-back
            regmap = load_map("v2")
            raw = await _raw_registers(sim.ports[0], 200, 4)
            assert raw == [5000, 0, (-200) & 0xFFFF, 0xFFFF]
            # fault_reset clears itself: a verified write there must be reported as not holding
            link = transport.link_for(unit)
            expected = r"write verification failed at 205: wrote \[1\], read back \[0\]"
            with pytest.raises(DeviceProtocolError, match=expected):
                await link.write_registers(regmap["fault_reset"].address, [1], verify=True)
            # a setpoint above rated power is refused by the controller with exception 3
            with pytest.raises(DeviceProtocolError, match="exception code 3") as info:
                await driver.write_setpoint(Setpoint(p_kw=3000.0))
            assert info.value.code == 3
            await transport.close()

    run(scenario())


def test_heartbeat_keeps_the_container_running_and_its_absence_puts_it_in_standby():
    async def scenario():
        async with simulator(1, watchdog_s=0.5) as sim:
            transport, _unit, driver = await _driver(sim)
            await driver.identify()
            telemetry = await driver.read()
            assert telemetry.state is UnitState.STANDBY and "heartbeat_lost" in telemetry.alarm_names
            for _ in range(3):  # heartbeat at 0.1 s: running, and the setpoint is applied
                await driver.heartbeat()
                await asyncio.sleep(0.1)
            await driver.write_setpoint(Setpoint(p_kw=800.0))
            for _ in range(50):
                await driver.heartbeat()
                telemetry = await driver.read()
                if telemetry.p_kw == pytest.approx(800.0):
                    break
                await asyncio.sleep(0.05)
            assert telemetry.state is UnitState.RUNNING and telemetry.p_kw == pytest.approx(800.0)
            # heartbeat stops: the container's watchdog drops to standby and forces P to 0
            await wait_until(lambda: sim.fleet.state(0) == 0, 3.0, "the watchdog stopped the container")
            telemetry = await driver.read()
            assert telemetry.state is UnitState.STANDBY and telemetry.p_kw == 0.0
            assert "heartbeat_lost" in telemetry.alarm_names
            await transport.close()

    run(scenario())


def test_supervised_units_share_nothing_but_report_live_physics():
    """Two containers under core's UnitSupervisor: good data, a setpoint applied, SOC moving."""

    async def scenario():
        async with simulator(2, watchdog_s=2.0) as sim:
            config = gateway_config(sim.ports, defaults={"heartbeat_interval_s": 0.2})
            async with Gateway(config) as gateway:
                for uid in ("u0", "u1"):
                    await gateway.wait_for(uid, lambda t: t.quality is Quality.GOOD
                                           and t.state is UnitState.RUNNING, 10.0)
                supervisor = gateway.supervisors["u0"]
                written = await supervisor.apply(Setpoint(p_kw=2000.0, command_id="c1"))
                assert written.p_kw == pytest.approx(2000.0)
                first = await gateway.wait_for("u0", lambda t: t.p_kw > 1900, 5.0)
                later = await gateway.wait_for("u0", lambda t: t.soc_pct < first.soc_pct - 0.005, 10.0)
                assert later.quality is Quality.GOOD and later.dc_a > 0
                assert gateway.supervisors["u1"].telemetry.p_kw == 0.0
                assert len(gateway.transport.endpoints) == 2
                assert gateway.alive()

    run(scenario())


def test_units_behind_one_endpoint_share_one_connection():
    async def scenario():
        async with simulator(1) as sim:
            config = gateway_config([sim.ports[0], sim.ports[0]])
            async with Gateway(config) as gateway:
                for uid in ("u0", "u1"):
                    await gateway.wait_for(uid, lambda t: t.quality is Quality.GOOD, 10.0)
                assert len(gateway.transport.endpoints) == 1
                endpoint = gateway.endpoint("u0")
                assert endpoint is gateway.endpoint("u1") and endpoint.stats.connects == 1

    run(scenario())
