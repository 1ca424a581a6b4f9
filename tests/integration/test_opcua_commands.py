"""OPC UA commands on the one command path: journaled, idempotent by id, refusals as status codes."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog

from bessgw.compat import timeout
from bessgw.config import ControlSection, UnitDefaults
from bessgw.control.service import ControlService
from bessgw.model import SiteLimits
from bessgw.northbound.access import Role
from bessgw.northbound.methods import CommandHandler, CommandRejected
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager
from bessgw.unit.directory import UnitDirectory
from bessgw.unit.supervisor import UnitSupervisor

pytestmark = pytest.mark.integration

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


@asynccontextmanager
async def control_over(tmp_path: Path, *units: UnitSupervisor):
    """A control plane over ``units`` (journal in ``tmp_path``), stepping until the block ends."""
    control = ControlService(ControlSection(period_s=0.05), list(units), tmp_path, structlog.get_logger())
    task = asyncio.create_task(control.run())
    try:
        yield control
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def eventually(predicate, timeout_s: float = 5.0) -> None:
    async with timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


def test_concurrent_repeats_of_one_command_are_journaled_and_applied_once(plugin_path, tmp_path: Path) -> None:
    async def scenario() -> None:
        unit = counting_unit("u1")
        directory = UnitDirectory()
        directory.add(unit)
        task = await running(unit)
        try:
            async with control_over(tmp_path, unit) as control:
                handler = CommandHandler(directory, command_timeout_s=2.0, control=lambda: control)
                calls = [handler.set_unit_power("u1", 100.0, 0.0, "same", role=Role.OPERATOR, user="otto")
                         for _ in range(3)]
                results = await asyncio.wait_for(asyncio.gather(*calls), 5)
                assert {(r.p_kw, r.q_kvar) for r in results} == {(100.0, 0.0)}
                await eventually(lambda: unit._driver.p_kw == 100.0)
                assert control.journal.count() == 1
                entry = control.journal.get("same")
                assert (entry.unit_id, entry.principal, entry.source) == ("u1", "opcua:otto", "scada")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_refusals_are_status_codes_and_leave_nothing_behind(plugin_path, tmp_path: Path) -> None:
    async def scenario() -> None:
        unit = counting_unit("u2")
        directory = UnitDirectory()
        directory.add(unit)
        async with control_over(tmp_path, unit) as control:
            handler = CommandHandler(directory, command_timeout_s=2.0, control=lambda: control)
            with pytest.raises(CommandRejected) as offline:  # not started: no link yet
                await handler.set_unit_power("u2", 10.0, 0.0, "retry-me", role=Role.OPERATOR, user="otto")
            assert offline.value.status == "BadInvalidState"
            task = await running(unit)
            try:
                # a transient refusal kept nothing: the same id is accepted once the unit is there
                applied = await handler.set_unit_power("u2", 10.0, 0.0, "retry-me", role=Role.OPERATOR, user="otto")
                assert applied.p_kw == 10.0
                for _ in range(2):
                    with pytest.raises(CommandRejected) as too_much:
                        await handler.set_unit_power("u2", 9999.0, 0.0, "too-much", role=Role.OPERATOR, user="otto")
                    assert too_much.value.status == "BadOutOfRange"
                with pytest.raises(CommandRejected) as nan:
                    await handler.set_unit_power("u2", float("nan"), 0.0, "nan", role=Role.OPERATOR, user="otto")
                assert nan.value.status == "BadInvalidArgument"
                with pytest.raises(CommandRejected) as huge_id:
                    await handler.set_unit_power("u2", 1.0, 0.0, "x" * 1_000_000, role=Role.OPERATOR, user="otto")
                assert huge_id.value.status == "BadInvalidArgument"
                with pytest.raises(CommandRejected) as viewer:
                    await handler.set_unit_power("u2", 1.0, 0.0, "v", role=Role.VIEWER, user="vera")
                assert viewer.value.status == "BadUserAccessDenied"
                with pytest.raises(CommandRejected) as unknown:
                    await handler.set_unit_power("nope", 1.0, 0.0, "n", role=Role.OPERATOR, user="otto")
                assert unknown.value.status == "BadNodeIdUnknown"
                assert [e.command_id for e in control.journal.tail(10)] == ["retry-me"]
                assert len(control.processor._results) <= 1  # refused commands are not remembered
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_gateway_command_without_commandable_units_is_refused(plugin_path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with control_over(tmp_path) as control:
            handler = CommandHandler(UnitDirectory(), command_timeout_s=1.0, control=lambda: control)
            with pytest.raises(CommandRejected) as refused:
                await handler.set_gateway_power(10.0, 0.0, "g", role=Role.OPERATOR, user="otto")
            assert refused.value.status == "BadInvalidState"
        handler = CommandHandler(UnitDirectory(), command_timeout_s=1.0)
        with pytest.raises(CommandRejected) as no_control:
            await handler.set_gateway_power(10.0, 0.0, "g", role=Role.OPERATOR, user="otto")
        assert no_control.value.status == "BadInvalidState"

    asyncio.run(scenario())
