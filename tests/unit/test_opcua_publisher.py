"""The publisher's direct path into asyncua's address space, without sockets (the server is never started).

What a client would read is read back through asyncua's own ``read_attribute_value`` and data-change
callbacks (the monitored-item service's entry point), so a shortcut that skipped a timestamp, a status,
the null-on-Bad rule or a subscriber's notification fails here.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import math
import time
from typing import Any

from asyncua import Server, ua

from bessgw.model import Capability, Quality, Telemetry, UnitState
from bessgw.northbound import information_model as model
from bessgw.northbound.publisher import Publisher
from bessgw.unit.snapshot import UnitSnapshot

CAPABILITY = Capability(max_charge_kw=500.0, max_discharge_kw=500.0, energy_kwh=1000.0, chemistry="lfp")


class FakeSupervisor:
    """Hands out whatever snapshot the test sets (the publisher only calls ``snapshot()``)."""

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self.snap: UnitSnapshot | None = None

    def snapshot(self) -> UnitSnapshot | None:
        return self.snap

    def show(self, timestamp: float, soc_pct: float, quality: Quality = Quality.GOOD) -> None:
        telemetry = Telemetry(unit_id=self.unit_id, timestamp=timestamp, quality=quality, state=UnitState.RUNNING,
                              soc_pct=soc_pct, p_kw=10.0)
        self.snap = UnitSnapshot(self.unit_id, telemetry, CAPABILITY, None, "", True)


async def build(units: int) -> tuple[Server, Publisher, list[FakeSupervisor], list[model.Instance]]:
    server = Server()
    await server.init()
    types = await model.create_types(server)
    gateway = await model.create_gateway(server, types, "gw")
    publisher = Publisher(server, 0.5, {"SocPct": 0.5}, 0.0)
    supervisors, instances = [], []
    for index in range(units):
        supervisor = FakeSupervisor(f"u{index}")
        instance = await model.create_unit(server, types, gateway, "gw", supervisor.unit_id, lambda m, u: None)
        publisher.add(supervisor, instance)  # type: ignore[arg-type]
        supervisors.append(supervisor)
        instances.append(instance)
    return server, publisher, supervisors, instances


def read(server: Server, instance: model.Instance, name: str) -> ua.DataValue:
    return server.iserver.aspace.read_attribute_value(instance.child(name), ua.AttributeIds.Value)


def test_values_carry_status_source_and_server_time_and_reach_subscribers() -> None:
    async def scenario() -> None:
        server, publisher, (unit,), (instance,) = await build(1)
        heard: list[ua.DataValue] = []

        async def callback(handle: int, value: ua.DataValue) -> None:
            heard.append(value)

        status, _handle = server.iserver.aspace.add_datachange_callback(instance.child("SocPct"),
                                                                       ua.AttributeIds.Value, callback)
        assert status.is_good()
        measured = time.time() - 3.0
        unit.show(measured, 61.0)
        before = dt.datetime.now(dt.timezone.utc)
        await publisher.publish_once()
        soc = read(server, instance, "SocPct")
        assert soc.StatusCode.value == ua.StatusCodes.Good
        assert (soc.Value.Value, soc.Value.VariantType) == (61.0, ua.VariantType.Double)
        assert soc.SourceTimestamp == dt.datetime.fromtimestamp(measured, dt.timezone.utc)
        assert soc.ServerTimestamp is not None and soc.ServerTimestamp >= before
        assert heard == [soc]
        # asyncua deep-copies what it hands a monitored item; a published value is immutable: no copy
        assert copy.deepcopy(soc) is soc and isinstance(soc, ua.DataValue)
        state = read(server, instance, "State")
        assert (state.Value.Value, state.Value.VariantType) == ("running", ua.VariantType.String)
        names = read(server, instance, "AlarmNames")
        assert names.Value.is_array and names.Value.Value == []
        assert read(server, instance, "SohPct").StatusCode.value == ua.StatusCodes.BadWaitingForInitialData

        written = publisher.values_written
        unit.show(measured + 1.0, 61.2)  # inside the 0.5 % deadband: nothing new for SocPct
        await publisher.publish_once()
        assert read(server, instance, "SocPct").Value.Value == 61.0 and len(heard) == 1
        assert publisher.values_written == written  # nothing moved beyond its deadband: nothing written

        unit.show(measured + 2.0, 60.0, Quality.BAD)
        await publisher.publish_once()
        bad = read(server, instance, "SocPct")
        assert bad.StatusCode.is_bad() and bad.Value.Value is None  # Bad carries no value (Part 4, 7.7.1)
        assert bad.SourceTimestamp == dt.datetime.fromtimestamp(measured + 2.0, dt.timezone.utc)
        assert heard[-1] is bad

    asyncio.run(scenario())


def test_a_part_publishes_its_share_of_the_units_and_all_parts_publish_each_once() -> None:
    async def scenario() -> None:
        server, publisher, units, instances = await build(5)
        now = time.time()
        for index, unit in enumerate(units):
            unit.show(now, 50.0 + index)
        await publisher.publish_once(1, 2)
        shown: list[Any] = [read(server, instance, "SocPct").Value.Value for instance in instances]
        assert shown == [None, 51.0, None, 53.0, None]  # the rest still waits for its first value
        await publisher.publish_once(0, 2)
        assert [read(server, instance, "SocPct").Value.Value for instance in instances] == \
            [50.0, 51.0, 52.0, 53.0, 54.0]
        assert not math.isnan(publisher.last_cycle_s)

    asyncio.run(scenario())
