"""The control loop over real UnitSupervisors and the docs example's in-memory driver.

Units run in real time (their own poll and heartbeat tasks); the control loop and arbitration run on a
fake clock that the tests advance one period per step, so hold and ramp times are measured exactly
without sleeping.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest
import structlog

from bessgw.compat import timeout
from bessgw.config import ControlSection, ControlSourceTable, UnitDefaults
from bessgw.control.arbitration import Arbiter, Mode
from bessgw.control.commands import Command, CommandProcessor
from bessgw.control.journal import Journal
from bessgw.control.loop import ControlLoop, policies_from
from bessgw.errors import DecisionExpiredError, DeviceTimeoutError
from bessgw.model import Quality, Setpoint, SiteLimits
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager
from bessgw.unit.supervisor import UnitSupervisor

pytestmark = pytest.mark.integration

TIMING = UnitDefaults(poll_interval_s=0.01, stale_after_s=5.0, bad_after_s=10.0, heartbeat_interval_s=0.05)
PERIOD_S = 0.1
# per-unit values are compared to 0.1 %: the units integrate power into SOC in real time, which moves the
# SOC-balancing weights a little between steps; sums are exact


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    units: list[UnitSupervisor]
    drivers: list
    loop: ControlLoop
    clock: FakeClock

    def device_p(self) -> list[float]:
        return [driver.p_kw for driver in self.drivers]

    async def step(self):
        self.clock.now += PERIOD_S
        return await self.loop.step()


def settings(**overrides) -> ControlSection:
    values = dict(period_s=PERIOD_S, hold_s=0.5, fail_safe_ramp_kw_per_s=1000.0,
                  sources=[ControlSourceTable(name="local", priority=300, heartbeat_timeout_s=30.0),
                           ControlSourceTable(name="scada", priority=200, heartbeat_timeout_s=0.3)])
    values.update(overrides)
    return ControlSection(**values)


@asynccontextmanager
async def rig(count: int = 3, control: ControlSection | None = None, soc: list[float] | None = None,
              ramp_kw_per_s: float | None = None) -> AsyncIterator[Rig]:
    module = importlib.import_module("bessgw_example")

    class FlakyBattery(module.InMemoryBattery):
        """The example battery, plus faults the tests switch on: failing reads, lagging data, hung writes."""

        fail_reads = False
        lag_s = 0.0
        hang_writes = False
        fail_writes = False
        write_latency_s = 0.0  # a device slow to take a setpoint
        events: list[tuple[str, str, float]] = []  # (begin|done, unit, p_kw) of every write, shared by all units

        async def read(self):
            if self.fail_reads:
                raise DeviceTimeoutError("no answer (test)")
            telemetry = await super().read()
            if self.lag_s:
                telemetry = replace(telemetry, timestamp=telemetry.timestamp - self.lag_s)
            return telemetry

        async def write_setpoint(self, setpoint):
            self.events.append(("begin", self.context.unit_id, setpoint.p_kw))
            if self.hang_writes:
                await asyncio.Event().wait()
            if self.fail_writes:
                raise DeviceTimeoutError("setpoint refused (test)")
            if self.write_latency_s:
                await asyncio.sleep(self.write_latency_s)  # the device's own latency, not synchronisation
            await super().write_setpoint(setpoint)
            self.events.append(("done", self.context.unit_id, setpoint.p_kw))

    FlakyBattery.events = []
    registry = build_plugin_manager(modules=["bessgw_example"]).collect()
    spec = registry.drivers["in_memory"]
    clock = FakeClock()
    control = control or settings()
    units, drivers = [], []
    for index in range(count):
        options = spec.unit_options(energy_kwh=1000, power_kw=500, soc_pct=(soc or [50.0] * count)[index])
        driver = FlakyBattery(DriverContext(unit_id=f"u{index}", link=None, options=options))
        drivers.append(driver)
        units.append(UnitSupervisor(f"u{index}", driver, spec, TIMING, SiteLimits(ramp_kw_per_s=ramp_kw_per_s),
                                    registry.chemistries, log=structlog.get_logger(), reconnect_min_s=30.0,
                                    reconnect_max_s=60.0))
    tasks = [asyncio.create_task(unit.run()) for unit in units]
    try:
        async with timeout(10.0):  # every unit negotiated before control starts
            for unit in units:
                while unit.limits is None or not unit.connected:
                    await unit.wait_update(5.0)
        arbiter = Arbiter(policies_from(control), hold_s=control.hold_s, now=clock())
        loop = ControlLoop(units, arbiter, control, clock=clock, log=structlog.get_logger())
        yield Rig(units, drivers, loop, clock)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_for_quality(unit: UnitSupervisor, quality: Quality, timeout_s: float = 5.0) -> None:
    async with timeout(timeout_s):
        while unit.telemetry.quality is not quality:
            await unit.wait_update(timeout_s)


def test_target_is_split_and_written_to_every_unit(plugin_path) -> None:
    async def scenario() -> None:
        async with rig() as r:
            r.loop.arbiter.submit("scada", 900.0, 0.0, now=r.clock())
            state = await r.step()
            assert state.arbitration.source == "scada"
            assert r.device_p() == pytest.approx([300.0, 300.0, 300.0], rel=1e-3)
            assert state.delivered_p_kw == pytest.approx(900.0) and state.shortfall_p_kw == pytest.approx(0.0)
            assert state.excluded == {} and state.write_errors == {}
            r.loop.arbiter.submit("scada", 2000.0, 0.0, now=r.clock())  # more than 3 x 500 kW
            state = await r.step()
            assert r.device_p() == pytest.approx([500.0, 500.0, 500.0], rel=1e-3)
            assert state.shortfall_p_kw == pytest.approx(500.0)

    asyncio.run(scenario())


def test_soc_balancing_reaches_the_devices(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(soc=[30.0, 60.0, 90.0]) as r:
            r.loop.arbiter.submit("scada", 600.0, 0.0, now=r.clock())
            await r.step()
            discharge = r.device_p()
            assert discharge[0] < discharge[1] < discharge[2] and sum(discharge) == pytest.approx(600.0)
            r.loop.arbiter.submit("scada", -600.0, 0.0, now=r.clock())
            await r.step()
            charge = r.device_p()
            assert charge[0] < charge[1] < charge[2] < 0  # the emptiest charges hardest
            assert sum(charge) == pytest.approx(-600.0)

    asyncio.run(scenario())


def test_heartbeat_loss_holds_then_ramps_to_zero_within_the_configured_times(plugin_path) -> None:
    async def scenario() -> None:
        async with rig() as r:
            arbiter = r.loop.arbiter
            arbiter.submit("scada", 600.0, 0.0, now=r.clock())
            last_heard = r.clock()
            history: list[tuple[float, Mode, float]] = []
            for _ in range(5):  # scada keeps its heartbeat for half a second
                state = await r.step()
                arbiter.heartbeat("scada", now=r.clock())
                last_heard = r.clock()
                assert state.arbitration.mode is Mode.ACTIVE and sum(r.device_p()) == pytest.approx(600.0)
            for _ in range(40):  # then goes silent; bounded: 4 s of control periods
                state = await r.step()
                history.append((r.clock() - last_heard, state.arbitration.mode, sum(r.device_p())))
                if state.arbitration.mode is Mode.IDLE:
                    break
            lost_at = 0.3  # heartbeat timeout
            ramp_from = lost_at + 0.5  # + hold_s
            zero_by = ramp_from + 600.0 / 1000.0  # 600 kW at the configured 1000 kW/s
            for since, mode, delivered in history:
                if since < lost_at - 1e-9:
                    assert mode is Mode.ACTIVE and delivered == pytest.approx(600.0)
                elif since < ramp_from - 1e-9:
                    assert mode is Mode.HOLD and delivered == pytest.approx(600.0)
                else:
                    expected = max(0.0, 600.0 - 1000.0 * (since - ramp_from))
                    assert delivered == pytest.approx(expected, abs=1e-6)
                    assert mode in (Mode.RAMP_DOWN, Mode.IDLE)
            first_hold = next(since for since, mode, _ in history if mode is Mode.HOLD)
            first_zero = next(since for since, _, delivered in history if delivered == 0.0)
            assert first_hold == pytest.approx(lost_at, abs=PERIOD_S + 1e-9)
            assert zero_by - 1e-9 <= first_zero <= zero_by + PERIOD_S + 1e-9
            assert history[-1][1] is Mode.IDLE and r.device_p() == [0.0, 0.0, 0.0]

    asyncio.run(scenario())


def test_a_failed_units_share_moves_to_the_others_within_one_period(plugin_path) -> None:
    async def scenario() -> None:
        async with rig() as r:
            r.loop.arbiter.submit("local", 900.0, 0.0, now=r.clock())
            await r.step()
            assert r.device_p() == pytest.approx([300.0, 300.0, 300.0], rel=1e-3)
            r.drivers[1].fail_reads = True
            await wait_for_quality(r.units[1], Quality.STALE)
            state = await r.step()  # the very next period
            assert "u1" in state.excluded and "stale" in state.excluded["u1"]
            assert state.setpoints["u0"][0] == pytest.approx(450.0, rel=1e-3)
            assert state.setpoints["u2"][0] == pytest.approx(450.0, rel=1e-3)
            assert state.setpoints["u1"] == (0.0, 0.0)
            assert [r.drivers[0].p_kw, r.drivers[2].p_kw] == pytest.approx([450.0, 450.0], rel=1e-3)
            assert state.delivered_p_kw == pytest.approx(900.0)

    asyncio.run(scenario())


def test_a_stale_but_reachable_unit_is_commanded_to_zero(plugin_path) -> None:
    async def scenario() -> None:
        async with rig() as r:
            r.loop.arbiter.submit("local", -600.0, 0.0, now=r.clock())
            await r.step()
            assert r.device_p() == pytest.approx([-200.0, -200.0, -200.0], rel=1e-3)
            r.drivers[2].lag_s = TIMING.stale_after_s + 1.0  # data arrives, but too old
            await wait_for_quality(r.units[2], Quality.STALE)
            state = await r.step()
            assert r.drivers[2].p_kw == 0.0  # written 0 kW: the link still works
            assert [r.drivers[0].p_kw, r.drivers[1].p_kw] == pytest.approx([-300.0, -300.0], rel=1e-3)
            assert "u2" in state.excluded and state.write_errors == {}

    asyncio.run(scenario())


def test_ramp_limits_reach_the_devices(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(ramp_kw_per_s=1000.0) as r:  # 100 kW per 0.1 s period per unit
            r.loop.arbiter.submit("scada", 1200.0, 0.0, now=r.clock())
            state = await r.step()
            assert r.device_p() == pytest.approx([100.0, 100.0, 100.0], rel=1e-3)
            assert state.shortfall_p_kw == pytest.approx(900.0)
            await r.step()
            assert r.device_p() == pytest.approx([200.0, 200.0, 200.0], rel=1e-3)
            r.loop.arbiter.submit("scada", 60.0, 0.0, now=r.clock())
            await r.step()  # decreases are immediate
            assert r.device_p() == pytest.approx([20.0, 20.0, 20.0], rel=1e-3)

    asyncio.run(scenario())


def test_a_hung_unit_does_not_delay_the_others(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(control=settings(write_timeout_s=0.2)) as r:
            r.drivers[0].hang_writes = True
            r.loop.arbiter.submit("local", 300.0, 0.0, now=r.clock())
            started = time.monotonic()
            state = await r.step()
            assert [r.drivers[1].p_kw, r.drivers[2].p_kw] == pytest.approx([100.0, 100.0], rel=1e-3)
            assert "timed out" in state.write_errors["u0"]
            assert r.loop.write_timeouts == 1  # counted (bessgw_control_write_timeouts_total)
            assert time.monotonic() - started < 5.0  # bounded by the write timeout, not hung
            r.drivers[0].hang_writes = False
            await r.step()  # the failed write is retried next period
            assert r.drivers[0].p_kw == pytest.approx(100.0, rel=1e-3)

    asyncio.run(scenario())


def test_run_steps_on_its_own_and_stop_ramps_to_zero(plugin_path) -> None:
    async def scenario() -> None:
        control = settings(period_s=0.02, fail_safe_ramp_kw_per_s=3000.0, stop_timeout_s=5.0)
        async with rig(control=control) as r:
            r.loop.clock = time.time
            r.loop.arbiter.submit("local", 900.0, 0.0, now=time.time())
            task = asyncio.create_task(r.loop.run())
            try:
                async with timeout(5.0):
                    while sum(r.device_p()) < 900.0 - 1e-6:
                        await r.loop.stepped.wait()
                assert r.loop.healthy()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            state = await r.loop.stop()
            assert state.arbitration.mode is Mode.STOPPING and state.target_p_kw == 0.0
            assert r.device_p() == [0.0, 0.0, 0.0]

    asyncio.run(scenario())


def test_stop_without_ramp_leaves_the_units_alone(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(control=settings(ramp_to_zero_on_stop=False)) as r:
            r.loop.arbiter.submit("local", 300.0, 0.0, now=r.clock())
            await r.step()
            await r.loop.stop()
            assert r.device_p() == pytest.approx([100.0, 100.0, 100.0], rel=1e-3)

    asyncio.run(scenario())


def test_journaled_commands_drive_the_units_and_survive_a_restart(plugin_path, tmp_path) -> None:
    """Command → journal → arbiter → units; after a restart the live setpoint is re-applied, an expired one not."""

    async def scenario() -> None:
        control = settings(sources=[ControlSourceTable(name="local", priority=300, heartbeat_timeout_s=60.0),
                                    ControlSourceTable(name="scada", priority=200, heartbeat_timeout_s=60.0)])
        async with rig(control=control) as r:
            processor = CommandProcessor(Journal.in_state_dir(tmp_path), r.loop.arbiter, clock=r.clock)
            processor.submit(Command("s-1", "scada", p_kw=600.0, expires_at=r.clock() + 3600))
            processor.submit(Command("l-1", "local", p_kw=-300.0, expires_at=r.clock() + 1))
            await r.step()
            assert sum(r.device_p()) == pytest.approx(-300.0)  # local wins while it lasts
            processor.journal.close()

        r.clock.now += 5  # "restart" later: the local setpoint has expired meanwhile
        async with rig(control=control) as fresh:
            fresh.clock.now = r.clock.now
            processor = CommandProcessor(Journal.in_state_dir(tmp_path), fresh.loop.arbiter, clock=fresh.clock)
            assert [result.command_id for result in processor.restore()] == ["s-1"]
            state = await fresh.step()
            assert state.arbitration.source == "scada" and sum(fresh.device_p()) == pytest.approx(600.0)
            repeat = await processor.submit_async(Command("l-1", "local", p_kw=-300.0))
            assert repeat.applied_p_kw == -300.0  # the first result, and no effect:
            await fresh.step()
            assert sum(fresh.device_p()) == pytest.approx(600.0)
            processor.journal.close()

    asyncio.run(scenario())


def test_a_poke_steps_at_once_and_ramps_only_by_the_time_that_passed(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(ramp_kw_per_s=1000.0) as r:
            r.loop.arbiter.submit("scada", 1200.0, 0.0, now=r.clock())
            await r.step()
            assert r.device_p() == pytest.approx([100.0, 100.0, 100.0], rel=1e-3)
            r.clock.now += PERIOD_S / 4  # an early step (a poke) 25 ms later: 25 kW more per unit, not 100
            await r.loop.step()
            assert r.device_p() == pytest.approx([125.0, 125.0, 125.0], rel=1e-3)

    asyncio.run(scenario())


def test_run_reacts_to_a_poke_before_the_next_period(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(control=settings(period_s=30.0)) as r:  # the next periodic step is far away
            r.loop.clock = time.time
            task = asyncio.create_task(r.loop.run())
            try:
                async with timeout(5.0):
                    while r.loop.periods < 1:
                        await r.loop.stepped.wait()
                    r.loop.arbiter.submit("local", 600.0, 0.0, now=time.time())
                    stepped = r.loop.stepped
                    r.loop.poke()
                    await stepped.wait()  # well before the 30 s period
                assert sum(r.device_p()) == pytest.approx(600.0)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_a_unit_override_takes_the_unit_out_of_allocation_until_it_expires(plugin_path) -> None:
    from bessgw.control.loop import UnitOverride

    async def scenario() -> None:
        async with rig(count=2) as r:
            r.loop.arbiter.submit("local", 600.0, 0.0, now=r.clock(), command_id="t")
            r.loop.set_override("u0", UnitOverride(p_kw=-100.0, q_kvar=0.0, expires_at=r.clock() + 0.35))
            state = await r.step()
            assert state.setpoints["u0"] == (-100.0, 0.0)  # the override, through the envelope
            assert state.setpoints["u1"][0] == pytest.approx(500.0)  # u1 alone: at its limit
            assert state.shortfall_p_kw == pytest.approx(100.0)  # the override does not count
            assert dict(state.overrides) == {"u0": (-100.0, 0.0)}
            assert r.device_p() == pytest.approx([-100.0, 500.0])
            for _ in range(4):  # past its expiry u0 rejoins the allocation
                state = await r.step()
            assert "u0" not in state.overrides
            assert sum(p for p, _q in state.setpoints.values()) == pytest.approx(600.0)

    asyncio.run(scenario())


def test_an_override_beyond_the_envelope_is_clamped_by_the_gate(plugin_path) -> None:
    from bessgw.control.loop import UnitOverride

    async def scenario() -> None:
        async with rig(count=1) as r:
            r.loop.set_override("u0", UnitOverride(p_kw=9000.0, q_kvar=0.0, expires_at=r.clock() + 60))
            state = await r.step()
            assert state.setpoints["u0"][0] == pytest.approx(500.0)
            with pytest.raises(KeyError):
                r.loop.set_override("nope", UnitOverride(p_kw=1.0, q_kvar=0.0, expires_at=r.clock() + 60))

    asyncio.run(scenario())


def test_a_write_past_its_decisions_deadline_is_not_made_but_a_decrease_is(plugin_path) -> None:
    """Rule for paused gateways: what was decided before a pause never reaches a device after it."""
    async def scenario() -> None:
        async with rig(count=1) as r:
            r.loop.arbiter.submit("local", 300.0, 0.0, now=r.clock())
            await r.step()
            assert r.device_p() == pytest.approx([300.0])
            deadlines = {"local": time.monotonic() - 1.0}  # the source's own fence has already passed
            r.loop.fence = deadlines.get
            r.loop.arbiter.submit("local", 400.0, 0.0, now=r.clock())
            state = await r.step()
            assert r.device_p() == pytest.approx([300.0]) and "deadline" in state.write_errors["u0"]
            assert r.loop.decisions_expired == 1
            r.loop.arbiter.submit("local", 100.0, 0.0, now=r.clock())  # less power is always allowed
            state = await r.step()
            assert r.device_p() == pytest.approx([100.0]) and not state.write_errors
            with pytest.raises(DecisionExpiredError):
                await r.units[0].apply(Setpoint(p_kw=50.0, q_kvar=0.0), not_after=time.monotonic() - 0.001)
            assert r.device_p() == pytest.approx([100.0])

    asyncio.run(scenario())


def test_a_share_moving_between_units_is_decreased_before_it_is_increased(plugin_path) -> None:
    """Within one step, no increase reaches a device before every decrease of that step was written."""
    async def scenario() -> None:
        async with rig() as r:
            r.loop.arbiter.submit("local", 600.0, 0.0, now=r.clock())
            await r.step()
            assert r.device_p() == pytest.approx([200.0, 200.0, 200.0], rel=1e-3)
            r.drivers[2].write_latency_s = 0.05  # the decreasing unit is the slow one
            r.drivers[2].lag_s = TIMING.stale_after_s + 1.0  # u2 goes stale: its 200 kW move to u0 and u1
            await wait_for_quality(r.units[2], Quality.STALE)
            r.drivers[0].events.clear()
            state = await r.step()
            assert r.device_p() == pytest.approx([300.0, 300.0, 0.0], rel=1e-3) and not state.write_errors
            events = [(kind, unit) for kind, unit, _p in r.drivers[0].events]
            decrease_done = events.index(("done", "u2"))
            increases_begun = [events.index(("begin", unit)) for unit in ("u0", "u1")]
            assert all(begun > decrease_done for begun in increases_begun), events
            assert r.loop.increases_held == 0

    asyncio.run(scenario())


def test_increases_are_held_while_a_decrease_of_their_step_fails(plugin_path) -> None:
    """A unit that did not take its decrease may still run at the higher value: the others do not rise."""
    async def scenario() -> None:
        async with rig() as r:
            r.loop.arbiter.submit("local", 600.0, 0.0, now=r.clock())
            await r.step()
            r.drivers[2].fail_writes = True
            r.drivers[2].lag_s = TIMING.stale_after_s + 1.0
            await wait_for_quality(r.units[2], Quality.STALE)
            for expected_held in (2, 4):  # held in every period while the decrease keeps failing
                state = await r.step()
                assert r.device_p() == pytest.approx([200.0, 200.0, 200.0], rel=1e-3)
                assert "refused" in state.write_errors["u2"] and set(state.write_errors) == {"u2"}
                assert r.loop.increases_held == expected_held
                assert state.setpoints["u0"][0] == pytest.approx(200.0, rel=1e-3)  # what the unit was last told
                assert state.delivered_p_kw == pytest.approx(400.0, rel=1e-3)
            r.drivers[2].fail_writes = False
            state = await r.step()
            assert r.device_p() == pytest.approx([300.0, 300.0, 0.0], rel=1e-3) and not state.write_errors
            assert r.loop.increases_held == 4

    asyncio.run(scenario())


def test_a_hung_decrease_holds_the_increases_only_for_its_write_timeout(plugin_path) -> None:
    async def scenario() -> None:
        async with rig(control=settings(write_timeout_s=0.2)) as r:
            r.loop.arbiter.submit("local", 600.0, 0.0, now=r.clock())
            await r.step()
            r.drivers[2].hang_writes = True
            r.drivers[2].lag_s = TIMING.stale_after_s + 1.0
            await wait_for_quality(r.units[2], Quality.STALE)
            started = time.monotonic()
            state = await r.step()
            assert time.monotonic() - started < 5.0  # bounded by the write timeout
            assert "timed out" in state.write_errors["u2"] and r.loop.increases_held == 2
            assert [r.drivers[0].p_kw, r.drivers[1].p_kw] == pytest.approx([200.0, 200.0], rel=1e-3)
            r.drivers[2].hang_writes = False
            await r.step()
            assert r.device_p() == pytest.approx([300.0, 300.0, 0.0], rel=1e-3)

    asyncio.run(scenario())
