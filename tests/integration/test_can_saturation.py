"""A saturated CAN bus: cyclic telemetry may be coalesced to its latest frame, alarm frames never.

The sender is a thread with its own python-can virtual bus sending as fast as it can, so the gateway's
reader always finds a queue of frames: the worst case for the latest-wins path and for the promise
that every alarm / fault / event frame still reaches its handler, once, in bus order.
"""

from __future__ import annotations

import asyncio
import struct
import threading

import can
import pytest
import structlog
from bessgw_vendor_c import protocol as p

from bessgw.config import CanSettings, parse_config, unit_options
from bessgw.plugin import CanFrame, DriverContext
from bessgw.southbound.can.bus import CanBus
from bessgw.southbound.can.transport import CanTransport
from bessgw.testing import installed_plugins, wait_until
from tests.plugins.vendor_c.harness import unique_channel

pytestmark = pytest.mark.integration

TELEMETRY_ID = 0x18FF0001
ALARM_ID = 0x18FF0002
FRAMES = 20_000
ALARM_EVERY = 37  # frames; a prime, so alarms land at every position of a batch


def _send(channel: str, messages: list[can.Message], go: threading.Event, sent: list[int]) -> None:
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        go.wait(10)
        for message in messages:
            bus.send(message)
            sent[0] += 1
    finally:
        bus.shutdown()


def _flood(channel: str, messages: list[can.Message]) -> tuple[threading.Thread, threading.Event, list[int]]:
    go, sent = threading.Event(), [0]
    sender = threading.Thread(target=_send, args=(channel, messages, go, sent), daemon=True)
    sender.start()
    return sender, go, sent


def test_saturated_bus_coalesces_telemetry_but_delivers_every_alarm_in_bus_order() -> None:
    async def scenario() -> None:
        channel = unique_channel("sat")
        bus = CanBus("virtual", channel, None, CanSettings(), structlog.get_logger("test"))
        log: list[tuple[str, int]] = []  # (kind, sequence number) in delivery order

        def on_telemetry(frame: CanFrame) -> None:
            log.append(("t", struct.unpack("<I", frame.data[:4])[0]))

        def on_alarm(frame: CanFrame) -> None:
            log.append(("a", struct.unpack("<I", frame.data[:4])[0]))

        bus.subscribe(TELEMETRY_ID, on_telemetry, latest_only=True)
        bus.subscribe(ALARM_ID, on_alarm)
        alarms_sent = [seq for seq in range(FRAMES) if seq % ALARM_EVERY == 0]
        messages = [can.Message(arbitration_id=ALARM_ID if seq % ALARM_EVERY == 0 else TELEMETRY_ID,
                                data=struct.pack("<II", seq, 0), is_extended_id=True) for seq in range(FRAMES)]
        task = asyncio.create_task(bus.run())
        try:
            await asyncio.wait_for(bus.opened.wait(), 5.0)
            sender, go, sent = _flood(channel, messages)
            go.set()
            await wait_until(lambda: bus.stats.frames_rx >= FRAMES, 30.0, "every frame received")
            sender.join(5.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            bus.close()
        assert sent[0] == FRAMES
        alarms = [seq for kind, seq in log if kind == "a"]
        telemetry = [seq for kind, seq in log if kind == "t"]
        assert alarms == alarms_sent  # every alarm, once, in order: none dropped or coalesced
        assert telemetry == sorted(set(telemetry))  # telemetry in bus order, no frame twice
        assert telemetry[-1] == FRAMES - 1  # the latest value always arrives
        # the bus really was saturated: telemetry was coalesced, and the counter says by how much
        assert bus.stats.frames_coalesced > 0
        assert bus.stats.frames_coalesced == (FRAMES - len(alarms_sent)) - len(telemetry)
        assert bus.stats.frames_rx == FRAMES and bus.stats.handler_errors == 0
        # ordering: an alarm is delivered after the newest telemetry frame sent before it
        last_telemetry = -1
        for kind, seq in log:
            if kind == "t":
                last_telemetry = seq
            else:  # the frame just before an alarm is telemetry (alarms are ALARM_EVERY apart)
                assert last_telemetry == seq - 1, f"alarm {seq} overtook telemetry frame {seq - 1}"

    asyncio.run(scenario())


def test_vendor_c_driver_sees_every_alarm_frame_of_a_saturated_bus() -> None:
    async def scenario() -> None:
        channel = unique_channel("satc")
        nodes = (1, 2, 3, 4)
        config = parse_config({
            "gateway": {"id": "sat"},
            "units": [{"id": f"c{n}", "driver": "vendor_c",
                       "can": {"interface": "virtual", "channel": channel, "node_id": n}} for n in nodes],
        })
        spec = installed_plugins().drivers["vendor_c"]
        transport = CanTransport(config, structlog.get_logger("test"))
        drivers = {}
        for unit in config.units:
            link = transport.link_for(unit)
            drivers[link.node_id] = spec.factory(DriverContext(unit.id, link, unit_options(unit, spec.unit_options)))
        frames: list[CanFrame] = []
        for i in range(8_000):
            node = nodes[i % len(nodes)]
            if i % 29 == 0:  # an alarm frame: warnings count up, so each one is distinct
                frames.append(p.encode(p.ALARMS, node, Warnings=i, OverTemperature=i & 1))
            else:
                frames.append(p.encode(p.STATUS, node, SOC=(i % 10_000) / 100, SOH=98.0, PackVoltage=1300.0,
                                       PackCurrent=0.0, BmsState=2, ContactorsClosed=1, WatchdogTripped=0))
        messages = [can.Message(arbitration_id=f.arbitration_id, data=f.data, is_extended_id=True) for f in frames]
        sent_by_node = {node: {name: 0 for name in (p.ALARMS, p.STATUS)} for node in nodes}
        last_by_node: dict[tuple[int, str], bytes] = {}
        for frame in frames:
            name, node = p.split_id(frame.arbitration_id)
            sent_by_node[node][name] += 1
            last_by_node[(node, name)] = frame.data
        task = asyncio.create_task(transport.run())
        try:
            bus = transport.bus("virtual", channel)
            await asyncio.wait_for(bus.opened.wait(), 5.0)
            sender, go, _sent = _flood(channel, messages)
            go.set()
            await wait_until(lambda: bus.stats.frames_rx >= len(frames), 30.0, "every frame received")
            sender.join(5.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await transport.close()
        assert bus.stats.frames_coalesced > 0  # saturated: status frames were superseded in their batch
        for node, driver in drivers.items():
            assert driver.malformed == 0
            assert driver.frames[p.ALARMS] == sent_by_node[node][p.ALARMS]  # every alarm frame decoded
            assert 0 < driver.frames[p.STATUS] <= sent_by_node[node][p.STATUS]
            for name in (p.ALARMS, p.STATUS):  # and the state is the last frame of each kind
                assert driver.values[name] == p.decode(name, last_by_node[(node, name)])
        status_delivered = sum(d.frames[p.STATUS] for d in drivers.values())
        status_sent = sum(s[p.STATUS] for s in sent_by_node.values())
        assert bus.stats.frames_coalesced == status_sent - status_delivered

    asyncio.run(scenario())
