"""The ``campus`` source of the control plane: shares in, fenced, lower shares written before they return.

A real ControlService (journal on disk, its own control loop task) over real UnitSupervisors and the docs
example's in-memory driver; campus shares arrive as campus dispatch delivers them. Every wait polls the
asserted condition with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from bessgw.config import ControlSection
from bessgw.control.campus import CAMPUS_SOURCE
from bessgw.control.service import ControlService
from tests.integration.test_control_loop import Rig, rig

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class FakeShare:
    """The fields of campus dispatch's ``Share`` that control reads."""

    p_kw: float
    q_kvar: float = 0.0
    command_id: str = "c-1"
    expires_at: float | None = None
    traceparent: str = ""


async def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(tmp_path: Path, period_s: float = 0.5) -> AsyncIterator[tuple[ControlService, Rig]]:
    async with rig(count=2) as r:
        control = ControlService(ControlSection(period_s=period_s), r.units, tmp_path, structlog.get_logger())
        task = asyncio.create_task(control.run())
        try:
            await asyncio.wait_for(control.started.wait(), 5)
            yield control, r
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def later(seconds: float) -> float:
    return time.monotonic() + seconds


def test_a_lower_share_returns_only_once_the_units_hold_it(plugin_path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as (control, r):
            await control.apply_campus_share(FakeShare(600.0), later(30))
            # the step's state is published once all its writes are back: the devices may show 600 kW a
            # moment before it (a loaded machine widens that moment)
            await eventually(lambda: sum(r.device_p()) == pytest.approx(600.0) and control.state.period >= 1
                             and control.state.delivered_p_kw == pytest.approx(600.0), 5, "600 kW on the devices")
            assert control.state.arbitration.source == CAMPUS_SOURCE
            assert control.state.arbitration.command_id == "campus:c-1"
            # a period of 0.5 s: without waiting for a step, the devices would still hold 600 kW here
            await control.apply_campus_share(FakeShare(200.0, command_id="c-2"), later(30))
            assert sum(r.device_p()) == pytest.approx(200.0)
            await control.apply_campus_share(None, -math.inf)  # released: 0 kW at once, not held
            assert r.device_p() == pytest.approx([0.0, 0.0])
            assert control.campus.settled_waits == 2

    asyncio.run(scenario())


def test_a_share_lapses_at_its_fencing_deadline_and_renewals_keep_it(plugin_path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, period_s=0.05) as (control, r):
            share = FakeShare(400.0)
            # deadlines 1.5 s ahead, renewed every 0.1 s: a loaded machine may stall the test's loop for
            # a second without the share lapsing between renewals (which would be right, and fail the test)
            first_deadline = later(1.5)
            await control.apply_campus_share(share, first_deadline)
            await eventually(lambda: sum(r.device_p()) == pytest.approx(400.0), 1.4, "400 kW on the devices")
            while time.monotonic() < first_deadline + 0.5:  # renewed past the first deadline: still in force
                await control.apply_campus_share(share, later(1.5))
                await asyncio.sleep(0.1)
            assert sum(r.device_p()) == pytest.approx(400.0)
            lapsed_at = time.monotonic() + 0.5
            await control.apply_campus_share(share, lapsed_at)
            # zero on loss, never held; the step publishes its state once its writes are back, a moment after
            # the devices show them
            await eventually(lambda: r.device_p() == pytest.approx([0.0, 0.0])
                             and control.state.arbitration.mode.value == "idle", 5, "0 kW and idle after the deadline")
            assert time.monotonic() >= lapsed_at

    asyncio.run(scenario())


def test_the_fence_refuses_increases_past_the_deadline_at_the_device_door(plugin_path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, period_s=0.05) as (control, r):
            await control.apply_campus_share(FakeShare(300.0), later(30))
            await eventually(lambda: sum(r.device_p()) == pytest.approx(300.0), 5, "300 kW")
            assert control.loop.fence is not None and control.loop.fence(CAMPUS_SOURCE) > time.monotonic()
            assert control.loop.fence("scada") is None
            control.campus.deadline = time.monotonic() - 1.0  # as if the process had slept past it
            control.arbiter.submit(CAMPUS_SOURCE, 500.0, 0.0, now=time.time(), command_id="campus:late")
            control.loop.poke()
            await eventually(lambda: control.loop.decisions_expired > 0, 5, "a refused increase")
            assert sum(r.device_p()) == pytest.approx(300.0)  # never raised past the deadline

    asyncio.run(scenario())


def test_campus_shares_are_never_journaled_and_campus_setpoints_never_restored(plugin_path,
                                                                              tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, period_s=0.05) as (control, r):
            await control.apply_campus_share(FakeShare(300.0, command_id="k-1"), later(30))
            await eventually(lambda: sum(r.device_p()) == pytest.approx(300.0), 5, "300 kW")
            entry = await control.journal_campus_setpoint(
                command_id="k-1", p_kw=900.0, q_kvar=0.0, principal="alice", received_at=time.time(),
                expires_at=None, note="committed at revision 7")
            assert entry.kind == "campus_setpoint" and entry.command_id == "campus:k-1"
            local = control.journal.get("k-1")
            assert local is None  # a local command may still use the id "k-1"
        async with running(tmp_path, period_s=0.05) as (restarted, _r):  # same state dir: a restart
            kinds = [(e.source, e.kind) for e in restarted.journal.tail(50)]
            assert (CAMPUS_SOURCE, "campus_setpoint") in kinds
            assert (CAMPUS_SOURCE, "setpoint") not in kinds  # the share itself was never journaled
            await eventually(lambda: restarted.loop.periods >= 3, 5, "a few control periods")
            assert restarted.state.arbitration.source is None  # nothing restored: only etcd gives a share

    asyncio.run(scenario())


def test_a_lower_share_returns_only_once_the_devices_deliver_it(plugin_path, tmp_path: Path) -> None:
    """Written is not delivered: a device that still outputs the old power holds the acknowledgement back."""
    from dataclasses import replace

    async def scenario() -> None:
        async with running(tmp_path, period_s=0.05) as (control, r):
            await control.apply_campus_share(FakeShare(600.0), later(30))
            await eventually(lambda: sum(r.device_p()) == pytest.approx(600.0), 5, "600 kW on the devices")
            lagging = r.drivers[0]
            honest_read = lagging.read

            async def still_at_300():  # the device's output lags its new setpoint
                return replace(await honest_read(), p_kw=300.0)

            lagging.read = still_at_300
            lower = asyncio.create_task(control.apply_campus_share(FakeShare(200.0, command_id="c-2"), later(30)))
            await eventually(lambda: sum(r.device_p()) == pytest.approx(200.0), 5, "the lower share written")
            await eventually(lambda: r.units[0].telemetry.p_kw == 300.0, 5, "the lag seen in telemetry")
            assert not lower.done()  # written, not yet delivered: not acknowledged
            del lagging.read  # the device catches up
            await asyncio.wait_for(lower, 5)
            assert control.campus.settled_waits == 1  # 600 from 0 was a pure increase: no wait

    asyncio.run(scenario())
