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
import random
import time
from typing import Any

from asyncua import Server, ua

from bessgw.model import Capability, Quality, Telemetry, UnitState
from bessgw.northbound import information_model as model
from bessgw.northbound.publisher import _TELEMETRY_FIELDS, _TELEMETRY_NAMES, Publisher, quality_status
from bessgw.unit.snapshot import UnitSnapshot

_GOOD_STATUS = ua.StatusCode(ua.StatusCodes.Good)
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


async def build(units: int, *, with_gateway: bool = False
                ) -> tuple[Server, Publisher, list[FakeSupervisor], list[model.Instance]]:
    server = Server()
    await server.init()
    types = await model.create_types(server)
    gateway = await model.create_gateway(server, types, "gw")
    publisher = Publisher(server, 0.5, {"SocPct": 0.5}, 0.0)
    if with_gateway:
        publisher.set_gateway(gateway, "gw")
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


# the values a telemetry field takes in the equivalence test: deadband edges (SocPct's is 0.5), NaN, infinity,
# an int where a float is declared, and repeats, so every branch of the rules is taken many times over
_SAMPLES = (60.0, 60.0, 60.4, 60.5, 60.6, 61.2, math.nan, math.nan, math.inf, 60, 61, -0.0, 0.0)


def _random_telemetry(rng: random.Random, unit_id: str, timestamp: float) -> Telemetry:
    quality = rng.choice((Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.STALE, Quality.BAD))
    soc = rng.choice(_SAMPLES)
    if quality is Quality.GOOD and soc == math.inf:  # Good data must be plausible: 0..100
        soc = 100.0
    return Telemetry(
        unit_id=unit_id, timestamp=timestamp, quality=quality, state=rng.choice(list(UnitState)),
        soc_pct=soc, p_kw=rng.choice(_SAMPLES), q_kvar=rng.choice(_SAMPLES), dc_v=rng.choice((800.0, 800.0, math.nan)),
        cell_temp_min_c=rng.choice(_SAMPLES), alarms=rng.choice((0, 0, 1, 4)), warnings=rng.choice((0, 2)),
        alarm_names=rng.choice((frozenset(), frozenset(), frozenset({"over_temp"}), frozenset({"a", "b"}))),
        quality_reason=rng.choice(("", "", "timeout")),
    )


def test_the_per_poll_path_follows_the_same_rules_as_a_single_value_write() -> None:
    """Telemetry is checked in one inlined loop (per-value calls were most of the cost); ``_put`` is the
    one-value writer every other value goes through. Fed the same random samples — deadband edges, NaN
    and infinity, ints for floats, quality changes — both must show and write exactly the same."""
    async def scenario() -> None:
        server, publisher, (unit, oracle), (instance, oracle_instance) = await build(2)
        oracle.snap = None  # the oracle unit is written value by value below, never by publish_once
        oracle_published = publisher.units.pop("u1")[1]
        rng = random.Random(16)
        timestamp = time.time() - 1000.0
        names = [*_TELEMETRY_NAMES, "AlarmNames", "QualityReason"]
        alarm_names: frozenset[str] = frozenset()
        for step in range(400):
            timestamp += 1.0
            telemetry = _random_telemetry(rng, "u0", timestamp)
            connected = rng.random() > 0.1
            unit.snap = UnitSnapshot("u0", telemetry, CAPABILITY, None, "", connected)
            written = publisher.values_written
            await publisher.publish_once()
            fast_written = publisher.values_written - written

            status = quality_status(telemetry.quality, connected)
            source = dt.datetime.fromtimestamp(telemetry.timestamp, dt.timezone.utc)
            values = dict(zip(_TELEMETRY_FIELDS, (getattr(telemetry, f) for f in _TELEMETRY_FIELDS.values()),
                              strict=True))
            values.update(State=telemetry.state.value, AlarmActive=telemetry.alarms != 0, Alarms=telemetry.alarms,
                          Warnings=telemetry.warnings)
            written = publisher.values_written
            for name, value in values.items():
                publisher._put(oracle_published, name, value, status, source)
            if telemetry.alarm_names != alarm_names or step == 0:
                publisher._put(oracle_published, "AlarmNames", sorted(telemetry.alarm_names), status, source)
            else:
                shown = oracle_published.values["AlarmNames"].value
                publisher._put(oracle_published, "AlarmNames", shown, status, source)
            alarm_names = telemetry.alarm_names
            publisher._put(oracle_published, "QualityReason", telemetry.quality_reason, _GOOD_STATUS,
                           publisher._server_time)
            oracle_written = publisher.values_written - written

            for name in names:
                fast, slow = read(server, instance, name), read(server, oracle_instance, name)
                assert fast.StatusCode == slow.StatusCode, (step, name)
                assert fast.Value.VariantType == slow.Value.VariantType, (step, name)
                assert fast.Value.Value == slow.Value.Value or (fast.Value.Value != fast.Value.Value
                                                                and slow.Value.Value != slow.Value.Value), (step, name)
                assert fast.SourceTimestamp == slow.SourceTimestamp, (step, name)
            # Connected is written on top when the connection changed: not one of the compared rules
            if step:  # (the first also writes the capability, Connected and RefusedReason)
                assert fast_written - oracle_written in (0, 1), step
        assert publisher.values_written > 400  # the samples did move things

    asyncio.run(scenario())


def test_connection_changes_are_shown_and_unchanged_units_cost_no_writes() -> None:
    async def scenario() -> None:
        server, publisher, (unit,), (instance,) = await build(1)
        unit.show(time.time(), 50.0)
        await publisher.publish_once()
        assert read(server, instance, "Connected").Value.Value is True
        assert read(server, instance, "RefusedReason").Value.Value == ""
        telemetry = unit.snap.telemetry.with_quality(Quality.BAD, "disconnected")
        unit.snap = UnitSnapshot("u0", telemetry, CAPABILITY, None, "", False)  # the session dropped
        await publisher.publish_once()
        assert read(server, instance, "Connected").Value.Value is False
        assert read(server, instance, "SocPct").StatusCode.value == ua.StatusCodes.BadNoCommunication
        unit.snap = UnitSnapshot("u0", telemetry, CAPABILITY, None, "refused: no chemistry", False)
        await publisher.publish_once()
        assert read(server, instance, "RefusedReason").Value.Value == "refused: no chemistry"
        written = publisher.values_written
        unit.snap = UnitSnapshot("u0", telemetry, CAPABILITY, None, "refused: no chemistry", False)
        await publisher.publish_once()  # a new snapshot with the same contents: nothing to write
        assert publisher.values_written == written

    asyncio.run(scenario())


def test_the_gateway_counts_units_by_quality_and_sums_only_what_is_known() -> None:
    async def scenario() -> None:
        server, publisher, units, _ = await build(4, with_gateway=True)
        now = time.time()
        for unit, quality in zip(units, (Quality.GOOD, Quality.GOOD, Quality.STALE, Quality.BAD), strict=True):
            unit.show(now, 50.0, quality)
        units[1].snap = UnitSnapshot("u1", Telemetry(unit_id="u1", timestamp=now), CAPABILITY, None, "", True)
        await publisher.publish_once()
        gateway = publisher.gateway
        assert gateway is not None

        def shown(name: str) -> Any:
            return read(server, gateway.instance, name).Value.Value

        assert (shown("UnitCount"), shown("UnitsGood"), shown("UnitsStale"), shown("UnitsBad")) == (4, 2, 1, 1)
        assert shown("EnergyKwh") == 3000.0  # u1 has no SOC yet: its energy is not counted
        assert shown("SocPct") == 50.0

    asyncio.run(scenario())
