"""The one command path: validate, journal durably, then hand to control, then acknowledge.

Every change of power — a gateway target or a single unit's override, from the CLI, OPC UA, the campus —
is a :class:`Command` submitted here. The first command with an id is validated, written to the
:class:`~bessgw.control.journal.Journal` (fsync'd) and only then applied; its :class:`CommandResult` is
the acknowledgement. A command repeating a known id — a retry after a lost reply, a replay — has no
further effect and gets the first result back, also after a restart, because the journal is the memory of
ids (the only one: the in-memory cache below is a bounded read-through of it). The same id with other
arguments is refused (``conflict``). Refused commands raise :class:`CommandRejectedError` and leave
nothing behind, so a corrected retry with the same id is still possible.

Strings are bounded at this door: ids, sources and principals are short and printable, so nothing an
operator sends can grow memory or break ``bessgw journal tail``.

After a restart or a reload :meth:`CommandProcessor.restore` re-applies a setpoint only if it is still
in force: not released, not dropped by the fail-safe, not expired, and its source was heard from (a
command or a persisted heartbeat) within the source's heartbeat timeout. A setpoint the fail-safe dropped
never comes back by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bessgw.control.arbitration import Arbiter
from bessgw.control.errors import CommandRejectedError, JournalError
from bessgw.control.journal import Journal, JournalEntry

#: longest command id, source and principal accepted (characters)
MAX_ID_LENGTH = 128
#: results remembered in memory (older ones are looked up in the journal); bounds memory, not idempotency
_CACHE_SIZE = 4096
#: the kinds of command; ``dropped`` is journaled by control itself when the fail-safe drops a setpoint
KINDS = ("setpoint", "release")


@dataclass(frozen=True, slots=True)
class Command:
    """A request to set (or release) one source's target for the gateway or for one unit.

    :ivar command_id: chosen by the sender; the same id has one effect, ever.
    :ivar source: the configured setpoint source (``[[control.sources]]``) it acts as.
    :ivar unit_id: ``None`` for the gateway target; a unit id for that unit's override.
    :ivar kind: ``"setpoint"`` or ``"release"`` (withdraws the source's setpoint; P/Q ignored).
    :ivar expires_at: epoch s after which the setpoint no longer applies; ``None`` = until replaced.
    :ivar clamp: outside the range, clamp (the CLI's operator override) or refuse with ``out_of_range``
        (SCADA: a client that asked for 800 kW must learn it did not get it).
    :ivar traceparent: the W3C trace context of the request that caused the command (may be empty).
    """

    command_id: str
    source: str
    p_kw: float = 0.0
    q_kvar: float = 0.0
    principal: str = ""
    expires_at: float | None = None
    kind: str = "setpoint"
    unit_id: str | None = None
    clamp: bool = True
    traceparent: str = ""

    def arguments(self) -> tuple[object, ...]:
        """What must match for a repeated id to be the same command."""
        if self.kind == "release":
            return (self.kind, self.source, self.unit_id or "")
        return (self.kind, self.source, self.unit_id or "", float(self.p_kw), float(self.q_kvar))


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
    unit_id: str = ""
    principal: str = ""

    @classmethod
    def of(cls, entry: JournalEntry) -> CommandResult:
        return cls(entry.command_id, entry.seq, entry.source, entry.kind, entry.requested_p_kw,
                   entry.requested_q_kvar, entry.applied_p_kw, entry.applied_q_kvar, entry.received_at,
                   entry.expires_at, entry.note, entry.unit_id, entry.principal)

    def arguments(self) -> tuple[object, ...]:
        if self.kind == "release":
            return (self.kind, self.source, self.unit_id)
        return (self.kind, self.source, self.unit_id, self.requested_p_kw, self.requested_q_kvar)


@dataclass(frozen=True, slots=True)
class GatewayRange:
    """The range a command's target is checked against (magnitudes >= 0)."""

    max_charge_kw: float = math.inf
    max_discharge_kw: float = math.inf
    max_q_kvar: float = math.inf

    def clamp(self, p_kw: float, q_kvar: float) -> tuple[float, float]:
        return (min(self.max_discharge_kw, max(-self.max_charge_kw, p_kw)),
                min(self.max_q_kvar, max(-self.max_q_kvar, q_kvar)))

    def refusal(self, p_kw: float, q_kvar: float, what: str) -> str:
        """Why (P, Q) is outside this range, or "" when it is inside."""
        if not -self.max_charge_kw <= p_kw <= self.max_discharge_kw:
            return f"p_kw {p_kw:g} outside {-self.max_charge_kw:g}..{self.max_discharge_kw:g} kW {what}"
        if abs(q_kvar) > self.max_q_kvar:
            return f"q_kvar {q_kvar:g} outside ±{self.max_q_kvar:g} kvar {what}"
        return ""


@dataclass(frozen=True, slots=True)
class Ranges:
    """Where a command may go: ``clamp_to`` for clamping commands, ``refuse_outside`` for strict ones.

    Clamping uses something stable (the units' nameplates): a clamped value is what the source's setpoint
    *is* from then on. Strict commands are checked against what is available now.
    """

    clamp_to: GatewayRange
    refuse_outside: GatewayRange
    what: str = "available"


def check_text(value: object, name: str, *, required: bool) -> str:
    """A bounded, printable string (ids, sources, principals): the door's check of what it keeps."""
    if not isinstance(value, str):
        raise CommandRejectedError(f"{name} must be a string (got {type(value).__name__})")
    if required and not value:
        raise CommandRejectedError(f"{name} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise CommandRejectedError(f"{name} must be at most {MAX_ID_LENGTH} characters (got {len(value)})")
    if not value.isprintable():
        raise CommandRejectedError(f"{name} must be printable characters only (no control characters)")
    return value


class CommandProcessor:
    """Accepts commands for control: idempotent by id, journaled before acknowledged."""

    def __init__(
        self,
        journal: Journal,
        arbiter: Arbiter,
        *,
        clock: Callable[[], float],
        gateway_range: Callable[[], GatewayRange | Ranges] = GatewayRange,
        on_change: Callable[[], None] | None = None,
        unit_target: Callable[[Command], Ranges] | None = None,
        apply_unit: Callable[[CommandResult], None] | None = None,
    ) -> None:
        """``gateway_range`` gives the ranges of gateway commands; ``unit_target`` checks a unit command's
        target (raising ``unknown_unit`` / ``unavailable``) and gives its ranges; ``apply_unit`` puts an
        accepted unit command into force; ``on_change`` is called after anything new was applied."""
        self.journal = journal
        self.arbiter = arbiter
        self.clock = clock
        self.gateway_range = gateway_range
        self.unit_target = unit_target
        self.apply_unit = apply_unit
        self.on_change = on_change
        self.repeats = 0  # commands that repeated a known id
        self._results: OrderedDict[str, CommandResult] = OrderedDict()
        self._lock = threading.Lock()  # one command at a time: check id, journal, apply

    # ------------------------------------------------------------------------------ checks

    def _validate(self, command: Command, now: float) -> None:
        check_text(command.command_id, "command id", required=True)
        check_text(command.principal, "principal", required=False)
        check_text(command.traceparent, "traceparent", required=False)
        if command.unit_id is not None:
            check_text(command.unit_id, "unit id", required=True)
        if command.kind not in KINDS:
            raise CommandRejectedError(f"command {command.command_id}: unknown kind {command.kind!r}")
        if command.source not in self.arbiter.sources:
            known = ", ".join(sorted(self.arbiter.sources))
            raise CommandRejectedError(f"command {command.command_id}: unknown source {command.source!r}"
                                       f" (configured: {known})")
        if command.kind != "setpoint":
            return
        for name, value in (("p_kw", command.p_kw), ("q_kvar", command.q_kvar)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CommandRejectedError(f"command {command.command_id}: {name} must be a finite number"
                                           f" (got {value!r})")
        if command.expires_at is not None and (not math.isfinite(command.expires_at) or command.expires_at <= now):
            raise CommandRejectedError(f"command {command.command_id}: already expired")

    def _ranges(self, command: Command) -> Ranges:
        if command.unit_id is not None:
            if self.unit_target is None:
                raise CommandRejectedError("unit commands are not supported here", code="unavailable")
            return self.unit_target(command)
        ranges = self.gateway_range()
        return ranges if isinstance(ranges, Ranges) else Ranges(ranges, ranges, "of the gateway")

    def _remember(self, result: CommandResult) -> CommandResult:
        self._results[result.command_id] = result
        self._results.move_to_end(result.command_id)
        while len(self._results) > _CACHE_SIZE:
            self._results.popitem(last=False)
        return result

    def _known(self, command_id: str) -> CommandResult | None:
        result = self._results.get(command_id)
        if result is None:
            entry = self.journal.get(command_id)
            if entry is not None:
                result = self._remember(CommandResult.of(entry))
        return result

    # ------------------------------------------------------------------------------ accepting

    def journal_command(self, command: Command) -> tuple[CommandResult, bool]:
        """Validate and journal ``command`` durably (blocking: fsync); returns (result, is_new).

        Does not touch the arbiter, so it may run in a worker thread; :meth:`submit` does both.
        """
        if isinstance(command.command_id, str) and 0 < len(command.command_id) <= MAX_ID_LENGTH:
            with self._lock:
                known = self._known(command.command_id)
            if known is not None:
                return self._repeat(known, command), False
        with self._lock:
            now = self.clock()
            self._validate(command, now)
            known = self._known(command.command_id)  # a concurrent first submission may have won
            if known is not None:
                return self._repeat(known, command), False
            applied_p: float | None = None
            applied_q: float | None = None
            note = ""
            if command.kind == "setpoint":
                ranges = self._ranges(command)
                p_kw, q_kvar = float(command.p_kw), float(command.q_kvar)
                if command.clamp:
                    applied_p, applied_q = ranges.clamp_to.clamp(p_kw, q_kvar)
                    if (applied_p, applied_q) != (p_kw, q_kvar):
                        note = "clamped to the gateway's range" if command.unit_id is None else \
                            "clamped to the unit's limits"
                else:
                    refusal = ranges.refuse_outside.refusal(p_kw, q_kvar, ranges.what)
                    if refusal:
                        raise CommandRejectedError(f"command {command.command_id}: {refusal}", code="out_of_range")
                    applied_p, applied_q = p_kw, q_kvar
            elif command.unit_id is not None:
                self._ranges(command)  # the unit must exist
            entry, new = self.journal.record(
                command_id=command.command_id, kind=command.kind, source=command.source,
                principal=command.principal, received_at=now,
                requested_p_kw=float(command.p_kw) if command.kind == "setpoint" else None,
                requested_q_kvar=float(command.q_kvar) if command.kind == "setpoint" else None,
                applied_p_kw=applied_p, applied_q_kvar=applied_q, expires_at=command.expires_at, note=note,
                unit_id=command.unit_id or "", traceparent=command.traceparent,
            )
            result = self._remember(CommandResult.of(entry))
        if not new:
            return self._repeat(result, command), False
        return result, True

    def _repeat(self, known: CommandResult, command: Command) -> CommandResult:
        if known.kind == "dropped" or known.arguments() != command.arguments():
            raise CommandRejectedError(f"command id {command.command_id!r} was already used with other arguments",
                                       code="conflict")
        self.repeats += 1
        return known

    def _apply(self, result: CommandResult) -> None:
        now = self.clock()
        if result.unit_id:
            if self.apply_unit is not None:
                self.apply_unit(result)
        elif result.kind == "release":
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
        """A source is alive (heartbeats are not journaled one by one: control persists them periodically)."""
        self.arbiter.heartbeat(source, now=self.clock())

    # ------------------------------------------------------------------------------ restart

    def restore(self, heard_at: dict[str, float] | None = None,
                timeouts: dict[str, float] | None = None) -> list[CommandResult]:
        """After a restart or reload: re-apply what is still in force, nothing else (module docstring).

        ``heard_at`` is each source's last persisted heartbeat (epoch s); ``timeouts`` each source's
        heartbeat timeout. A source silent for longer than its timeout has lost its setpoint, whether the
        fail-safe had time to journal the drop or not; if it had not (the gateway was down when the
        timeout passed), the drop is journaled now, so that the journal's last word on that setpoint is
        the drop and not the setpoint as if it were in force.
        """
        now = self.clock()
        heard_at = heard_at or {}
        timeouts = timeouts if timeouts is not None else self.arbiter.timeouts()
        restored = []
        for (source, unit_id), entry in self.journal.latest_per_target().items():
            if source not in self.arbiter.sources or entry.kind != "setpoint" or entry.expired(now):
                continue
            last_heard = max(entry.received_at, heard_at.get(source, -math.inf))
            timeout_s = timeouts.get(source, math.inf)
            if now - last_heard >= timeout_s:
                with contextlib.suppress(JournalError):  # not applied either way; the next start tries again
                    self.journal.record_drop(
                        source=source, unit_id=unit_id, command_id=entry.command_id, at=now,
                        reason=f"heartbeat lost while the gateway was down: last heard {now - last_heard:.1f} s "
                               f"before the restart (timeout {timeout_s:g} s)")
                continue
            result = CommandResult.of(entry)
            if unit_id:
                if self.apply_unit is not None:
                    self.apply_unit(result)
            else:
                self.arbiter.submit(source, entry.applied_p_kw or 0.0, entry.applied_q_kvar or 0.0,
                                    now=last_heard, expires_at=entry.expires_at, command_id=entry.command_id)
            restored.append(result)
        return restored

