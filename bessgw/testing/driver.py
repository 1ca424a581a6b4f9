"""Conformance tests every VendorDriver must pass against its device, through a supervised unit.

The driver runs exactly as in the gateway: the gateway's own transport, the unit supervisor calling the
driver (identify, poll, heartbeat, setpoints), the supervisor deciding quality. The subclass provides
``open_device``: a factory of async context managers that start the device (typically the plugin's
simulator on loopback) and yield a :class:`DeviceUnderTest` — the supervised unit opened with
:func:`~bessgw.testing.modbus_unit`, :func:`~bessgw.testing.can_unit`, :func:`~bessgw.testing.opcua_unit`
or :func:`~bessgw.testing.unit_without_link`, and how to stop and restart the device::

    class TestMyDriver(DriverConformance):
        driver_name = "my_driver"

        @pytest.fixture
        def open_device(self):
            @contextlib.asynccontextmanager
            async def open_():
                async with MySimulator(port=0) as sim, modbus_unit("my_driver", port=sim.port) as unit:
                    yield DeviceUnderTest(unit, stop=sim.stop, start=sim.start)
            return open_

Each test runs in a fresh event loop, bounded by :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from bessgw.plugin import Capability, DriverSpec, Quality, Setpoint
from bessgw.testing.southbound import SupervisedUnit, installed_plugins

T = TypeVar("T")
TIMEOUT_S = 45.0
#: how long a unit may take to be identified and negotiated after its device started
READY_S = 20.0


@dataclass
class DeviceUnderTest:
    """A supervised unit and its device.

    :ivar unit: the unit, supervised as in the gateway, talking to the device.
    :ivar stop: takes the device away (server down, node silent); ``None`` if it cannot be stopped.
    :ivar start: brings it back at the same address after :attr:`stop`.
    """

    unit: SupervisedUnit
    stop: Callable[[], Awaitable[Any]] | None = None
    start: Callable[[], Awaitable[Any]] | None = None


OpenDevice = Callable[[], AbstractAsyncContextManager[DeviceUnderTest]]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one scenario in a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT_S))


async def _ready(unit: SupervisedUnit) -> SupervisedUnit:
    return await unit.wait_for(lambda u: u.commandable and u.telemetry.quality is Quality.GOOD, READY_S,
                               f"{unit.unit_id} identified, negotiated and good; refused: "
                               f"{unit.refused_reason!r}; telemetry {unit.telemetry}")


class DriverConformance:
    """Subclass with ``driver_name`` (or a ``driver_spec`` fixture) and an ``open_device`` fixture."""

    #: the driver's registered name (``DriverSpec.name``)
    driver_name: str = ""

    @pytest.fixture
    def driver_spec(self) -> DriverSpec:
        """The spec registered as :attr:`driver_name` by the installed plugins."""
        assert self.driver_name, "set `driver_name` on the conformance subclass (or override `driver_spec`)"
        return installed_plugins().drivers[self.driver_name]

    @pytest.fixture
    def open_device(self) -> OpenDevice:  # pragma: no cover - the subclass provides it
        raise NotImplementedError("provide an `open_device` fixture")

    def test_spec(self, driver_spec: DriverSpec) -> None:
        assert re.fullmatch(r"[a-z][a-z0-9_]{1,31}", driver_spec.name)
        assert driver_spec.transport in {"none", "modbus", "can", "opcua"}
        assert callable(driver_spec.factory)
        for model in (driver_spec.unit_options, driver_spec.plugin_options):
            if model is not None:
                assert model.model_config.get("extra") == "forbid", "option tables must refuse unknown keys"

    def test_identify_offers_a_capability_the_gateway_accepts(self, open_device: OpenDevice) -> None:
        async def scenario() -> tuple[Capability, SupervisedUnit]:
            async with open_device() as device:
                unit = await _ready(device.unit)
                return unit.capability, unit

        offer, unit = run(scenario())
        assert isinstance(offer, Capability)
        assert offer.energy_kwh > 0 and (offer.max_charge_kw > 0 or offer.max_discharge_kw > 0)
        assert unit.calls["identify"] >= 1 and unit.refused_reason == ""

    def test_read_returns_good_telemetry_for_the_unit(self, open_device: OpenDevice) -> None:
        async def scenario() -> tuple[Any, float, int]:
            async with open_device() as device:
                unit = await _ready(device.unit)
                polls = unit.polls
                await unit.wait_for(lambda u: u.polls >= polls + 3, 10.0, "three more polls")
                return unit.telemetry, time.time(), unit.poll_errors

        telemetry, now, errors = run(scenario())
        assert telemetry.quality is Quality.GOOD and math.isfinite(telemetry.timestamp)
        assert abs(now - telemetry.timestamp) < 5.0, "timestamps are wall-clock seconds of the reading"
        assert math.isnan(telemetry.soc_pct) or 0.0 <= telemetry.soc_pct <= 100.0
        assert errors == 0, "a healthy device must not produce poll errors"

    def test_telemetry_carries_the_unit_id_it_was_read_for(self, open_device: OpenDevice) -> None:
        async def scenario() -> tuple[str, str]:
            async with open_device() as device:
                unit = await _ready(device.unit)
                return unit.unit_id, unit.telemetry.unit_id

        configured, reported = run(scenario())
        assert reported == configured

    def test_a_setpoint_within_limits_is_written_as_given(self, open_device: OpenDevice) -> None:
        async def scenario() -> tuple[Setpoint, Setpoint, SupervisedUnit, bool]:
            async with open_device() as device:
                unit = await _ready(device.unit)
                limits = unit.limits
                assert limits is not None
                p_kw = 0.1 * limits.max_discharge_kw if limits.max_discharge_kw > 0 else -0.1 * limits.max_charge_kw
                wanted = Setpoint(p_kw=round(p_kw, 1), q_kvar=0.0, command_id="conformance-1")
                written = await unit.apply(wanted)
                polls = unit.polls
                await unit.wait_for(lambda u: u.polls >= polls + 3, 10.0, "polls after the setpoint")
                await unit.apply(Setpoint(p_kw=0.0, q_kvar=0.0, command_id="conformance-0"))
                return wanted, written, unit, unit.connected

        wanted, written, unit, connected = run(scenario())
        assert (written.p_kw, written.q_kvar, written.command_id) == (wanted.p_kw, 0.0, wanted.command_id)
        assert unit.calls["write_setpoint"] == 2
        assert connected and unit.poll_errors == 0, "writing a setpoint must not break the session"

    def test_heartbeat_runs_while_the_unit_is_healthy(self, open_device: OpenDevice) -> None:
        async def scenario() -> tuple[SupervisedUnit, bool]:
            async with open_device() as device:
                unit = await _ready(device.unit)
                beats = unit.calls["heartbeat"]
                await unit.wait_for(lambda u: u.calls["heartbeat"] >= beats + 3, 10.0, "three more heartbeats")
                return unit, unit.connected

        unit, connected = run(scenario())
        assert connected and unit.poll_errors == 0

    def test_a_stopped_device_is_never_shown_good_and_is_reconnected(self, open_device: OpenDevice) -> None:
        async def scenario() -> tuple[list[Quality], Any, float] | None:
            async with open_device() as device:
                if device.stop is None or device.start is None:
                    return None
                unit = await _ready(device.unit)
                timing = unit.supervisor.timing
                await device.stop()
                stopped_at = time.time()
                # the age rule: within bad_after_s at the latest nothing may still look good
                down = await unit.wait_telemetry(lambda t: t.quality is not Quality.GOOD,
                                                 timing.bad_after_s + 2.0)
                seen = [down.quality]
                await device.start()
                back = await unit.wait_telemetry(lambda t: t.quality is Quality.GOOD and t.timestamp > stopped_at,
                                                 READY_S)
                await _ready(unit)
                return seen, back, stopped_at

        outcome = run(scenario())
        if outcome is None:
            pytest.skip("the device under test cannot be stopped and restarted (no `stop`/`start`)")
        seen, back, stopped_at = outcome
        assert seen[0] in (Quality.STALE, Quality.BAD)
        assert back.timestamp > stopped_at

    def test_calls_into_the_driver_never_overlap(self, open_device: OpenDevice) -> None:
        async def scenario() -> SupervisedUnit:
            async with open_device() as device:
                unit = await _ready(device.unit)
                # setpoints from "control" while the unit task polls and beats, as in the gateway
                await asyncio.gather(*(unit.apply(Setpoint(p_kw=0.0, command_id=f"burst-{i}")) for i in range(20)))
                polls = unit.polls
                await unit.wait_for(lambda u: u.polls >= polls + 2, 10.0, "polls after the burst")
                return unit

        unit = run(scenario())
        assert unit.calls["write_setpoint"] == 20
        assert unit.max_concurrent_calls == 1, f"overlapping calls: {unit.overlapping_calls[:5]}"

    def test_close_releases_the_driver_and_is_idempotent(self, open_device: OpenDevice) -> None:
        async def scenario() -> SupervisedUnit:
            async with open_device() as device:
                unit = await _ready(device.unit)
            await unit.driver.close()  # a second close, after the gateway's own
            return unit

        unit = run(scenario())
        assert unit.calls["close"] == 1
        assert not unit.log.named("driver_close_failed"), unit.log.named("driver_close_failed")
