"""The control plane as one gateway service: journal, arbiter, command processor and control loop.

Built by the daemon from ``[control]`` and the running units. While the loop steps, every unit's
device-side heartbeat keeps going; when control stops stepping (crash, hung loop) the heartbeats stop and
each container's own watchdog takes it to standby — the last line of defence. On SIGTERM the daemon calls
:meth:`ControlService.drain` before cancelling anything, so the units are ramped to 0 kW while their
links still work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import propagate

from bessgw.config import ControlSection
from bessgw.control.arbitration import Arbiter
from bessgw.control.campus import CAMPUS_ID_PREFIX, CAMPUS_SOURCE, CampusInput, CampusShare
from bessgw.control.commands import Command, CommandProcessor, CommandResult, GatewayRange, Ranges
from bessgw.control.errors import CommandRejectedError, ControlError
from bessgw.control.journal import STATE_DIR_MODE, Journal, JournalEntry
from bessgw.control.loop import TRACER, ControlLoop, ControlState, UnitOverride, policies_from
from bessgw.plugin.roles import Logger
from bessgw.unit.supervisor import UnitSupervisor

#: seconds per day, for journal pruning
_DAY_S = 86_400.0
#: heartbeats are persisted this often, as a fraction of the shortest source timeout (a restart may
#: therefore see a source as silent up to this much earlier than it was: the safe direction)
_HEARTBEAT_PERSIST_FRACTION = 0.25


class ControlService:
    """Owns the control plane of one gateway for as long as its units and ``[control]`` stay the same."""

    def __init__(
        self,
        settings: ControlSection,
        units: Sequence[UnitSupervisor],
        state_dir: Path,
        log: Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.units = list(units)
        self.log = log
        self.clock = clock
        state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        self.journal = Journal.in_state_dir(state_dir, settings.journal_file)
        pruned = self.journal.prune(clock() - settings.journal_keep_days * _DAY_S)
        self.arbiter = Arbiter(policies_from(settings), hold_s=settings.hold_s, now=clock())
        self.loop = ControlLoop(self.units, self.arbiter, settings, clock=clock, log=log)
        self.processor = CommandProcessor(self.journal, self.arbiter, clock=clock,
                                          gateway_range=self._gateway_ranges, on_change=self.loop.poke,
                                          unit_target=self._unit_ranges, apply_unit=self._apply_unit)
        self._timeouts = {table.name: table.heartbeat_timeout_s for table in settings.sources}
        restored = self.processor.restore(self.journal.heartbeats(), self._timeouts)
        self._persisted_heard: dict[str, float] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self.campus = CampusInput(self.arbiter, self.loop, clock=clock, log=log,
                                  running=lambda: self._loop_task is not None and not self._loop_task.done())
        self.loop.fence = self.campus.fence
        self.started = asyncio.Event()  #: set once the control loop runs
        for unit in self.units:
            unit.heartbeat_gate = self.loop.healthy
        log.info("control_ready", units=len(self.units), restored=len(restored), pruned=pruned,
                 journal=str(self.journal.path))

    def _gateway_ranges(self) -> Ranges:
        return Ranges(clamp_to=self._nameplate_range(), refuse_outside=self._available_range(),
                      what="available on this gateway")

    def _available_range(self) -> GatewayRange:
        """What the commandable units can do now (strict commands are refused outside it)."""
        snaps = [unit.snapshot() for unit in self.units]
        limits = [snap.limits for snap in snaps if snap.commandable and snap.limits is not None]
        if not limits:
            raise CommandRejectedError("no unit of this gateway can be commanded now", code="unavailable")
        return GatewayRange(
            max_charge_kw=sum(lim.max_charge_kw for lim in limits),
            max_discharge_kw=sum(lim.max_discharge_kw for lim in limits),
            max_q_kvar=sum(lim.max_q_kvar for lim in limits),
        )

    def _unit(self, unit_id: str) -> UnitSupervisor:
        for unit in self.units:
            if unit.unit_id == unit_id:
                return unit
        raise CommandRejectedError(f"unit {unit_id} is not run by this gateway", code="unknown_unit")

    def _unit_ranges(self, command: Command) -> Ranges:
        """A unit command's target must exist; a setpoint needs it commandable, within its limits."""
        snap = self._unit(command.unit_id or "").snapshot()
        if command.kind != "setpoint":
            return Ranges(GatewayRange(), GatewayRange())
        if not snap.connected:
            raise CommandRejectedError(f"unit {snap.unit_id} is not connected", code="unavailable")
        if snap.limits is None:
            reason = snap.refused_reason or "not negotiated yet"
            raise CommandRejectedError(f"unit {snap.unit_id} cannot be commanded: {reason}", code="unavailable")
        limits = GatewayRange(snap.limits.max_charge_kw, snap.limits.max_discharge_kw, snap.limits.max_q_kvar)
        return Ranges(limits, limits, f"for unit {snap.unit_id}")

    def _apply_unit(self, result: CommandResult) -> None:
        """A unit command in force: an override in the control loop (envelope, ramp; the others re-share)."""
        if result.kind != "setpoint":
            self.loop.clear_override(result.unit_id)
            return
        expires_at = result.expires_at
        if expires_at is None:  # a unit override lives its source's heartbeat timeout unless repeated
            expires_at = result.received_at + self._timeouts.get(result.source, 0.0)
        try:
            self.loop.set_override(result.unit_id, UnitOverride(
                p_kw=result.applied_p_kw or 0.0, q_kvar=result.applied_q_kvar or 0.0, expires_at=expires_at,
                source=result.source, command_id=result.command_id))
        except KeyError:  # restored for a unit that is no longer configured
            self.log.info("unit_override_not_restored", unit=result.unit_id, command_id=result.command_id)

    def _nameplate_range(self) -> GatewayRange:
        """Commands are clamped to the units' nameplates (stable), not to momentary availability."""
        offers = [unit.capability for unit in self.units if unit.capability is not None]
        if not offers:
            return GatewayRange(math.inf, math.inf, math.inf)
        return GatewayRange(
            max_charge_kw=sum(offer.max_charge_kw for offer in offers),
            max_discharge_kw=sum(offer.max_discharge_kw for offer in offers),
            max_q_kvar=sum(offer.max_q_kvar for offer in offers),
        )

    def source_timeout_s(self, source: str) -> float:
        """The heartbeat timeout of ``source`` (how long its setpoints live unless repeated)."""
        for table in self.settings.sources:
            if table.name == source:
                return table.heartbeat_timeout_s
        raise KeyError(source)

    @property
    def state(self) -> ControlState:
        return self.loop.state

    async def submit(self, command: Command) -> CommandResult:
        """The one door for commands: journal (durably), apply, acknowledge; a repeated id has no effect.

        Raises :class:`CommandRejectedError` (with its ``code``) for refused commands, and
        :class:`ControlError` when control is stopping.
        """
        attributes = {"command.source": command.source[:128], "command.kind": command.kind[:32],
                      "command.unit": (command.unit_id or "")[:128]}
        with TRACER.start_as_current_span("control.submit", attributes=attributes):
            if self.arbiter.stopping:
                raise ControlError("the gateway is stopping: commands are not accepted")
            if not command.traceparent:  # the journal keeps the trace the command belongs to
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                command = dataclasses.replace(command, traceparent=carrier.get("traceparent", ""))
            with TRACER.start_as_current_span("journal.append"):
                result = await self.processor.submit_async(command)
            self.loop.trace_next_step()  # the step this command poked (arbitration, allocation, writes)
            return result

    def heartbeat(self, source: str) -> None:
        """``source`` is alive: its setpoint stays in force (it must have sent one)."""
        self.processor.heartbeat(source)

    async def apply_campus_share(self, share: CampusShare | None, fence_deadline_monotonic: float) -> None:
        """This gateway's campus share as the ``campus`` source, fenced (:mod:`bessgw.control.campus`).

        Called by campus dispatch on every change and renewal; ``None`` releases it (0 kW at once). A lower
        share returns only once it is written to the units. Raises :class:`ControlError` when that cannot
        be confirmed (the share must then not be acknowledged). Never journaled: see the module.
        """
        if CAMPUS_SOURCE not in self.arbiter.sources:
            if share is not None:
                raise ControlError(f"no {CAMPUS_SOURCE!r} source in [[control.sources]]: campus shares cannot apply")
            return
        await self.campus.apply(share, fence_deadline_monotonic)

    async def journal_campus_setpoint(self, *, command_id: str, p_kw: float, q_kvar: float, principal: str,
                                      received_at: float, expires_at: float | None, note: str,
                                      traceparent: str = "") -> JournalEntry:
        """Journal a campus setpoint this gateway accepted (and etcd committed), for the record only.

        Kind ``campus_setpoint`` and an id namespaced with ``campus:``: restore never re-applies it (only
        etcd with a live lease gives a share), and it cannot collide with a local command id.
        """
        entry, _new = await asyncio.to_thread(
            self.journal.record, command_id=CAMPUS_ID_PREFIX + command_id, kind="campus_setpoint",
            source=CAMPUS_SOURCE, principal=principal, received_at=received_at, requested_p_kw=p_kw,
            requested_q_kvar=q_kvar, expires_at=expires_at, note=note[:200], traceparent=traceparent)
        return entry

    async def run(self) -> None:
        loop_task = asyncio.create_task(self.loop.run(), name="control-loop")
        self._loop_task = loop_task
        self.started.set()
        try:
            await self._bookkeeping(loop_task)
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            for unit in self.units:
                if unit.heartbeat_gate == self.loop.healthy:
                    unit.heartbeat_gate = None
            try:
                self._persist_state()  # a reload builds a new service: it restores from what is written here
            except ControlError as err:
                self.log.warning("control_state_not_persisted", error=str(err))
            self.journal.close()

    async def _bookkeeping(self, loop_task: asyncio.Task[None]) -> None:
        """Journal the fail-safe's drops and persist heartbeats, while the control loop runs."""
        interval = max(0.05, min(self.settings.period_s,
                                 _HEARTBEAT_PERSIST_FRACTION * min(self._timeouts.values(), default=1.0)))
        while not loop_task.done():
            await asyncio.wait({loop_task}, timeout=interval)
            try:
                await asyncio.to_thread(self._persist_state)
            except ControlError as err:  # the journal is failing: commands will be refused too
                self.log.error("control_state_not_persisted", error=str(err))
        loop_task.result()  # a loop that ended raises here (the daemon restarts the service)

    def _persist_state(self) -> None:
        """Write the drops and the heartbeats that changed (blocking: runs in a worker thread)."""
        now = self.clock()
        for source, command_id, reason in self.arbiter.take_dropped():
            entry = self.journal.record_drop(source=source, unit_id="", command_id=command_id or "setpoint",
                                             reason=reason, at=now)
            self.log.info("setpoint_dropped", source=source, command_id=command_id, reason=reason, seq=entry.seq)
        heard = {source: at for source, at in self.arbiter.heard_at().items()
                 if self._persisted_heard.get(source) != at}
        if heard:
            self.journal.record_heartbeats(heard)
            self._persisted_heard.update(heard)


    async def drain(self) -> None:
        """Ramp every unit to 0 kW (if configured) while the links still work; bounded in time."""
        try:
            state = await asyncio.wait_for(self.loop.stop(), self.settings.stop_timeout_s + 1.0)
            self.log.info("control_drained", delivered_p_kw=round(state.delivered_p_kw, 1))
        except (asyncio.TimeoutError, TimeoutError):
            self.log.warning("control_drain_timeout", timeout_s=self.settings.stop_timeout_s)
        finally:
            self.campus.drained = True  # the loop writes nothing more: a campus release needs no wait now
