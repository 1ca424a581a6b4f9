"""The control plane as one gateway service: journal, arbiter, command processor and control loop.

Built by the daemon from ``[control]`` and the running units. While the loop steps, every unit's
device-side heartbeat keeps going; when control stops stepping (crash, hung loop) the heartbeats stop and
each container's own watchdog takes it to standby — the last line of defence. On SIGTERM the daemon calls
:meth:`ControlService.drain` before cancelling anything, so the units are ramped to 0 kW while their
links still work.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bessgw.config import ControlSection
from bessgw.control.arbitration import Arbiter
from bessgw.control.commands import Command, CommandProcessor, CommandResult, GatewayRange
from bessgw.control.journal import STATE_DIR_MODE, Journal
from bessgw.control.loop import ControlLoop, ControlState, policies_from
from bessgw.plugin.roles import Logger
from bessgw.southbound.unit import UnitSupervisor

#: seconds per day, for journal pruning
_DAY_S = 86_400.0


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
                                          gateway_range=self._nameplate_range, on_change=self.loop.poke)
        restored = self.processor.restore()
        for unit in self.units:
            unit.heartbeat_gate = self.loop.healthy
        log.info("control_ready", units=len(self.units), restored=len(restored), pruned=pruned,
                 journal=str(self.journal.path))

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
        """Journal (durably) and apply a command; a repeated id returns the first result."""
        return await self.processor.submit_async(command)

    async def run(self) -> None:
        try:
            await self.loop.run()
        finally:
            for unit in self.units:
                if unit.heartbeat_gate == self.loop.healthy:
                    unit.heartbeat_gate = None
            self.journal.close()

    async def drain(self) -> None:
        """Ramp every unit to 0 kW (if configured) while the links still work; bounded in time."""
        try:
            state = await asyncio.wait_for(self.loop.stop(), self.settings.stop_timeout_s + 1.0)
            self.log.info("control_drained", delivered_p_kw=round(state.delivered_p_kw, 1))
        except (asyncio.TimeoutError, TimeoutError):
            self.log.warning("control_drain_timeout", timeout_s=self.settings.stop_timeout_s)
