"""Setpoint arbitration: which source drives the gateway target, and the fail-safe when none does.

Several sources may set the gateway-level target (P, Q): the local operator override, SCADA over OPC UA,
campus dispatch. Each has a configured priority and heartbeat timeout. At every control period
:meth:`Arbiter.decide` picks the highest-priority *live* source — one heard from (a setpoint or a
heartbeat) within its timeout, holding a setpoint that has not expired — and says why, in an
:class:`ArbitrationState` that northbound and logs can show as it is.

A source that stays silent longer than its timeout is dropped: its setpoint is forgotten, and it must
send a new one to take over again (a stale setpoint never comes back by itself). With no live source
the gateway **holds** the last target for ``hold_s`` seconds (counted from the moment the last source
timed out, not from when it was noticed), then **ramps the target to 0** at the aggregate ramp rate. A
setpoint that expires is not held: the ramp to 0 starts at its expiry. :meth:`Arbiter.stop` (SIGTERM)
ramps to 0 whatever the sources say. During a ramp, Q is scaled down with P.

Pure logic: every method takes ``now`` (seconds, from the caller's clock), so tests drive time by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from bessgw.control.errors import CommandRejectedError, UnknownSourceError
from bessgw.model.timestamp import local_iso


class Mode(str, Enum):
    """What drives the target at the moment."""

    ACTIVE = "active"  # a live source's setpoint
    HOLD = "hold"  # no live source: the last target, for hold_s
    RAMP_DOWN = "ramp_down"  # no live source after the hold (or an expired setpoint): target ramps to 0
    IDLE = "idle"  # no source, target 0
    STOPPING = "stopping"  # the gateway is stopping: target ramps to 0 whatever the sources say


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """A configured setpoint source: higher ``priority`` wins; silent longer than the timeout = dropped."""

    name: str
    priority: int
    heartbeat_timeout_s: float
    #: "hold": when lost, hold the last target for hold_s then ramp to 0; "zero": 0 kW at once
    on_loss: str = "hold"


@dataclass(frozen=True, slots=True)
class ArbitrationState:
    """The outcome of one arbitration: the target, who set it and why (observable as it is)."""

    mode: Mode
    source: str | None
    reason: str
    target_p_kw: float
    target_q_kvar: float
    since: float  # when this mode / source began
    live_sources: tuple[str, ...] = ()
    command_id: str = ""


@dataclass(slots=True)
class _Slot:
    policy: SourcePolicy
    heard_at: float | None = None
    p_kw: float | None = None
    q_kvar: float = 0.0
    expires_at: float | None = None
    command_id: str = ""
    dropped_reason: str = ""

    def lost_at(self) -> float | None:
        """When this source stopped counting (timeout or expiry), or None while it has no setpoint."""
        if self.p_kw is None or self.heard_at is None:
            return None
        silent_at = self.heard_at + self.policy.heartbeat_timeout_s
        return silent_at if self.expires_at is None else min(silent_at, self.expires_at)

    def live(self, now: float) -> bool:
        lost = self.lost_at()
        return lost is not None and now < lost


def _towards_zero(value: float, step: float) -> float:
    if step >= abs(value):
        return 0.0
    return value - math.copysign(step, value)


class Arbiter:
    """Keeps each source's latest setpoint and heartbeat; decides the gateway target per period."""

    def __init__(self, policies: Iterable[SourcePolicy], *, hold_s: float, now: float = 0.0) -> None:
        self._slots = {policy.name: _Slot(policy) for policy in policies}
        if not self._slots:
            raise ValueError("arbitration needs at least one configured source")
        if hold_s < 0:
            raise ValueError(f"hold_s must be >= 0 (got {hold_s!r})")
        self.hold_s = hold_s
        self._stopping = False
        self._state = ArbitrationState(Mode.IDLE, None, "no source has sent a setpoint", 0.0, 0.0, since=now)
        self._decided_at = now
        self._held: tuple[float, float] = (0.0, 0.0)  # target when the last source was lost
        self._lost_at = now  # when it was lost (or when stop was asked)
        self._ramp_from = now  # when the ramp to 0 begins (after the hold, or at an expiry)
        self._why = ""
        self._dropped: list[tuple[str, str, str]] = []  # (source, command id, why) not yet taken

    @property
    def state(self) -> ArbitrationState:
        """The last decision."""
        return self._state

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def _slot(self, source: str) -> _Slot:
        try:
            return self._slots[source]
        except KeyError:
            known = ", ".join(sorted(self._slots))
            raise UnknownSourceError(f"unknown setpoint source {source!r} (configured: {known})") from None

    # ------------------------------------------------------------------------------ inputs

    def submit(self, source: str, p_kw: float, q_kvar: float, *, now: float,
               expires_at: float | None = None, command_id: str = "") -> None:
        """A new setpoint from ``source`` (it counts as a heartbeat too)."""
        slot = self._slot(source)
        if not (math.isfinite(p_kw) and math.isfinite(q_kvar)):
            raise CommandRejectedError(f"setpoint from {source} is not finite (p={p_kw!r}, q={q_kvar!r})")
        slot.heard_at = now
        slot.p_kw, slot.q_kvar, slot.expires_at, slot.command_id = float(p_kw), float(q_kvar), expires_at, command_id
        slot.dropped_reason = ""

    def heartbeat(self, source: str, *, now: float) -> None:
        """``source`` is alive; keeps its setpoint (if it still has one) in force."""
        slot = self._slot(source)
        if slot.p_kw is not None and not slot.live(now):
            return  # too late: the setpoint was already dropped, a heartbeat does not revive it
        slot.heard_at = now

    def release(self, source: str, *, now: float) -> None:
        """``source`` withdraws its setpoint on purpose (lower-priority sources take over at once)."""
        slot = self._slot(source)
        slot.p_kw, slot.expires_at, slot.command_id = None, None, ""
        slot.dropped_reason = "released"
        slot.heard_at = now

    def stop(self, *, now: float) -> None:
        """The gateway is stopping: from now on the target ramps to 0 whatever the sources say."""
        if not self._stopping:
            self._stopping = True
            self._held = (self._state.target_p_kw, self._state.target_q_kvar)
            self._lost_at = now

    @property
    def stopping(self) -> bool:
        return self._stopping

    # ----------------------------------------------------------------------------- decision

    def _drop_lost(self, now: float) -> list[str]:
        """Forget the setpoints of sources that went silent or expired; returns why, per source."""
        notes = []
        for name, slot in self._slots.items():
            lost = slot.lost_at()
            if lost is None or now < lost:
                continue
            if slot.expires_at is not None and lost >= slot.expires_at:
                slot.dropped_reason = f"setpoint {slot.command_id} expired" if slot.command_id else "setpoint expired"
            else:
                slot.dropped_reason = (f"silent for {now - (now if slot.heard_at is None else slot.heard_at):.1f} s"
                                       f" (timeout {slot.policy.heartbeat_timeout_s:g} s)")
            slot.p_kw = None
            notes.append(f"{name} {slot.dropped_reason}")
            self._dropped.append((name, slot.command_id, slot.dropped_reason))
        return notes

    def take_dropped(self) -> list[tuple[str, str, str]]:
        """The setpoints dropped since the last call: (source, command id, why) — for the journal."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def timeouts(self) -> dict[str, float]:
        """Each source's heartbeat timeout (s)."""
        return {name: slot.policy.heartbeat_timeout_s for name, slot in self._slots.items()}

    def heard_at(self) -> dict[str, float]:
        """When each source was last heard from (epoch s, the caller's clock); for persisting heartbeats."""
        return {name: slot.heard_at for name, slot in self._slots.items() if slot.heard_at is not None}

    def decide(self, now: float, *, ramp_kw_per_s: float) -> ArbitrationState:
        """Arbitrate at ``now``; ``ramp_kw_per_s`` is the aggregate rate for a ramp to 0 (inf: at once)."""
        previous = self._state
        previous_at, self._decided_at = self._decided_at, now
        lost_times = {name: slot.lost_at() for name, slot in self._slots.items()}  # before slots are cleared
        expired = {name for name, slot in self._slots.items()
                   if slot.expires_at is not None and slot.p_kw is not None and now >= slot.expires_at}
        notes = self._drop_lost(now)
        live = sorted((slot for slot in self._slots.values() if slot.live(now)),
                      key=lambda slot: (-slot.policy.priority, slot.policy.name))
        live_names = tuple(slot.policy.name for slot in live)
        ramp = _Ramp(previous, previous_at, now, ramp_kw_per_s)

        if self._stopping:
            p = ramp.value(self._held[0], self._lost_at)
            state = self._ramping(Mode.STOPPING, p, "gateway stopping: ramping to 0 kW", now, live_names, previous,
                                  self._lost_at)
        elif live:
            best = live[0]
            reason = f"{best.policy.name}: highest-priority live source (priority {best.policy.priority})"
            higher = [s for s in self._slots.values() if s.policy.priority > best.policy.priority and s.dropped_reason]
            if higher:
                reason += "; " + "; ".join(f"{s.policy.name} {s.dropped_reason}" for s in higher)
            since = previous.since if (previous.mode is Mode.ACTIVE and previous.source == best.policy.name) else now
            state = ArbitrationState(Mode.ACTIVE, best.policy.name, reason, best.p_kw or 0.0, best.q_kvar,
                                     since, live_names, best.command_id)
        elif previous.mode is Mode.ACTIVE and self._zero_on_loss(previous.source):
            # a source whose target someone else may take over (a campus share): nothing of it is held
            why = "; ".join(notes) or f"{previous.source} lost"
            state = ArbitrationState(Mode.IDLE, None, f"0 kW at once: {why}", 0.0, 0.0, now, live_names)
        elif previous.mode is Mode.ACTIVE:
            # the last live source was lost since the previous period: hold, or ramp at once if it expired
            name = previous.source or ""
            self._held = (previous.target_p_kw, previous.target_q_kvar)
            lost_at = lost_times.get(name)
            self._lost_at = now if lost_at is None else min(lost_at, now)
            self._ramp_from = self._lost_at if name in expired else self._lost_at + self.hold_s
            self._why = "; ".join(notes) or f"{name} lost"
            state = self._hold_or_ramp(now, ramp, live_names, previous)
        elif previous.mode in (Mode.HOLD, Mode.RAMP_DOWN):
            state = self._hold_or_ramp(now, ramp, live_names, previous)
        else:
            idle_since = previous.since if previous.mode is Mode.IDLE else now
            state = ArbitrationState(Mode.IDLE, None, previous.reason if previous.mode is Mode.IDLE
                                     else "no live source", 0.0, 0.0, idle_since, live_names)
        self._state = state
        return state

    def _zero_on_loss(self, source: str | None) -> bool:
        slot = self._slots.get(source or "")
        return slot is not None and slot.policy.on_loss == "zero"

    def _hold_or_ramp(self, now: float, ramp: _Ramp, live: tuple[str, ...],
                      previous: ArbitrationState) -> ArbitrationState:
        if now < self._ramp_from:
            since = previous.since if previous.mode is Mode.HOLD else self._lost_at
            return ArbitrationState(Mode.HOLD, None, f"holding the last target until {local_iso(self._ramp_from)}:"
                                    f" {self._why}", self._held[0], self._held[1], since, live)
        p = ramp.value(self._held[0], self._ramp_from)
        if p == 0.0:
            return ArbitrationState(Mode.IDLE, None, f"ramped to 0 kW: {self._why}", 0.0, 0.0, now, live)
        return self._ramping(Mode.RAMP_DOWN, p, f"ramping to 0 kW: {self._why}", now, live, previous,
                             self._ramp_from)

    def _ramping(self, mode: Mode, p: float, reason: str, now: float, live: tuple[str, ...],
                 previous: ArbitrationState, began: float) -> ArbitrationState:
        held_p, held_q = self._held
        q = held_q * (abs(p) / abs(held_p)) if held_p else 0.0
        if p == 0.0:
            reason = reason.replace("ramping to", "ramped to")
        return ArbitrationState(mode, None, reason, p, q, previous.since if previous.mode is mode else began, live)


@dataclass(frozen=True, slots=True)
class _Ramp:
    """One period's step of a ramp of the target towards 0."""

    previous: ArbitrationState
    previous_at: float
    now: float
    rate_kw_per_s: float

    def value(self, held_p_kw: float, began: float) -> float:
        """The target now, on a ramp that began at ``began`` from ``held_p_kw`` (continuing a running one)."""
        if self.previous.mode in (Mode.RAMP_DOWN, Mode.STOPPING):
            start, step_from = self.previous.target_p_kw, max(self.previous_at, began)
        else:
            start, step_from = held_p_kw, began
        if math.isinf(self.rate_kw_per_s):  # no ramp limit: 0 as soon as the ramp begins
            return 0.0
        elapsed = max(0.0, self.now - step_from)
        return _towards_zero(start, self.rate_kw_per_s * elapsed)
