"""Campus allocation (pure, numpy): split the campus setpoint into per-gateway shares, and order the change.

**Split.** Each gateway is treated like one unit of :mod:`bessgw.control.allocation`: its available charge
and discharge kW (the sum over its Good units in the campus view) are its limits and its energy-weighted
SOC drives the same SOC-balancing water-filling, so the fullest gateways discharge hardest and the emptiest
charge hardest, and no gateway works against the setpoint. The gateway's own allocation then applies the
same rule to its units. There is no ramp between gateways (each gateway ramps its own units). Reactive
power has no per-gateway capability in the campus view yet, so Q is split in proportion to each gateway's
larger P limit. What the campus cannot deliver is returned as a shortfall: it is information, not an error.

**Transition.** Moving from the shares in etcd to new ones must never let the campus exceed the setpoint,
even though gateways see their new shares at different times. So a change is made in two steps:

1. *decreases*: every share whose ``|P|`` (or ``|Q|``) goes down is written at its new value, and every
   share whose sign changes is written at 0 — these can only lower what any gateway does;
2. *increases*: only once every gateway has acknowledged the share it holds (or its lease key is gone), the
   remaining increases are written. Each gateway then acts on either its acknowledged share or its new
   one, never more than the larger, and the new shares sum to at most the setpoint.

Decreases are written exactly; small increases (below ``min_change_kw``) are not written, to keep
telemetry noise from rewriting shares every period.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bessgw.control.allocation import Allocator, Fleet
from bessgw.federation.view import CampusView
from bessgw.model import Quality

#: a share value the allocator cannot trust (a corrupt record): it must first be overwritten with 0
UNKNOWN = math.nan


@dataclass(frozen=True)
class GatewayAvailability:
    """What one gateway can do now, from the campus view (Good units only)."""

    gateway_id: str
    available_charge_kw: float
    available_discharge_kw: float
    soc_pct: float


@dataclass(frozen=True)
class CampusSplit:
    """The shares one setpoint splits into, and what the campus cannot deliver."""

    shares: Mapping[str, tuple[float, float]]
    target_p_kw: float
    target_q_kvar: float
    delivered_p_kw: float
    shortfall_p_kw: float
    shortfall_q_kvar: float


@dataclass(frozen=True)
class TransitionStep:
    """What to write next: ``phase`` is ``decrease``, ``increase``, ``wait`` (increases pending until every
    share is acknowledged) or ``steady``; ``writes`` maps gateway id to its new ``(p_kw, q_kvar)``."""

    phase: str
    writes: Mapping[str, tuple[float, float]] = field(default_factory=dict)


def availability_from_view(view: CampusView, gateway_ids: Iterable[str]) -> list[GatewayAvailability]:
    """Per-gateway availability for ``gateway_ids`` from the campus view; a gateway with no Good unit in the
    view (unknown to gossip, or every unit stale) can do nothing this period."""
    wanted = list(gateway_ids)
    charge = dict.fromkeys(wanted, 0.0)
    discharge = dict.fromkeys(wanted, 0.0)
    energy = dict.fromkeys(wanted, 0.0)
    stored = dict.fromkeys(wanted, 0.0)
    for unit in view.units:
        gateway = unit.gateway_id
        if gateway not in charge or unit.quality != Quality.GOOD:
            continue
        summary = unit.summary
        if math.isfinite(summary.available_charge_kw):
            charge[gateway] += max(0.0, summary.available_charge_kw)
        if math.isfinite(summary.available_discharge_kw):
            discharge[gateway] += max(0.0, summary.available_discharge_kw)
        if math.isfinite(summary.energy_kwh) and math.isfinite(summary.soc_pct) and summary.energy_kwh > 0:
            energy[gateway] += summary.energy_kwh
            stored[gateway] += summary.energy_kwh * summary.soc_pct
    return [
        GatewayAvailability(gateway, charge[gateway], discharge[gateway],
                            stored[gateway] / energy[gateway] if energy[gateway] > 0 else math.nan)
        for gateway in wanted
    ]


def split_setpoint(p_kw: float, q_kvar: float, gateways: Sequence[GatewayAvailability],
                   soc_balance_gain: float = 2.0) -> CampusSplit:
    """Split ``(p_kw, q_kvar)`` over ``gateways`` (module docstring). Non-finite targets drive nothing."""
    p_kw = float(p_kw) if math.isfinite(p_kw) else 0.0
    q_kvar = float(q_kvar) if math.isfinite(q_kvar) else 0.0
    size = len(gateways)
    if size == 0:
        return CampusSplit({}, p_kw, q_kvar, 0.0, p_kw, q_kvar)
    charge = np.array([g.available_charge_kw for g in gateways], dtype=float)
    discharge = np.array([g.available_discharge_kw for g in gateways], dtype=float)
    soc = np.array([g.soc_pct for g in gateways], dtype=float)
    charge = np.where(np.isfinite(charge), np.maximum(charge, 0.0), 0.0)
    discharge = np.where(np.isfinite(discharge), np.maximum(discharge, 0.0), 0.0)
    # a gateway whose SOC is unknown still reports limits; balance it as half full rather than drop it
    soc = np.where(np.isfinite(soc), np.clip(soc, 0.0, 100.0), 50.0)
    fleet = Fleet(
        available=(charge > 0) | (discharge > 0),
        max_charge_kw=charge,
        max_discharge_kw=discharge,
        max_q_kvar=np.maximum(charge, discharge),
        ramp_kw_per_s=np.full(size, np.inf),
        # the SOC window is widened a hair so a gateway at exactly 0 % / 100 % with limits still counts:
        # its limits already say what it can do, the window here only weighs
        soc_pct=soc,
        soc_min_pct=np.full(size, -1e-6),
        soc_max_pct=np.full(size, 100.0 + 1e-6),
        present_p_kw=np.zeros(size),
    )
    result = Allocator(soc_balance_gain).allocate(fleet, p_kw, q_kvar, dt_s=1.0)
    shares = {g.gateway_id: (float(result.p_kw[i]), float(result.q_kvar[i])) for i, g in enumerate(gateways)}
    return CampusSplit(shares, p_kw, q_kvar, result.delivered_p_kw, result.shortfall_p_kw, result.shortfall_q_kvar)


def _toward(current: float, target: float) -> float:
    """The decrease step from ``current`` toward ``target``: the target if it is a decrease, 0 through a sign
    change, ``current`` (no change) if it is an increase. An unknown current value steps to 0."""
    if math.isnan(current):
        return 0.0
    if current != 0.0 and target != 0.0 and (current > 0) != (target > 0):
        return 0.0
    if abs(target) < abs(current):
        return target
    return current


def transition(current: Mapping[str, tuple[float, float]], target: Mapping[str, tuple[float, float]],
               all_acknowledged: bool, min_change_kw: float = 0.0) -> TransitionStep:
    """The next step from the shares in etcd (``current``; absent = 0, :data:`UNKNOWN` = corrupt) to
    ``target`` (module docstring). Gateways only in ``current`` are left alone: their share leaves with
    their lease."""
    decreases: dict[str, tuple[float, float]] = {}
    increases: dict[str, tuple[float, float]] = {}
    for gateway, (target_p, target_q) in target.items():
        cur_p, cur_q = current.get(gateway, (0.0, 0.0))
        step = (_toward(cur_p, target_p), _toward(cur_q, target_q))
        unknown = math.isnan(cur_p) or math.isnan(cur_q)
        if unknown or step != (cur_p, cur_q):
            decreases[gateway] = step
        elif (abs(target_p) - abs(cur_p) >= max(min_change_kw, 1e-9)
              or abs(target_q) - abs(cur_q) >= max(min_change_kw, 1e-9)):
            increases[gateway] = (target_p, target_q)
    if decreases:
        return TransitionStep("decrease", decreases)
    if not increases:
        return TransitionStep("steady")
    if not all_acknowledged:
        return TransitionStep("wait")
    return TransitionStep("increase", increases)
