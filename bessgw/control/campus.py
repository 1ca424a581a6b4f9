"""The ``campus`` setpoint source: a gateway's campus share, fenced, fed to arbitration.

Campus dispatch (a layer above) hands this gateway its share of the campus setpoint together with a
*fencing deadline* on the monotonic clock: the moment after which the share may already belong to another
gateway. :class:`CampusInput` turns that into what control understands:

- the share becomes the ``campus`` source's setpoint in the arbiter, expiring at the wall-clock
  equivalent of the deadline (or the campus setpoint's own expiry, if sooner). Every delivery renews it,
  so the source lives exactly as long as the campus keeps vouching for the share. ``campus`` is a
  zero-on-loss source: when it lapses or is released the target drops to 0 kW at once, never held;
- the control loop's fence for ``campus`` is the deadline: every device write that raises ``|P|`` or
  ``|Q|`` for a campus decision is refused past it, immediately before the write (a process paused past
  its deadline wakes up and writes nothing old);
- a change that is not a pure increase (a decrease, a sign change, a release) returns only once a control
  step that *began after* the change has completed without a write error, i.e. once the lower values are
  written to the units, **and** each unit's own telemetry, read after that write, shows it delivering no
  more than it was commanded (a device follows its setpoint one control cycle later; writing is not
  delivering). Campus dispatch acknowledges the share in etcd when this returns, and the allocator then
  commits increases on other gateways: the order "decrease here, then increase there" holds on the
  devices' actual output, not only on their setpoint registers. A unit whose telemetry is not Good is not
  waited for: control does not count it as available and commands it 0 kW, and its own watchdog backs that
  up.

A share that changes the value in force is traced: a ``campus.share`` span, child of the ``traceparent``
the allocator copied from the campus setpoint into the share, and the control step it pokes (with its
unit writes) under it — so one campus command is one trace from the accepting gateway's accept span to
the device writes of every gateway.

A share is never journaled as a local command: after a restart only etcd, with a live lease, gives a
gateway a share again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol

from opentelemetry import propagate

from bessgw.compat import timeout
from bessgw.control.arbitration import Arbiter
from bessgw.control.errors import ControlError
from bessgw.control.loop import TRACER, ControlLoop
from bessgw.model import Quality
from bessgw.plugin.roles import Logger

#: the control source campus shares arrive as (``[[control.sources]]``)
CAMPUS_SOURCE = "campus"
#: arbiter command ids of campus shares carry this prefix, so they never collide with local command ids
CAMPUS_ID_PREFIX = "campus:"
#: how long a lower share may take to show in the units' telemetry, plus three poll intervals
SETTLE_BOUND_S = 2.0
#: a unit "delivers no more than commanded" within this much (measurement resolution, rounding)
DELIVERY_TOLERANCE_KW = 0.5
DELIVERY_TOLERANCE_RATIO = 0.005


class CampusShare(Protocol):
    """What control needs of a campus share (campus dispatch's ``Share`` record has these fields)."""

    @property
    def p_kw(self) -> float: ...

    @property
    def q_kvar(self) -> float: ...

    @property
    def command_id(self) -> str: ...

    @property
    def expires_at(self) -> float | None: ...

    @property
    def traceparent(self) -> str: ...


class CampusSettleError(ControlError):
    """A lower campus share was not confirmed written to the units in time (the loop is stuck or stopped
    mid-step): campus dispatch must not acknowledge it yet."""


class CampusInput:
    """The campus source of one control plane (module docstring)."""

    def __init__(self, arbiter: Arbiter, loop: ControlLoop, *, clock: Callable[[], float],
                 running: Callable[[], bool], log: Logger | None = None) -> None:
        self.arbiter = arbiter
        self.loop = loop
        self.clock = clock
        self._running = running
        self.log = log
        #: monotonic time after which campus decisions may not raise power (-inf: no share)
        self.deadline = -math.inf
        self._value: tuple[float, float] | None = None  # the share in force (P, Q), None: none
        self.deliveries = 0
        self.settled_waits = 0
        #: set by the control service once its stop (ramp to 0 kW) is over: nothing writes any more
        self.drained = False

    def fence(self, source: str) -> float | None:
        """The control loop's ``fence``: the campus deadline for campus decisions, no fence for the others."""
        return self.deadline if source == CAMPUS_SOURCE else None

    async def apply(self, share: CampusShare | None, fence_deadline_monotonic: float) -> None:
        """Put ``share`` in force until ``fence_deadline_monotonic`` (``None``: release, 0 kW at once).

        Returns once a lower value is written (module docstring). Raises :class:`CampusSettleError` when
        that cannot be confirmed within the bound, and :class:`ControlError` when control is stopping (its
        ramp to 0 kW may still be under way): either way the share must not be acknowledged yet.
        """
        self.deliveries += 1
        previous = self._value
        now = self.clock()
        if share is None or not math.isfinite(fence_deadline_monotonic) or \
                fence_deadline_monotonic <= time.monotonic():
            self.deadline = -math.inf
            self._value = None
            self.arbiter.release(CAMPUS_SOURCE, now=now)
            value = (0.0, 0.0)
        else:
            value = (float(share.p_kw), float(share.q_kvar))
            expires_at = now + (fence_deadline_monotonic - time.monotonic())
            if share.expires_at is not None:
                expires_at = min(expires_at, share.expires_at)
            # the fence first: a step deciding between these two lines must not use an old, later deadline
            self.deadline = fence_deadline_monotonic
            self.arbiter.submit(CAMPUS_SOURCE, value[0], value[1], now=now, expires_at=expires_at,
                                command_id=CAMPUS_ID_PREFIX + share.command_id)
            self._value = value
        if self._value == previous:
            return  # a renewal: the value in force did not change
        traceparent = share.traceparent if share is not None else ""
        if not traceparent:
            await self._changed(previous, value)
            return
        parent = propagate.extract({"traceparent": traceparent[:64]})
        with TRACER.start_as_current_span("campus.share", context=parent, attributes={
                "campus.command_id": share.command_id[:128] if share is not None else "",
                "campus.share_p_kw": value[0], "campus.share_q_kvar": value[1]}):
            self.loop.trace_next_step()  # the step this share pokes, and its writes, join the campus trace
            await self._changed(previous, value)

    async def _changed(self, previous: tuple[float, float] | None, value: tuple[float, float]) -> None:
        """A new value is in force: step now; a lower one returns only once written (module docstring)."""
        self.loop.poke()
        old = previous or (0.0, 0.0)
        if value != old and not _pure_increase(old, value):
            await self._settled()

    async def _settled(self) -> None:
        """Wait (bounded) for a control step that began after now to complete."""
        if self.arbiter.stopping and not self.drained:
            raise ControlError("control is stopping: the units are being driven to 0 kW")
        if not self._running():
            return  # no loop runs: nothing writes to the units, so nothing of the old share can be written
        target = self.loop.steps_begun + 1
        bound_s = 2.0 * self.loop.write_timeout_s + self.loop.period_s
        try:
            async with timeout(bound_s):
                while self.loop.periods < target:
                    await self.loop.stepped.wait()
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes on Python 3.10
            raise CampusSettleError(f"the lower campus share was not written within {bound_s:g} s") from None
        errors = self.loop.state.write_errors
        if errors:  # a unit may still run at the higher value: no acknowledgement, the share comes again
            raise CampusSettleError(f"the lower campus share could not be written to {', '.join(sorted(errors))}")
        await self._delivered(time.time())
        self.settled_waits += 1

    async def _delivered(self, written_at: float) -> None:
        """Wait (bounded) until every unit's telemetry read after ``written_at`` shows at most its command."""
        commanded = self.loop.state.setpoints
        units = [unit for unit in self.loop.units if unit.unit_id in commanded]
        bound_s = SETTLE_BOUND_S + 3 * max((unit.timing.poll_interval_s for unit in units), default=0.0)
        try:
            async with timeout(bound_s):
                for unit in units:
                    p_kw, _q_kvar = commanded[unit.unit_id]
                    while True:
                        snap = unit.snapshot()
                        telemetry = snap.telemetry
                        if telemetry.quality is not Quality.GOOD or not snap.connected:
                            break  # not available to control: commanded 0 kW, and its watchdog acts
                        if telemetry.timestamp >= written_at and _within(telemetry.p_kw, p_kw):
                            break
                        await unit.wait_update(bound_s)
        except (TimeoutError, asyncio.TimeoutError):
            raise CampusSettleError(f"the units did not show the lower campus share within {bound_s:g} s"
                                    ) from None


def _within(measured_kw: float, commanded_kw: float) -> bool:
    """A unit delivers no more than commanded (on the same side), up to a small measurement tolerance."""
    if math.isnan(measured_kw):
        return False
    tolerance = max(DELIVERY_TOLERANCE_KW, DELIVERY_TOLERANCE_RATIO * abs(commanded_kw))
    if abs(measured_kw) <= tolerance:
        return True
    return measured_kw * commanded_kw > 0.0 and abs(measured_kw) <= abs(commanded_kw) + tolerance


def _pure_increase(old: tuple[float, float], new: tuple[float, float]) -> bool:
    """Whether ``new`` only raises (or keeps) ``|P|`` and ``|Q|`` on the side of ``old`` (any side from 0)."""
    def up(before: float, after: float) -> bool:
        return before == 0.0 or (before * after > 0 and abs(after) >= abs(before))
    return up(old[0], new[0]) and up(old[1], new[1])
