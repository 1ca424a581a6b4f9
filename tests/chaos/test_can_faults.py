"""CAN faults: silent nodes, malformed frames, error frames, bus-off and a bus that dies under us."""

from __future__ import annotations

import asyncio
from typing import Any

import can
import pytest

from bessgw.model import Quality
from bessgw.testing import wait_until
from tests.plugins.vendor_c.harness import CanGateway, can_config, simulator, unique_channel

pytestmark = pytest.mark.chaos


def test_silent_node_goes_stale_then_bad_and_recovers_when_it_speaks_again() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=2) as sim, CanGateway(can_config(channel, [1, 2])) as gw:
            await gw.connected()
            sim.silence(1)
            unit = await gw.wait_for("c1", lambda u: u.telemetry.quality is not Quality.GOOD, 3.0)
            assert unit.telemetry.quality is Quality.STALE  # stale first, never straight to bad
            await gw.wait_for("c1", lambda u: u.telemetry.quality is Quality.BAD, 3.0)
            assert gw.units["c2"].telemetry.quality is Quality.GOOD  # the other node is untouched
            sim.silence(1, False)
            unit = await gw.wait_for("c1", lambda u: u.telemetry.quality is Quality.GOOD, 3.0)
            assert unit.connected and unit.limits is not None

    asyncio.run(scenario())


def test_silence_beyond_frame_timeout_drops_the_link_and_reidentifies() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        config = can_config(channel, [1], unit_can={"frame_timeout_s": 0.3})
        async with simulator(channel, count=1) as sim, CanGateway(config) as gw:
            await gw.connected()
            sim.silence(1)
            await gw.wait_for("c1", lambda u: not u.connected, 3.0)
            await gw.wait_for("c1", lambda u: u.telemetry.quality is not Quality.GOOD, 3.0)
            sim.silence(1, False)
            unit = await gw.wait_for("c1", lambda u: u.connected and u.telemetry.quality is Quality.GOOD, 5.0)
            assert unit.poll_errors >= 1

    asyncio.run(scenario())


def test_malformed_frames_are_counted_and_dropped_and_the_reader_goes_on() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=2) as sim, CanGateway(can_config(channel, [1, 2])) as gw:
            await gw.connected()
            driver = gw.units["c1"].driver
            stats = gw.transport.bus("virtual", channel).stats
            sim.corrupt(1, "short", frames=5)
            await gw.wait_for("c1", lambda u: driver.malformed >= 5, 3.0)
            assert "wrong length 3" in driver.last_malformed
            sim.corrupt(1, "range", frames=5)
            await gw.wait_for("c1", lambda u: driver.malformed >= 10, 3.0)
            assert "SOC" in driver.last_malformed and "outside" in driver.last_malformed
            # foreign identifiers and remote frames are counted, not routed
            unrouted = stats.frames_unrouted
            with can.Bus(interface="virtual", channel=channel) as rogue:
                rogue.send(can.Message(arbitration_id=0x123, data=b"\x01\x02", is_extended_id=False))
                rogue.send(can.Message(arbitration_id=0x18001001, is_remote_frame=True, dlc=8))
                await gw.wait_for("c1", lambda u: stats.frames_unrouted >= unrouted + 2, 3.0)
            # a handler that raises is counted; the frame is dropped, the reader and the other units go on
            def broken(frame: Any) -> None:
                raise RuntimeError("driver bug")
            gw.transport.bus("virtual", channel).subscribe(0x18001002, broken)
            await gw.wait_for("c2", lambda u: stats.handler_errors >= 3, 3.0)
            for unit_id in ("c1", "c2"):  # telemetry still flows, never showed SOC 655 %
                unit = await gw.wait_for(unit_id, lambda u: u.telemetry.quality is Quality.GOOD, 3.0)
                assert 0 <= unit.telemetry.soc_pct <= 100
            assert gw.units["c2"].driver.malformed == 0

    asyncio.run(scenario())


def test_error_frames_are_counted_and_bus_off_reopens_the_bus() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1) as sim, CanGateway(can_config(channel, [1])) as gw:
            await gw.connected()
            stats = gw.transport.bus("virtual", channel).stats
            for _ in range(3):
                sim.send_error_frame()
            await gw.wait_for("c1", lambda u: stats.error_frames >= 3, 3.0)
            assert stats.opens == 1 and stats.bus_off == 0  # plain error frames do not reopen
            sim.send_error_frame(bus_off=True)
            await gw.wait_for("c1", lambda u: stats.opens >= 2, 5.0)
            assert stats.bus_off == 1
            beats = len(sim.nodes[1].heartbeats)
            await wait_until(lambda: len(sim.nodes[1].heartbeats) >= beats + 3, 3.0)  # heartbeat resumed
            await gw.wait_for("c1", lambda u: u.telemetry.quality is Quality.GOOD and u.connected, 5.0)

    asyncio.run(scenario())


def test_a_bus_that_fails_is_reopened_with_backoff() -> None:
    opened: list[can.BusABC] = []
    failures = {"left": 2}

    def factory(**kwargs: Any) -> can.BusABC:
        if failures["left"]:
            failures["left"] -= 1
            raise can.CanInitializationError("interface not ready")
        bus = can.Bus(**kwargs)
        opened.append(bus)
        return bus

    async def scenario() -> None:
        channel = unique_channel()
        config = can_config(channel, [1], can_settings={"reopen_min_s": 0.05, "reopen_max_s": 0.2})
        async with simulator(channel, count=1) as sim, CanGateway(config, bus_factory=factory) as gw:
            await gw.connected()
            stats = gw.transport.bus("virtual", channel).stats
            assert stats.open_failures == 2 and stats.opens == 1
            opened[0].shutdown()  # the library's bus dies under the reader: recv raises CanOperationError
            await gw.wait_for("c1", lambda u: stats.opens >= 2, 5.0)
            assert len(opened) == 2
            unit = await gw.wait_for("c1", lambda u: u.connected and u.telemetry.quality is Quality.GOOD, 5.0)
            polls = unit.polls
            await gw.wait_for("c1", lambda u: u.polls >= polls + 3, 3.0)
            beats = len(sim.nodes[1].heartbeats)
            await wait_until(lambda: len(sim.nodes[1].heartbeats) >= beats + 3, 3.0)

    asyncio.run(scenario())
