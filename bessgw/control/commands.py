"""Idempotent setpoint commands: validate, journal durably, then hand to arbitration, then acknowledge.

Every command carries an id chosen by the sender. The first command with an id is validated, written to
the :class:`~bessgw.control.journal.Journal` (fsync'd) and only then given to the
:class:`~bessgw.control.arbitration.Arbiter`; its :class:`CommandResult` is the acknowledgement. A command
repeating a known id — a retry after a lost reply, a replay, the same id with other values — has no
further effect and gets the first result back, also after a restart, because the journal is the memory
of ids. Refused commands (unknown source, non-finite values, already expired) raise and are not
journaled, so a corrected retry with the same id is still possible.

After a restart :meth:`CommandProcessor.restore` re-applies each source's latest setpoint unless it has
expired; the source's heartbeat timeout starts afresh at the restart, so a source that does not come
back is dropped by the usual fail-safe.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bessgw.control.arbitration import Arbiter
from bessgw.control.errors import CommandRejectedError
from bessgw.control.journal import Journal, JournalEntry

_MAX_ID_LENGTH = 128
#: ids remembered in memory (older ones are looked up in the journal)
_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Command:
    """A request to set (or release) one source's gateway target.

    ``kind="release"`` withdraws the source's setpoint (``p_kw``/``q_kvar`` are ignored).
    ``expires_at`` (epoch s) bounds how long the setpoint may be applied; ``None`` = until replaced.
    """

    command_id: str
    source: str
    p_kw: float = 0.0
    q_kvar: float = 0.0
    principal: str = ""
    expires_at: float | None = None
    kind: str = "setpoint"


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The acknowledgement of a command; a repeated id gets the identical result back."""

    command_id: str
    seq: int
    source: str
    kind: str
    requested_p_kw: float | None
    requested_q_kvar: float | None
    applied_p_kw: float | None
    applied_q_kvar: float | None
    received_at: float
    expires_at: float | None
    note: str

    @classmethod
    def of(cls, entry: JournalEntry) -> CommandResult:
        return cls(entry.command_id, entry.seq, entry.source, entry.kind, entry.requested_p_kw,
                   entry.requested_q_kvar, entry.applied_p_kw, entry.applied_q_kvar, entry.received_at,
                   entry.expires_at, entry.note)


@dataclass(frozen=True, slots=True)
class GatewayRange:
    """The range a command's target is clamped to before it is applied (magnitudes >= 0).

    Give it something stable — the sum of the units' nameplates, or the grid connection's limit — not
    the momentary availability: a clamped value is what the source's setpoint *is* from then on, while
    a momentary shortfall (units offline, derated, ramping) is reported by allocation and recovers by
    itself.
    """

    max_charge_kw: float = math.inf
    max_discharge_kw: float = math.inf
    max_q_kvar: float = math.inf


class CommandProcessor:
    """Accepts commands for the arbiter: idempotent by id, journaled before acknowledged."""

    def __init__(
        self,
        journal: Journal,
        arbiter: Arbiter,
        *,
        clock: Callable[[], float],
        gateway_range: Callable[[], GatewayRange] = GatewayRange,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change`` is called after a new command reached the arbiter (wire ``ControlLoop.poke``)."""
        self.journal = journal
        self.arbiter = arbiter
        self.clock = clock
        self.gateway_range = gateway_range
        self.on_change = on_change
        self.repeats = 0  # commands that repeated a known id
        self._results: dict[str, CommandResult] = {}
        self._lock = threading.Lock()  # one command at a time: check id, journal, apply

    def _validate(self, command: Command, now: float) -> None:
        if not command.command_id or len(command.command_id) > _MAX_ID_LENGTH:
            raise CommandRejectedError(f"command id must be 1..{_MAX_ID_LENGTH} characters")
        if command.kind not in ("setpoint", "release"):
            raise CommandRejectedError(f"command {command.command_id}: unknown kind {command.kind!r}")
        if command.source not in self.arbiter.sources:
            known = ", ".join(sorted(self.arbiter.sources))
            raise CommandRejectedError(f"command {command.command_id}: unknown source {command.source!r}"
                                       f" (configured: {known})")
        if command.kind == "setpoint":
            if not (math.isfinite(command.p_kw) and math.isfinite(command.q_kvar)):
                raise CommandRejectedError(f"command {command.command_id}: P and Q must be finite")
            if command.expires_at is not None and (not math.isfinite(command.expires_at)
                                                   or command.expires_at <= now):
                raise CommandRejectedError(f"command {command.command_id}: already expired")

    def _remember(self, result: CommandResult) -> CommandResult:
        if len(self._results) >= _CACHE_SIZE:
            self._results.clear()
        self._results[result.command_id] = result
        return result

    def _known(self, command_id: str) -> CommandResult | None:
        result = self._results.get(command_id)
        if result is None:
            entry = self.journal.get(command_id)
            if entry is not None:
                result = self._remember(CommandResult.of(entry))
        return result

    def journal_command(self, command: Command) -> tuple[CommandResult, bool]:
        """Validate and journal ``command`` durably (blocking: fsync); returns (result, is_new).

        Does not touch the arbiter, so it may run in a worker thread; :meth:`submit` does both.
        """
        with self._lock:
            known = self._known(command.command_id)
            if known is not None:
                self.repeats += 1
                return known, False
            now = self.clock()
            self._validate(command, now)
            applied_p: float | None = None
            applied_q: float | None = None
            note = ""
            if command.kind == "setpoint":
                limits = self.gateway_range()
                applied_p = min(limits.max_discharge_kw, max(-limits.max_charge_kw, command.p_kw))
                applied_q = min(limits.max_q_kvar, max(-limits.max_q_kvar, command.q_kvar))
                if (applied_p, applied_q) != (command.p_kw, command.q_kvar):
                    note = "clamped to the gateway's range"
            entry, new = self.journal.record(
                command_id=command.command_id, kind=command.kind, source=command.source,
                principal=command.principal, received_at=now,
                requested_p_kw=command.p_kw if command.kind == "setpoint" else None,
                requested_q_kvar=command.q_kvar if command.kind == "setpoint" else None,
                applied_p_kw=applied_p, applied_q_kvar=applied_q, expires_at=command.expires_at, note=note,
            )
            result = self._remember(CommandResult.of(entry))
            if not new:
                self.repeats += 1
            return result, new

    def _apply(self, result: CommandResult) -> None:
        now = self.clock()
        if result.kind == "release":
            self.arbiter.release(result.source, now=now)
        else:
            self.arbiter.submit(result.source, result.applied_p_kw or 0.0, result.applied_q_kvar or 0.0,
                                now=now, expires_at=result.expires_at, command_id=result.command_id)
        if self.on_change is not None:
            self.on_change()

    def submit(self, command: Command) -> CommandResult:
        """Journal, apply, acknowledge (synchronous; the journal write blocks for an fsync)."""
        result, new = self.journal_command(command)
        if new:
            self._apply(result)
        return result

    async def submit_async(self, command: Command) -> CommandResult:
        """:meth:`submit` with the fsync in a worker thread, so the event loop keeps running."""
        result, new = await asyncio.to_thread(self.journal_command, command)
        if new:
            self._apply(result)
        return result

    def heartbeat(self, source: str) -> None:
        """A source is alive (heartbeats are not journaled: they carry no setpoint)."""
        self.arbiter.heartbeat(source, now=self.clock())

    def restore(self) -> list[CommandResult]:
        """After a restart: re-apply each configured source's latest setpoint unless it has expired."""
        now = self.clock()
        restored = []
        for source, entry in self.journal.latest_per_source().items():
            if source not in self.arbiter.sources or entry.kind != "setpoint" or entry.expired(now):
                continue
            result = CommandResult.of(entry)
            self.arbiter.submit(source, entry.applied_p_kw or 0.0, entry.applied_q_kvar or 0.0, now=now,
                                expires_at=entry.expires_at, command_id=entry.command_id)
            restored.append(result)
        return restored
