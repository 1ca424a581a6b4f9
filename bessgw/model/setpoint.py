"""Setpoints: what the gateway asks a unit to do."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setpoint:
    """An active / reactive power request.

    ``p_kw > 0`` discharges, ``p_kw < 0`` charges (generator convention). ``command_id`` makes the
    command idempotent: the same id always means the same effect. ``expires_at`` (epoch seconds) bounds
    how long the request may be applied; ``None`` means until replaced.
    """

    p_kw: float
    q_kvar: float = 0.0
    command_id: str = ""
    source: str = "local"
    issued_at: float = 0.0
    expires_at: float | None = None

    def __post_init__(self) -> None:
        for name in ("p_kw", "q_kvar", "issued_at"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"setpoint {name} must be finite (got {value!r})")
        if self.expires_at is not None and self.expires_at < self.issued_at:
            raise ValueError("setpoint expires before it was issued")

    def expired(self, now: float) -> bool:
        """Whether the setpoint may no longer be applied at time ``now``."""
        return self.expires_at is not None and now >= self.expires_at


def no_more_power(present_p_kw: float, present_q_kvar: float, p_kw: float, q_kvar: float) -> bool:
    """Whether ``(p_kw, q_kvar)`` asks for no more ``|P|`` and ``|Q|`` than the present values, on the same
    side (0 always qualifies): the change that is always safe, never held back or fenced.

    One rule for every door where power may only go down unchecked: control writes such a change to a
    unit before any other of its step, and a campus share that is not one waits to be explained.
    """
    def within(present: float, value: float) -> bool:
        return value == 0.0 or (present * value > 0 and abs(value) <= abs(present))
    return within(present_p_kw, p_kw) and within(present_q_kvar, q_kvar)
