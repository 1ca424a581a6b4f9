"""The unit supervisor: quality by age, never Good while down, one log line down and one up, refusal."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from structlog.testing import capture_logs

from bessgw.compat import timeout
from bessgw.config import UnitDefaults
from bessgw.errors import DeviceError, DeviceTimeoutError
from bessgw.model import Capability, Quality, Setpoint, SiteLimits, Telemetry, UnitState
from bessgw.plugin import DriverContext, DriverSpec, VendorDriver
from bessgw.plugin.manager import build_plugin_manager
from bessgw.testing import wait_until
from bessgw.unit.supervisor import UnitSupervisor

TIMING = UnitDefaults(poll_interval_s=0.01, stale_after_s=0.3, bad_after_s=0.6, heartbeat_interval_s=0.02)


class ScriptedDriver(VendorDriver):
    """A driver whose device can be switched off and on, and whose offer can be changed."""

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.online = True
        self.chemistry = "lfp"
        self.protocol = "2"
        self.written: list[Setpoint] = []
        self.heartbeats = 0

    async def identify(self) -> Capability:
        if not self.online:
            raise DeviceTimeoutError("no answer")
        return Capability(max_charge_kw=400, max_discharge_kw=400, energy_kwh=1000, chemistry=self.chemistry,
                          protocol_version=self.protocol)

    async def read(self) -> Telemetry:
        if not self.online:
            raise DeviceTimeoutError("no answer")
        return Telemetry(unit_id=self.context.unit_id, timestamp=self.context.clock(), state=UnitState.RUNNING,
                         soc_pct=50.0, cell_temp_min_c=24.0, cell_temp_max_c=26.0)

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        self.written.append(setpoint)

    async def heartbeat(self) -> None:
        self.heartbeats += 1


def make(min_protocol: str = "0") -> tuple[UnitSupervisor, ScriptedDriver]:
    chemistries = build_plugin_manager().collect().chemistries
    spec = DriverSpec(name="scripted", transport="none", factory=ScriptedDriver, min_protocol_version=min_protocol)
    driver = ScriptedDriver(DriverContext(unit_id="u1", link=None))
    supervisor = UnitSupervisor("u1", driver, spec, TIMING, SiteLimits(max_discharge_kw=300), chemistries,
                                log=structlog.get_logger(), reconnect_min_s=0.05, reconnect_max_s=0.1)
    return supervisor, driver


async def until(supervisor: UnitSupervisor, predicate, timeout_s: float = 5.0) -> Telemetry:
    """The supervisor's telemetry once ``predicate`` holds for it (bounded)."""
    await wait_until(lambda: predicate(supervisor.telemetry), timeout_s, "telemetry condition", step_s=0.005)
    return supervisor.telemetry


def test_down_goes_stale_then_bad_never_good_and_recovers() -> None:
    supervisor, driver = make()

    async def scenario() -> list[Quality]:
        task = asyncio.create_task(supervisor.run())
        seen: list[Quality] = []
        try:
            await until(supervisor, lambda t: t.quality is Quality.GOOD)
            assert supervisor.limits is not None and supervisor.limits.max_discharge_kw == 300.0
            driver.online = False
            while supervisor.telemetry.quality is not Quality.BAD:
                await supervisor.wait_update(5.0)
                seen.append(supervisor.telemetry.quality)
            assert "link down: DeviceTimeoutError: no answer" in supervisor.telemetry.quality_reason
            with pytest.raises(DeviceError, match="not available"):
                await supervisor.apply(Setpoint(p_kw=10))
            driver.online = True
            await until(supervisor, lambda t: t.quality is Quality.GOOD)
            applied = await supervisor.apply(Setpoint(p_kw=1000, command_id="c1"))
            assert applied.p_kw == 300.0 and driver.written[-1].p_kw == 300.0  # clamped to the site limit
            return seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    with capture_logs() as logs:
        seen = asyncio.run(scenario())
    assert seen[0] is Quality.STALE
    assert Quality.GOOD not in seen, "data shown as Good while the link was down"
    events = [entry["event"] for entry in logs]
    assert events.count("unit_down") == 1 and events.count("unit_recovered") == 1
    assert driver.heartbeats > 0


def test_old_protocol_is_refused_with_the_reason() -> None:
    supervisor, _driver = make(min_protocol="3.1")

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            async with timeout(5):
                while not supervisor.refused_reason:
                    await supervisor.wait_update(5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert supervisor.refused_reason == "protocol version 2 is below the plugin's minimum 3.1"
    assert supervisor.limits is None


def test_unexpected_chemistry_is_refused() -> None:
    supervisor, _driver = make()
    supervisor.expected_chemistry = "nmc"

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            await until(supervisor, lambda t: t.quality_reason.startswith("refused"))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert supervisor.telemetry.quality is Quality.BAD
    assert "offers chemistry 'lfp' but config expects 'nmc'" in supervisor.refused_reason


def test_auto_start_asks_a_standby_unit_to_run() -> None:
    supervisor, driver = make()
    driver.running = False

    async def read() -> Telemetry:
        state = UnitState.RUNNING if driver.running else UnitState.STANDBY
        return Telemetry(unit_id="u1", timestamp=driver.context.clock(), state=state, soc_pct=50.0,
                         cell_temp_min_c=24.0, cell_temp_max_c=26.0)

    async def set_running(running: bool) -> None:
        driver.running = running

    driver.read = read  # type: ignore[method-assign]
    driver.set_running = set_running  # type: ignore[method-assign]
    supervisor.auto_start = True

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            await until(supervisor, lambda t: t.state is UnitState.RUNNING)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert driver.running


def test_without_auto_start_a_standby_unit_stays_in_standby() -> None:
    supervisor, driver = make()
    calls: list[bool] = []

    async def read() -> Telemetry:
        return Telemetry(unit_id="u1", timestamp=driver.context.clock(), state=UnitState.STANDBY, soc_pct=50.0,
                         cell_temp_min_c=24.0, cell_temp_max_c=26.0)

    async def set_running(running: bool) -> None:
        calls.append(running)

    driver.read = read  # type: ignore[method-assign]
    driver.set_running = set_running  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            async with timeout(5):
                while supervisor.polls < 20:
                    await supervisor.wait_update(5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert calls == []


def test_heartbeat_is_withheld_while_the_gate_is_closed() -> None:
    supervisor, driver = make()
    healthy = [True]
    supervisor.heartbeat_gate = lambda: healthy[0]

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            async with timeout(5):
                while driver.heartbeats < 3:
                    await supervisor.wait_update(5)
                healthy[0] = False  # control stopped stepping: the container's own watchdog must take over
                sent = driver.heartbeats
                while supervisor.heartbeats_withheld < 5:
                    await supervisor.wait_update(5)
                assert driver.heartbeats <= sent + 1  # at most one beat was already under way
                healthy[0] = True
                resumed_from = driver.heartbeats
                while driver.heartbeats < resumed_from + 2:
                    await supervisor.wait_update(5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_an_error_answer_is_bad_at_once_not_stale() -> None:
    from bessgw.errors import DeviceProtocolError

    supervisor, driver = make()

    async def read() -> Telemetry:
        raise DeviceProtocolError("read 100+10 answered exception code 4 (server device failure)", code=4)

    async def scenario() -> list[Quality]:
        task = asyncio.create_task(supervisor.run())
        seen: list[Quality] = []
        try:
            await until(supervisor, lambda t: t.quality is Quality.GOOD)
            driver.read = read  # type: ignore[method-assign]
            await until(supervisor, lambda t: t.quality is not Quality.GOOD)
            seen.append(supervisor.telemetry.quality)
            for _ in range(5):
                await supervisor.wait_update(5.0)
                seen.append(supervisor.telemetry.quality)
            return seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    seen = asyncio.run(scenario())
    assert set(seen) == {Quality.BAD}
    assert "exception code 4" in supervisor.telemetry.quality_reason


def test_values_keep_ageing_while_identify_waits() -> None:
    supervisor, driver = make()
    release = asyncio.Event()
    original_identify = driver.identify

    async def slow_identify() -> Capability:
        await release.wait()  # the device is back on the wire but slow to identify itself
        return await original_identify()

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        try:
            await until(supervisor, lambda t: t.quality is Quality.GOOD)
            driver.online = False
            await until(supervisor, lambda t: t.quality is Quality.STALE)
            driver.identify = slow_identify  # type: ignore[method-assign]
            driver.online = True  # reads work again, but identify hangs until released
            await until(supervisor, lambda t: t.quality is Quality.BAD)  # aged to bad meanwhile
            release.set()
            await until(supervisor, lambda t: t.quality is Quality.GOOD)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
