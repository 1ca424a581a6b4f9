"""The safety envelope: the last gate before any value is written to a device.

Whatever produced a setpoint (allocation, an operator, a bug), the value that reaches a unit is clamped
here to the unit's negotiated :class:`~bessgw.model.EffectiveLimits` and to the ramp rule. The ramp rule
is defined once, in :func:`ramp_window`, and allocation uses the same function, so the two can never
disagree about what a unit may do next.

The ramp rule (generator convention, ``p > 0`` discharges):

* reducing ``|P|`` is always allowed at once — less power never over-delivers and is always safe for
  the cells, so a limit that shrinks (derating, SOC window) or a target that drops takes effect in the
  very next write;
* increasing ``|P|`` is limited to ``ramp_kw_per_s * dt_s`` per period;
* a sign change is a drop to 0 (immediate) followed by an increase from 0 (ramp-limited), so the new
  magnitude on the other side is at most one ramp step.

So the allowed interval for the next value is ``[-min(max_charge, max(-p0, 0) + r),
+min(max_discharge, max(p0, 0) + r)]`` with ``r = ramp * dt``. It always contains 0: commanding 0 kW is
allowed from anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bessgw.model import EffectiveLimits


@dataclass(frozen=True, slots=True)
class GatedSetpoint:
    """What the envelope lets through for one unit, and whether it had to change the request."""

    p_kw: float
    q_kvar: float
    clamped: bool


def ramp_window(
    present_p_kw: np.ndarray | float,
    max_charge_kw: np.ndarray | float,
    max_discharge_kw: np.ndarray | float,
    ramp_kw_per_s: np.ndarray | float,
    dt_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The interval ``(low, high)`` the next setpoint may take (vectorised; see the module docstring).

    ``low <= 0 <= high`` always. Non-finite present values are treated as 0 (ramp from standstill), and
    an infinite ramp rate allows the full envelope at once.
    """
    present = np.asarray(present_p_kw, dtype=np.float64)
    if not np.isfinite(present).all():  # (checked first: np.where costs more than the rest together)
        present = np.where(np.isfinite(present), present, 0.0)
    dt = max(float(dt_s), 0.0)
    step = np.asarray(ramp_kw_per_s, dtype=np.float64) * dt if dt > 0 else 0.0  # dt 0: no increase
    high = np.minimum(max_discharge_kw, np.maximum(present, 0.0) + step)
    low = np.minimum(max_charge_kw, np.maximum(-present, 0.0) + step)
    return -np.maximum(low, 0.0), np.maximum(high, 0.0)


def gate(
    p_kw: float,
    q_kvar: float,
    limits: EffectiveLimits | None,
    *,
    present_p_kw: float,
    dt_s: float,
) -> GatedSetpoint:
    """Clamp one requested setpoint to ``limits`` and the ramp rule; no limits (not negotiated) → 0.

    Non-finite requests become 0 kW: a NaN must never reach a register.
    """
    if limits is None:
        return GatedSetpoint(0.0, 0.0, clamped=p_kw != 0.0 or q_kvar != 0.0)
    request_p = p_kw if math.isfinite(p_kw) else 0.0
    request_q = q_kvar if math.isfinite(q_kvar) else 0.0
    low, high = ramp_window(present_p_kw, limits.max_charge_kw, limits.max_discharge_kw,
                            limits.ramp_kw_per_s, dt_s)
    out_p = float(min(float(high), max(float(low), request_p)))
    out_q = float(min(limits.max_q_kvar, max(-limits.max_q_kvar, request_q)))
    return GatedSetpoint(out_p, out_q, clamped=out_p != p_kw or out_q != q_kvar)


def gate_arrays(
    p_kw: np.ndarray,
    q_kvar: np.ndarray,
    *,
    present_p_kw: np.ndarray,
    max_charge_kw: np.ndarray,
    max_discharge_kw: np.ndarray,
    max_q_kvar: np.ndarray,
    ramp_kw_per_s: np.ndarray,
    dt_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`gate` over a fleet of units at once (the control loop's final check before writing)."""
    low, high = ramp_window(present_p_kw, max_charge_kw, max_discharge_kw, ramp_kw_per_s, dt_s)
    p = np.clip(np.nan_to_num(np.asarray(p_kw, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0), low, high)
    q_cap = np.asarray(max_q_kvar, dtype=np.float64)
    q = np.clip(np.nan_to_num(np.asarray(q_kvar, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0), -q_cap, q_cap)
    return p, q
