"""CAN transport + vendor_c driver + UnitSupervisor against the vendor_c simulator on a virtual bus."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from bessgw_vendor_c import protocol

from bessgw.errors import DeviceTimeoutError
from bessgw.model import Quality, Setpoint, UnitState
from bessgw.testing import wait_until
from tests.plugins.vendor_c.harness import CanGateway, can_config, simulator, unique_channel

pytestmark = pytest.mark.integration


def test_every_signal_is_decoded_into_telemetry_and_offer() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1) as sim, CanGateway(can_config(channel, [1])) as gw:
            sim.set_limits(1, charge_a=600.5, discharge_a=567.8)
            await gw.connected()
            unit = await gw.wait_for("c1", lambda u: abs(u.telemetry.extra.get("max_charge_a", 0) - 600.5) < 0.01)
            driver = unit.driver
            for name in protocol.BMS_MESSAGES:  # every DBC signal arrived and was decoded
                signals = {s.name for s in protocol.database().get_message_by_name(name).signals}
                assert set(driver.values[name]) == signals, name
            t, c = unit.telemetry, sim.circuit
            assert t.quality is Quality.GOOD and t.state is UnitState.STANDBY
            assert all(isinstance(getattr(t, f), float) for f in ("soc_pct", "cell_temp_min_c", "cell_v_max", "dc_a"))
            assert t.soc_pct == pytest.approx(float(c.soc_pct[0]), abs=0.01)
            assert t.soh_pct == 98.0
            assert t.dc_v == pytest.approx(float(c.pack_v[0]), abs=0.1)
            assert t.dc_a == pytest.approx(0.0, abs=0.1)
            assert t.cell_v_min == pytest.approx(float(c.cell_v[0]) - 0.004, abs=0.0011)
            assert t.cell_v_max == pytest.approx(float(c.cell_v[0]) + 0.004, abs=0.0011)
            assert t.cell_temp_min_c == pytest.approx(float(c.temp_c[0]) - 1.0, abs=0.51)
            assert t.cell_temp_max_c == pytest.approx(float(c.temp_c[0]) + 1.0, abs=0.51)
            assert t.extra["max_discharge_a"] == pytest.approx(567.8, abs=0.01)
            assert t.extra["contactors_closed"] == 0.0
            offer = driver.current_offer()
            assert offer.serial == str(sim.nodes[1].serial)
            assert offer.firmware_version == "2.4.1" and offer.protocol_version == "1"
            assert offer.energy_kwh == 3440.0 and offer.chemistry == "lfp"
            assert offer.voltage_max_v == pytest.approx(sim.series_cells * 3.65, abs=0.1)
            assert offer.max_charge_kw == math.floor(t.extra["max_charge_a"] * t.dc_v / 1000)
            assert offer.max_discharge_kw == math.floor(t.extra["max_discharge_a"] * t.dc_v / 1000)

            sim.inject_fault(1)  # alarm bits and the fault state
            unit = await gw.wait_for("c1", lambda u: "FaultLatched" in u.telemetry.alarm_names)
            assert unit.telemetry.state is UnitState.FAULT
            assert unit.telemetry.alarms == 1 << protocol.ALARM_NAMES.index("FaultLatched")
            await unit.reset_fault()
            await gw.wait_for("c1", lambda u: u.telemetry.state is UnitState.STANDBY and not u.telemetry.alarms)

    asyncio.run(scenario())


def test_node_ids_route_frames_and_commands_to_their_own_unit() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        socs = np.array([20.0, 50.0, 80.0])
        async with simulator(channel, count=3, first_node_id=7, soc_pct=socs) as sim, \
                CanGateway(can_config(channel, [7, 8, 9])) as gw:
            await gw.connected()
            for node, soc in zip((7, 8, 9), socs, strict=True):
                unit = gw.units[f"c{node}"]
                assert unit.telemetry.soc_pct == pytest.approx(soc, abs=0.05)
                assert unit.capability.serial == str(sim.nodes[node].serial)
            await gw.units["c8"].set_running(True)
            await wait_until(lambda: sim.nodes[8].contactors_closed, 2.0)
            applied = await gw.units["c8"].apply(Setpoint(p_kw=250.0))
            assert applied.p_kw == 250.0
            await wait_until(lambda: sim.nodes[8].p_setpoint_kw == 250.0, 2.0)
            assert not sim.nodes[7].contactors_closed and not sim.nodes[9].contactors_closed
            assert sim.nodes[7].p_setpoint_kw == 0.0 and sim.nodes[9].p_setpoint_kw == 0.0
            unit = await gw.wait_for("c8", lambda u: u.telemetry.p_kw > 200.0)
            assert unit.telemetry.state is UnitState.RUNNING
            assert gw.units["c7"].telemetry.p_kw == pytest.approx(0.0, abs=1.0)

    asyncio.run(scenario())


def test_live_bms_limits_renegotiate_on_the_next_update() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1) as sim, CanGateway(can_config(channel, [1])) as gw:
            await gw.connected()
            unit = gw.units["c1"]
            assert unit.limits.max_charge_kw == 1000.0  # nameplate binds at full BMS current
            sim.set_limits(1, charge_a=300.0, discharge_a=150.0)

            def offer_changed(u) -> bool:
                return u.driver.current_offer().max_charge_kw < 1000.0

            # wait on the driver (frame decoded), checked on each published update ...
            while not offer_changed(unit):
                await unit.wait_update(2.0)
                if offer_changed(unit):
                    break
            expected = unit.driver.current_offer()
            # ... the limits follow no later than the next update (poll period = frame period)
            if unit.limits.max_charge_kw != expected.max_charge_kw:
                await unit.wait_update(2.0)
            assert unit.limits.max_charge_kw == expected.max_charge_kw
            assert unit.limits.max_discharge_kw == expected.max_discharge_kw
            assert unit.limits.reason("max_charge_kw") == "vendor offer"
            dc_v = unit.telemetry.dc_v
            assert expected.max_charge_kw == pytest.approx(300.0 * dc_v / 1000, abs=1.5)
            assert expected.max_discharge_kw == pytest.approx(150.0 * dc_v / 1000, abs=1.5)
            clamped = await unit.apply(Setpoint(p_kw=-900.0))
            assert clamped.p_kw == -expected.max_charge_kw

            sim.set_limits(1, charge_a=0.0, discharge_a=0.0)  # BMS forbids any current
            await gw.wait_for("c1", lambda u: u.limits.max_charge_kw == 0.0 and u.limits.max_discharge_kw == 0.0)

    asyncio.run(scenario())


def test_heartbeat_keeps_its_period_under_a_5000_frames_per_second_flood() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        config = can_config(channel, [1], can_settings={"heartbeat_interval_s": 0.1})
        async with simulator(channel, count=1, watchdog_s=0.5) as sim, CanGateway(config) as gw:
            await gw.connected()
            await gw.units["c1"].set_running(True)
            await wait_until(lambda: sim.nodes[1].contactors_closed, 2.0)
            stats = gw.transport.bus("virtual", channel).stats
            rx_before = stats.frames_rx
            node = sim.nodes[1]
            beats_before = len(node.heartbeats)
            sim.flood(5000.0, duration_s=2.0)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await wait_until(lambda: sim.flood_sent >= 9000 or loop.time() - start > 4.0, 6.0)
            sim.stop_flood()
            elapsed = loop.time() - start
            beats = list(node.heartbeats)[beats_before:]
            gaps = np.diff([t for t, _ in beats])
            # the BMS watchdog never saw a gap near its timeout, and the period held on average
            assert node.contactors_closed and not node.watchdog_tripped
            assert gaps.max() < 0.3, f"longest heartbeat gap {gaps.max():.3f} s"
            assert len(beats) >= 0.8 * elapsed / 0.1
            assert sim.flood_sent >= 7000  # the flood really ran at ~5,000 frames/s
            await gw.wait_for("c1", lambda u: stats.frames_rx - rx_before >= sim.flood_sent, 5.0)
            assert gw.units["c1"].telemetry.quality is Quality.GOOD

    asyncio.run(scenario())


def test_commands_are_rate_limited_per_node() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        config = can_config(channel, [1, 2], can_settings={"command_rate_hz": 20.0, "command_burst": 2})
        async with simulator(channel, count=2) as sim, CanGateway(config) as gw:
            await gw.connected()
            stats = gw.transport.bus("virtual", channel).stats
            first, second = gw.units["c1"].driver, gw.units["c2"].driver
            for kw in range(10):
                await first.write_setpoint(Setpoint(p_kw=float(kw)))
            delayed = stats.commands_delayed
            assert delayed == 8  # the burst of 2 went straight out, the other 8 waited for tokens
            await second.write_setpoint(Setpoint(p_kw=1.0))
            await second.write_setpoint(Setpoint(p_kw=2.0))
            assert stats.commands_delayed == delayed  # node 2 has a bucket of its own
            await wait_until(lambda: len(sim.nodes[1].commands) == 10, 2.0)
            assert [v["PowerSetpoint"] for _, v in sim.nodes[1].commands] == [float(k) for k in range(10)]
            times = list(sim.nodes[1].command_times)
            # after the burst, frame k arrives no earlier than (k - burst + 1) / rate after the first
            for k in range(2, 10):
                assert times[k] - times[0] >= (k - 1) / 20.0 - 0.01

    asyncio.run(scenario())


def test_a_command_that_cannot_get_a_token_in_time_fails_cleanly() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        config = can_config(channel, [1], can_settings={"command_rate_hz": 1.0, "command_burst": 1,
                                                        "send_timeout_s": 0.2})
        async with simulator(channel, count=1), CanGateway(config) as gw:
            await gw.connected()
            driver = gw.units["c1"].driver
            await driver.write_setpoint(Setpoint(p_kw=1.0))
            with pytest.raises(DeviceTimeoutError, match="rate limit"):
                await driver.write_setpoint(Setpoint(p_kw=2.0))

    asyncio.run(scenario())


def test_releasing_the_last_unit_of_a_bus_closes_it_and_stops_its_heartbeat() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=2) as sim, CanGateway(can_config(channel, [1, 2])) as gw:
            await gw.connected()
            bus = gw.transport.bus("virtual", channel)
            units = {unit.id: unit for unit in gw.config.units}
            gw.transport.release(units["c1"])
            assert 1 not in bus.heartbeats and 2 in bus.heartbeats and bus.available
            assert {protocol.split_id(i)[1] for i in bus.handlers} == {2}
            task = gw.transport._tasks[("virtual", channel)]
            gw.transport.release(units["c2"])
            assert gw.transport.bus_stats() == {}
            await asyncio.wait([task], timeout=3.0)
            assert task.done() and not bus.available
            start, beats = sim.ticks, len(sim.nodes[2].heartbeats)
            await wait_until(lambda: sim.ticks >= start + 5, 2.0)
            assert len(sim.nodes[2].heartbeats) == beats

    asyncio.run(scenario())
