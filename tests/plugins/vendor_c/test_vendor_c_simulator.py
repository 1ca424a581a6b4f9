"""The vendor_c simulator: heartbeat watchdog, contactor logic, physics, and its CLI entry."""

from __future__ import annotations

import argparse
import asyncio

import can
import pytest
from bessgw_vendor_c import protocol as p
from bessgw_vendor_c.simulator import SPEC
from can.interfaces import virtual

from bessgw.plugin import PluginError, Setpoint, SimulatorContext
from bessgw.testing import wait_until
from tests.plugins.vendor_c.harness import CanGateway, can_config, registry, simulator, unique_channel

pytestmark = pytest.mark.integration  # the simulator on a python-can virtual bus


def _message(name: str, node: int, **signals: float) -> can.Message:
    frame = p.encode(name, node, **signals)
    return can.Message(arbitration_id=frame.arbitration_id, data=frame.data, is_extended_id=True)


def test_watchdog_opens_contactors_when_the_gateway_heartbeat_stops() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1, watchdog_s=0.5) as sim:
            node = sim.nodes[1]
            async with CanGateway(can_config(channel, [1])) as gw:
                await gw.connected()
                await gw.units["c1"].set_running(True)
                await wait_until(lambda: node.contactors_closed, 2.0)
                await gw.units["c1"].apply(Setpoint(p_kw=400.0))
                await wait_until(lambda: node.p_setpoint_kw == 400.0, 2.0)
            # the gateway is gone: no heartbeat, so the BMS trips, opens and drops to 0 kW
            await wait_until(lambda: node.watchdog_tripped, 3.0)
            assert not node.contactors_closed and node.p_setpoint_kw == 0.0
            await wait_until(lambda: abs(float(sim.circuit.pack_a[0])) < 1e-6, 2.0)

    asyncio.run(scenario())


def test_heartbeat_stops_when_the_unit_task_stops_renewing_its_lease() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        config = can_config(channel, [1], options={"heartbeat_lease_s": 0.4},
                            defaults={"heartbeat_interval_s": 0.1})
        async with simulator(channel, count=1, watchdog_s=0.6) as sim, CanGateway(config) as gw:
            await gw.connected()
            await gw.units["c1"].set_running(True)
            await wait_until(lambda: sim.nodes[1].contactors_closed, 2.0)
            gw.stop_unit_task("c1")  # the unit's task dies; the bus (transport) keeps running
            await wait_until(lambda: sim.nodes[1].watchdog_tripped, 3.0)
            assert gw.transport.bus("virtual", channel).available

    asyncio.run(scenario())


def test_contactors_refuse_to_close_without_a_heartbeat_and_follow_commands_with_one() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1, watchdog_s=1.0) as sim:
            node = sim.nodes[1]
            with can.Bus(interface="virtual", channel=channel) as bus:
                bus.send(_message(p.CONTROL, 1, ContactorRequest=p.CONTACTOR_CLOSE))
                await wait_until(lambda: len(node.commands) == 1, 2.0)
                assert not node.contactors_closed
                bus.send(_message(p.HEARTBEAT, 1, HeartbeatCounter=1, GatewayState=1))
                bus.send(_message(p.CONTROL, 1, ContactorRequest=p.CONTACTOR_CLOSE))
                await wait_until(lambda: node.contactors_closed, 2.0)
                bus.send(_message(p.SETPOINT, 1, PowerSetpoint=-500.0))
                await wait_until(lambda: float(sim.circuit.pack_a[0]) < -300.0, 2.0)  # charging
                bus.send(_message(p.CONTROL, 1, ContactorRequest=p.CONTACTOR_OPEN))
                await wait_until(lambda: not node.contactors_closed, 2.0)
                bus.send(can.Message(arbitration_id=p.frame_id(p.SETPOINT, 1), data=b"\x00", is_extended_id=True))
                await wait_until(lambda: sim.malformed_commands == 1, 2.0)

    asyncio.run(scenario())


def test_cli_entry_parses_its_options_signals_ready_and_releases_the_bus_on_cancel() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        parser = argparse.ArgumentParser()
        SPEC.add_arguments(parser)
        args = parser.parse_args(["--channel", channel, "--count", "3", "--first-node-id", "10",
                                  "--energy-kwh", "2000"])
        ready = asyncio.Event()
        context = SimulatorContext(chemistries=registry().chemistries, ready=ready.set)
        task = asyncio.create_task(SPEC.run(args, context))
        await asyncio.wait_for(ready.wait(), 5.0)
        with can.Bus(interface="virtual", channel=channel) as bus:
            seen: set[int] = set()
            for _ in range(200):  # bounded: 3 nodes x 3 frames per 100 ms arrive quickly
                message = await asyncio.get_running_loop().run_in_executor(None, bus.recv, 1.0)
                assert message is not None
                parsed = p.split_id(message.arbitration_id)
                if parsed and parsed[0] == p.STATUS:
                    seen.add(parsed[1])
                if seen == {10, 11, 12}:
                    break
            assert seen == {10, 11, 12}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert channel not in virtual.channels

    asyncio.run(scenario())


def test_cli_entry_names_a_missing_chemistry() -> None:
    parser = argparse.ArgumentParser()
    SPEC.add_arguments(parser)
    args = parser.parse_args(["--chemistry", "unobtainium"])
    context = SimulatorContext(chemistries=registry().chemistries, ready=lambda: None)
    with pytest.raises(PluginError, match=r"unobtainium.*installed: .*lfp"):
        asyncio.run(SPEC.run(args, context))
