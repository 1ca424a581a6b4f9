"""The control loop: one task that, every period, arbitrates, allocates, gates and writes.

Each period (:meth:`ControlLoop.step`):

1. take every unit's snapshot; a unit is *available* when it is connected, negotiated, its telemetry is
   good and younger than its ``stale_after_s``, and it reports RUNNING. Others are excluded (the reason
   is kept) and, if they can still be written to and were last given a non-zero setpoint, commanded to
   0 kW;
2. ask the :class:`~bessgw.control.arbitration.Arbiter` for the gateway target (source, hold, ramp to 0);
3. split it with :func:`~bessgw.control.allocation.allocate` over the available units;
4. pass every value through the safety envelope (:func:`~bessgw.control.envelope.gate_arrays`) — the
   last gate, whatever computed the value;
5. write the changed values to the units, each write bounded by ``write_timeout_s``: first every
   decrease of ``|P|``/``|Q|`` in parallel, then every increase in parallel — only once the decreases are
   confirmed, so a share moving between units never adds up to more than the target on the way
   (:meth:`ControlLoop._write_in_order`). A slow or hung unit costs only its own write, except that a
   decrease it fails holds back that step's increases: the safe state wins.

The ramp of each unit starts from the last value *successfully* written to it. The loop does not own the
device-side heartbeats (the unit supervisors do); :meth:`ControlLoop.healthy` tells the daemon whether
control is still running, so it can stop them and let the containers' own watchdogs act.

Shutdown: cancel :meth:`run`, then ``await stop()``: with ``ramp_to_zero_on_stop`` the target ramps to
0 at the aggregate ramp and the loop keeps stepping until every unit was written 0 kW (bounded by
``stop_timeout_s``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from bessgw.compat import timeout
from bessgw.config import ControlSection
from bessgw.control.allocation import Allocation, Allocator, Fleet
from bessgw.control.arbitration import Arbiter, ArbitrationState, SourcePolicy
from bessgw.control.envelope import gate_arrays
from bessgw.errors import DecisionExpiredError
from bessgw.model import Quality, Setpoint, UnitState, no_more_power
from bessgw.plugin.roles import Logger
from bessgw.timing import DurationHistogram
from bessgw.unit.snapshot import UnitSnapshot
from bessgw.unit.supervisor import UnitSupervisor

#: spans of the command path (no-op unless the daemon installed a tracer provider: [tracing])
TRACER = trace.get_tracer("bessgw.control")

#: values closer than this to the last written one are not written again
_WRITE_EPSILON = 1e-6
#: the outcome of an increase not written because a decrease of its step was not confirmed
_HELD = "held: a decrease of the same step was not confirmed"


def policies_from(settings: ControlSection) -> list[SourcePolicy]:
    """The ``[[control.sources]]`` table as arbitration policies."""
    return [SourcePolicy(s.name, s.priority, s.heartbeat_timeout_s, s.on_loss) for s in settings.sources]


@dataclass(frozen=True)
class ControlState:
    """What control did in one period (for northbound, metrics, logs and tests)."""

    at: float
    period: int
    arbitration: ArbitrationState
    target_p_kw: float
    target_q_kvar: float
    delivered_p_kw: float  # sum of what the units were commanded this period
    delivered_q_kvar: float
    shortfall_p_kw: float
    shortfall_q_kvar: float
    setpoints: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # unit -> (p, q) commanded
    excluded: Mapping[str, str] = field(default_factory=dict)  # unit -> why it gets nothing
    overrides: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # unit -> (p, q) overridden
    write_errors: Mapping[str, str] = field(default_factory=dict)  # unit -> why its write failed


def _unavailable_reason(snap: UnitSnapshot, now: float, stale_after_s: float) -> str:
    telemetry = snap.telemetry
    if snap.limits is None:
        return f"not negotiated ({snap.refused_reason})" if snap.refused_reason else "not negotiated"
    if telemetry.quality is not Quality.GOOD:
        return f"telemetry {telemetry.quality.value}" + (f": {telemetry.quality_reason}"
                                                          if telemetry.quality_reason else "")
    if not snap.connected:
        return "not connected"
    age = telemetry.age_s(now)
    if age > stale_after_s:
        return f"telemetry {age:.1f} s old (stale after {stale_after_s:g} s)"
    if telemetry.state is not UnitState.RUNNING:
        return f"state {telemetry.state.value}"
    return ""


@dataclass(frozen=True, slots=True)
class UnitOverride:
    """A setpoint for one unit (OPC UA ``SetPower`` on a unit), taking it out of the allocation."""

    p_kw: float
    q_kvar: float
    expires_at: float
    source: str = "scada"
    command_id: str = ""


class ControlLoop:
    """Runs dispatch for one gateway's units; one instance, one task (:meth:`run`)."""

    def __init__(
        self,
        units: Sequence[UnitSupervisor],
        arbiter: Arbiter,
        settings: ControlSection,
        *,
        clock: Callable[[], float] = time.time,
        log: Logger | None = None,
    ) -> None:
        self.units = list(units)
        self.arbiter = arbiter
        self.settings = settings
        self.clock = clock
        self.log = log
        self.period_s = settings.period_s
        # a Modbus write with read-back is two round trips: never less than 0.5 s by default
        self.write_timeout_s = settings.write_timeout_s or max(settings.period_s, 0.5)
        self._present = np.zeros(len(self.units))  # last value successfully written, per unit
        self._present_q = np.zeros(len(self.units))
        self._written_ok = np.zeros(len(self.units), dtype=bool)  # does the unit hold _present for sure?
        self.periods = 0  # steps completed
        self.steps_begun = 0  # steps begun (a step that began after a change has seen it)
        self.step_duration = DurationHistogram()  # of each completed step, writes included (metrics)
        self.envelope_clamps = 0  # unit values the safety envelope changed (limits or ramps), for metrics
        self._trace_context: otel_context.Context | None = None  # the next step continues this trace
        self.last_step_at: float | None = None
        self._poked = asyncio.Event()
        self._failing: set[str] = set()  # units whose last write failed (logged once, not every period)
        self.allocation: Allocation | None = None
        self._allocator = Allocator(settings.soc_balance_gain)
        self._state = ControlState(clock(), 0, arbiter.state, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self.stepped = asyncio.Event()  # set after every period; tests and the daemon may wait on it
        self.overrides: dict[str, UnitOverride] = {}
        #: a source's own deadline for acting on its target (campus fencing), monotonic; None: none
        self.fence: Callable[[str], float | None] | None = None
        self.decisions_expired = 0  # writes dropped at the device door because their decision was too old
        self.write_timeouts = 0  # unit writes that did not finish within write_timeout_s (benches, metrics)
        self.increases_held = 0  # unit increases not written because a decrease of their step failed (metrics)
        self._holding = False  # the last step with increases held them (logged once per run)
        self._overridden = np.zeros(len(self.units), dtype=bool)

    @property
    def state(self) -> ControlState:
        return self._state

    def healthy(self, now: float | None = None) -> bool:
        """Whether control stepped recently (within three periods); gate device heartbeats on this."""
        if self.last_step_at is None:
            return False
        return (self.clock() if now is None else now) - self.last_step_at <= 3 * self.period_s

    # --------------------------------------------------------------------------------- fleet

    def set_override(self, unit_id: str, override: UnitOverride) -> None:
        """Drive one unit at ``override`` instead of its allocated share until it expires.

        The unit leaves the allocation (its share moves to the others) but its value still passes the
        safety envelope and ramp rule like every other write.
        """
        if unit_id not in {unit.unit_id for unit in self.units}:
            raise KeyError(unit_id)
        self.overrides[unit_id] = override
        self.poke()

    def clear_override(self, unit_id: str) -> None:
        if self.overrides.pop(unit_id, None) is not None:
            self.poke()

    def _active_overrides(self, now: float) -> dict[str, UnitOverride]:
        for unit_id, override in list(self.overrides.items()):
            if now >= override.expires_at:
                del self.overrides[unit_id]
                if self.log is not None:
                    self.log.info("unit_override_expired", unit=unit_id, source=override.source)
        return self.overrides

    def _fleet(self, now: float) -> tuple[Fleet, dict[int, str], list[UnitSnapshot]]:
        count = len(self.units)
        fleet = Fleet.empty(count)
        excluded: dict[int, str] = {}
        overrides = self._active_overrides(now)
        self._overridden = np.zeros(count, dtype=bool)
        snaps = []
        for index, unit in enumerate(self.units):
            snap = unit.snapshot()
            snaps.append(snap)
            reason = _unavailable_reason(snap, unit.clock(), snap.stale_after_s)
            limits = snap.limits
            if limits is not None:
                fleet.max_charge_kw[index] = limits.max_charge_kw
                fleet.max_discharge_kw[index] = limits.max_discharge_kw
                fleet.max_q_kvar[index] = limits.max_q_kvar
                fleet.ramp_kw_per_s[index] = limits.ramp_kw_per_s
                fleet.soc_min_pct[index] = limits.soc_min_pct
                fleet.soc_max_pct[index] = limits.soc_max_pct
            fleet.soc_pct[index] = snap.telemetry.soc_pct
            fleet.present_p_kw[index] = self._present[index]
            if reason:
                excluded[index] = reason
            elif unit.unit_id in overrides:
                self._overridden[index] = True  # driven by its override, not by allocation
            else:
                fleet.available[index] = True
        return fleet, excluded, snaps

    def _aggregate_ramp(self, fleet: Fleet) -> float:
        if self.settings.fail_safe_ramp_kw_per_s is not None:
            return self.settings.fail_safe_ramp_kw_per_s
        ramps = fleet.ramp_kw_per_s[fleet.available]
        return float(ramps.sum()) if len(ramps) else math.inf

    # ---------------------------------------------------------------------------------- step

    def trace_next_step(self) -> None:
        """The next step (and its writes) belongs to the caller's trace, if one is being recorded."""
        if trace.get_current_span().get_span_context().is_valid:
            self._trace_context = otel_context.get_current()

    def poke(self) -> None:
        """A new target arrived: step now rather than at the next period (for :meth:`run`)."""
        self._poked.set()

    def _deadline(self, decided_at: float, source: str | None) -> float:
        """The monotonic deadline of this period's decision: the write timeout, or a source's own fence."""
        deadline = decided_at + self.write_timeout_s
        if self.fence is not None and source is not None:
            fence = self.fence(source)
            if fence is not None:
                deadline = min(deadline, fence)
        return deadline

    async def step(self) -> ControlState:
        """One control period: arbitrate, allocate, gate, write (module docstring).

        A step that a traced command poked is a span of that trace, each write a child span of it.
        """
        traced, self._trace_context = self._trace_context, None
        if traced is None:
            return await self._step()
        with TRACER.start_as_current_span("control.step", context=traced) as span:
            state = await self._step()
            span.set_attribute("control.mode", state.arbitration.mode.value)
            span.set_attribute("control.target_p_kw", state.target_p_kw)
            span.set_attribute("control.shortfall_p_kw", state.shortfall_p_kw)
            return state

    async def _step(self) -> ControlState:
        self.steps_begun += 1
        decided_at = time.monotonic()
        now = self.clock()
        # ramps are per second: a step sooner than a period (poke) may only move by the time that passed
        dt = self.period_s if self.last_step_at is None else min(max(now - self.last_step_at, 0.0), self.period_s)
        fleet, excluded, snaps = self._fleet(now)
        decision = self.arbiter.decide(now, ramp_kw_per_s=self._aggregate_ramp(fleet))
        result = self._allocator.allocate(fleet, decision.target_p_kw, decision.target_q_kvar, dt_s=dt)
        self.allocation = result
        wanted_p, wanted_q = np.array(result.p_kw, dtype=float), np.array(result.q_kvar, dtype=float)
        overridden = self._overridden
        for index in np.flatnonzero(overridden):
            override = self.overrides[self.units[index].unit_id]
            wanted_p[index], wanted_q[index] = override.p_kw, override.q_kvar
        writable = fleet.available | overridden
        p, q = gate_arrays(wanted_p, wanted_q, present_p_kw=fleet.present_p_kw,
                           max_charge_kw=np.where(writable, fleet.max_charge_kw, 0.0),
                           max_discharge_kw=np.where(writable, fleet.max_discharge_kw, 0.0),
                           max_q_kvar=np.where(writable, fleet.max_q_kvar, 0.0),
                           ramp_kw_per_s=fleet.ramp_kw_per_s, dt_s=dt)
        self.envelope_clamps += int(np.count_nonzero((np.abs(p - wanted_p) > _WRITE_EPSILON)
                                                     | (np.abs(q - wanted_q) > _WRITE_EPSILON)))
        writes = []
        for index, unit in enumerate(self.units):
            changed = (abs(p[index] - self._present[index]) > _WRITE_EPSILON
                       or abs(q[index] - self._present_q[index]) > _WRITE_EPSILON)
            if index in excluded:
                # an excluded unit is commanded to 0 kW once, if it can still be reached
                if snaps[index].limits is None or not snaps[index].connected:
                    # unreachable: what it runs at is unknown, so its ramp restarts from 0 when it is back
                    # (a conservative start: any first write is then an increase from 0 or a decrease)
                    self._present[index] = self._present_q[index] = 0.0
                    self._written_ok[index] = False
                    continue
                if not changed and self._written_ok[index]:
                    continue
            elif not changed and self._written_ok[index]:
                continue
            setpoint = Setpoint(p_kw=float(p[index]), q_kvar=float(q[index]),
                                command_id=decision.command_id, source=decision.source or decision.mode.value,
                                issued_at=now)
            writes.append((index, unit, setpoint))
        outcomes = await self._write_in_order(writes, self._deadline(decided_at, decision.source))
        errors: dict[str, str] = {}
        for (index, unit, _setpoint), (written, error) in zip(writes, outcomes, strict=True):
            if error is _HELD:  # not written: the unit keeps its last command, the next period decides again
                p[index], q[index] = self._present[index], self._present_q[index]
                continue
            if written is not None:
                self._present[index] = written.p_kw
                self._present_q[index] = written.q_kvar
                self._written_ok[index] = True
            else:
                self._written_ok[index] = False
                errors[unit.unit_id] = error
        self.periods += 1
        self.last_step_at = now
        commanded_p = float(p.sum())
        commanded_q = float(q.sum())
        allocated_p = float(p[~overridden].sum())  # the target is met by the allocated units only
        allocated_q = float(q[~overridden].sum())
        self._state = ControlState(
            at=now,
            period=self.periods,
            arbitration=decision,
            target_p_kw=decision.target_p_kw,
            target_q_kvar=decision.target_q_kvar,
            delivered_p_kw=commanded_p,
            delivered_q_kvar=commanded_q,
            shortfall_p_kw=decision.target_p_kw - allocated_p,
            shortfall_q_kvar=decision.target_q_kvar - allocated_q,
            setpoints=MappingProxyType({unit.unit_id: (float(p[i]), float(q[i])) for i, unit in enumerate(self.units)}),
            excluded=MappingProxyType({self.units[i].unit_id: why for i, why in excluded.items()}),
            write_errors=MappingProxyType(errors),
            overrides=MappingProxyType({self.units[i].unit_id: (float(p[i]), float(q[i]))
                                        for i in np.flatnonzero(overridden)}),
        )
        self.stepped.set()
        self.stepped = asyncio.Event()
        self.step_duration.observe(time.monotonic() - decided_at)
        return self._state

    async def _write_in_order(self, writes: list[tuple[int, UnitSupervisor, Setpoint]],
                              deadline: float) -> list[tuple[Setpoint | None, str]]:
        """Write the decreases, then — once every decrease is confirmed — the increases; outcomes in order.

        Within one gateway, a share moving from one unit to another (SOC balancing, a unit excluded, an
        override) is a decrease on one and an increase on the other: written at the same time, the increase
        may reach its device first and the gateway delivers more than its target for a moment. So the
        increases wait for the decreases, and are not written at all (:data:`_HELD`, counted in
        ``increases_held``) if a decrease failed or timed out: that unit may still run at its higher value.
        The next period decides again. Decreases are never held and never expire.
        """
        kinds = [no_more_power(self._present[index], self._present_q[index], setpoint.p_kw, setpoint.q_kvar)
                 for index, _unit, setpoint in writes]
        outcomes: list[tuple[Setpoint | None, str]] = [(None, _HELD)] * len(writes)
        decreases = [position for position, decrease in enumerate(kinds) if decrease]
        increases = [position for position, decrease in enumerate(kinds) if not decrease]
        await self._write_group(writes, decreases, None, outcomes)
        unconfirmed = sorted(writes[position][1].unit_id for position in decreases if outcomes[position][0] is None)
        if unconfirmed and increases:
            self.increases_held += len(increases)
            if not self._holding and self.log is not None:  # logged once per run of held steps
                self.log.warning("control_increases_held", units=len(increases), decreases_failed=unconfirmed[:10],
                                 decreases_failed_count=len(unconfirmed))
            self._holding = True
            return outcomes
        if self._holding and increases:
            self._holding = False
            if self.log is not None:
                self.log.info("control_increases_resumed")
        await self._write_group(writes, increases, deadline, outcomes)
        return outcomes

    async def _write_group(self, writes: list[tuple[int, UnitSupervisor, Setpoint]], positions: list[int],
                           not_after: float | None, outcomes: list[tuple[Setpoint | None, str]]) -> None:
        """Write ``writes[positions]`` in parallel (one unit's trouble is its own) into ``outcomes``."""
        if not positions:
            return
        results = await asyncio.gather(*(self._write(writes[position][1], writes[position][2], not_after)
                                         for position in positions))
        for position, outcome in zip(positions, results, strict=True):
            outcomes[position] = outcome

    async def _write(self, unit: UnitSupervisor, setpoint: Setpoint,
                     not_after: float | None) -> tuple[Setpoint | None, str]:
        """Write one unit, bounded; the device boundary of control (a failure is that unit's only)."""
        if not trace.get_current_span().get_span_context().is_valid:
            return await self._write_unit(unit, setpoint, not_after)
        # a child of the step, but never made current: nothing under a write opens a span, and attaching
        # and detaching the context was a quarter of the span's cost on the loop (200 writes per command)
        span = TRACER.start_span("unit.write", attributes={"unit": unit.unit_id, "transport": unit.spec.transport,
                                                           "setpoint.p_kw": setpoint.p_kw})
        try:
            written, error = await self._write_unit(unit, setpoint, not_after)
            span.set_attribute("result", "ok" if written is not None else "error")
            if error:
                span.set_status(trace.Status(trace.StatusCode.ERROR, error[:200]))
            return written, error
        finally:
            span.end()

    async def _write_unit(self, unit: UnitSupervisor, setpoint: Setpoint,
                          not_after: float | None) -> tuple[Setpoint | None, str]:
        try:
            async with timeout(self.write_timeout_s):
                written = await unit.apply(setpoint, not_after=not_after)
            if unit.unit_id in self._failing:
                self._failing.discard(unit.unit_id)
                if self.log is not None:
                    self.log.info("control_write_recovered", unit=unit.unit_id)
            return written, ""
        except asyncio.CancelledError:
            raise
        except (TimeoutError, asyncio.TimeoutError):  # distinct classes on Python 3.10
            self.write_timeouts += 1
            error = f"write timed out after {self.write_timeout_s:g} s"
        except DecisionExpiredError as err:  # paused or delayed: the next period decides again
            self.decisions_expired += 1
            error = str(err)
        except Exception as err:  # device boundary: a driver bug must not stop control of the others
            error = f"{type(err).__name__}: {err}"
        if self.log is not None and unit.unit_id not in self._failing:  # logged once per failure run
            self.log.warning("control_write_failed", unit=unit.unit_id, error=error)
        self._failing.add(unit.unit_id)
        return None, error

    # ----------------------------------------------------------------------------------- run

    async def run(self) -> None:
        """Step every ``period_s``, and at once after :meth:`poke`, until cancelled.

        A poked step does not shift the periodic schedule; missed periods are skipped, not bunched.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._poked.clear()
            await self.step()
            now = loop.time()
            if next_at <= now:
                next_at += self.period_s
                if next_at <= now:  # overran: skip the missed slots
                    next_at = now + self.period_s - ((now - next_at) % self.period_s)
            if self._poked.is_set():
                await asyncio.sleep(0)  # poked while stepping: step again, after letting others run
                continue
            try:
                async with timeout(next_at - now):
                    await self._poked.wait()
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def stop(self) -> ControlState:
        """After :meth:`run` was cancelled: ramp to 0 kW if configured, bounded by ``stop_timeout_s``."""
        if not self.settings.ramp_to_zero_on_stop:
            return self._state
        self.arbiter.stop(now=self.clock())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.stop_timeout_s
        while True:
            state = await self.step()
            settled = state.arbitration.target_p_kw == 0.0 and not state.write_errors and all(
                abs(p) <= _WRITE_EPSILON for p, _q in state.setpoints.values())
            if settled or loop.time() >= deadline:
                return state
            await asyncio.sleep(min(self.period_s, max(0.0, deadline - loop.time())))
