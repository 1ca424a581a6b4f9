"""The OPC UA command rules on their own: idempotency, refusals, and what is remembered."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from bessgw.compat import timeout
from bessgw.config import UnitDefaults
from bessgw.model import SiteLimits
from bessgw.northbound.access import Role
from bessgw.northbound.methods import CommandHandler, CommandRejected
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager
from bessgw.unit.directory import UnitDirectory
from bessgw.unit.supervisor import UnitSupervisor

TIMING = UnitDefaults(poll_interval_s=0.02, stale_after_s=1.0, bad_after_s=2.0, heartbeat_interval_s=0.5)


def counting_unit(unit_id: str) -> UnitSupervisor:
    from bessgw_example import InMemoryBattery

    class CountingBattery(InMemoryBattery):
        writes = 0
        gate: asyncio.Event | None = None
        entered: asyncio.Event | None = None

        async def write_setpoint(self, setpoint):
            self.writes += 1
            if self.entered is not None:
                self.entered.set()
            if self.gate is not None:
                await self.gate.wait()
            await super().write_setpoint(setpoint)

    registry = build_plugin_manager(modules=["bessgw_example"]).collect()
    spec = registry.drivers["in_memory"]
    driver = CountingBattery(DriverContext(unit_id=unit_id, link=None,
                                           options=spec.unit_options(energy_kwh=1000, power_kw=500)))
    return UnitSupervisor(unit_id, driver, spec, TIMING, SiteLimits(), registry.chemistries,
                          log=structlog.get_logger())


async def running(supervisor: UnitSupervisor) -> asyncio.Task[None]:
    task = asyncio.create_task(supervisor.run())
    async with timeout(5):
        while supervisor.limits is None:
            await supervisor.wait_update(5)
    return task


def test_concurrent_repeats_of_one_command_write_once(plugin_path) -> None:
    async def scenario() -> None:
        unit = counting_unit("u1")
        directory = UnitDirectory()
        directory.add(unit)
        task = await running(unit)
        try:
            handler = CommandHandler(directory, command_timeout_s=2.0)
            unit._driver.gate, unit._driver.entered = asyncio.Event(), asyncio.Event()
            calls = [asyncio.ensure_future(handler.set_unit_power("u1", 100.0, 0.0, "same", role=Role.OPERATOR,
                                                                  user="otto")) for _ in range(3)]
            await asyncio.wait_for(unit._driver.entered.wait(), 5)  # the device is busy with the first call
            unit._driver.gate.set()
            results = await asyncio.wait_for(asyncio.gather(*calls), 5)
            assert {(r.p_kw, r.q_kvar) for r in results} == {(100.0, 0.0)}
            assert unit._driver.writes == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_transient_refusals_are_not_remembered_but_range_refusals_are(plugin_path) -> None:
    async def scenario() -> None:
        unit = counting_unit("u2")
        directory = UnitDirectory()
        directory.add(unit)
        handler = CommandHandler(directory, command_timeout_s=2.0)
        with pytest.raises(CommandRejected) as offline:  # not started: no link yet
            await handler.set_unit_power("u2", 10.0, 0.0, "retry-me", role=Role.OPERATOR, user="otto")
        assert offline.value.status == "BadNoCommunication"
        task = await running(unit)
        try:
            applied = await handler.set_unit_power("u2", 10.0, 0.0, "retry-me", role=Role.OPERATOR, user="otto")
            assert applied.p_kw == 10.0 and unit._driver.writes == 1
            for _ in range(2):
                with pytest.raises(CommandRejected) as too_much:
                    await handler.set_unit_power("u2", 9999.0, 0.0, "too-much", role=Role.OPERATOR, user="otto")
                assert too_much.value.status == "BadOutOfRange"
            assert unit._driver.writes == 1
            with pytest.raises(CommandRejected) as nan:
                await handler.set_unit_power("u2", float("nan"), 0.0, "nan", role=Role.OPERATOR, user="otto")
            assert nan.value.status == "BadInvalidArgument"
            with pytest.raises(CommandRejected) as viewer:
                await handler.set_unit_power("u2", 1.0, 0.0, "v", role=Role.VIEWER, user="vera")
            assert viewer.value.status == "BadUserAccessDenied"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_gateway_command_without_units_is_refused(plugin_path) -> None:
    async def scenario() -> None:
        handler = CommandHandler(UnitDirectory(), command_timeout_s=1.0)
        with pytest.raises(CommandRejected) as refused:
            await handler.set_gateway_power(10.0, 0.0, "g", role=Role.OPERATOR, user="otto")
        assert refused.value.status == "BadInvalidState"

    asyncio.run(scenario())
