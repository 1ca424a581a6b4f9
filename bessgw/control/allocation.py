"""Allocation: split a gateway target (P, Q) over its units, vectorised over numpy arrays.

**Active power.** Each unit ``i`` may take any value in its ramp window ``[low_i, high_i]``
(:func:`bessgw.control.envelope.ramp_window`: its negotiated limits, and the ramp rule). Units that are
unavailable (stale, faulted, in standby, not negotiated, SOC unknown) have the window ``[0, 0]``, so they
get exactly 0 and their share moves to the others. A unit at the bottom of its SOC window may not
discharge, one at the top may not charge, even if its limits were stale.

For a discharge target ``T > 0`` every unit gets ``p_i = min(high_i, λ·w_i)`` with one common water level
``λ`` chosen so that ``Σ p_i = T`` (a charge target mirrors this with ``-low_i``). The weight
``w_i = max_discharge_i · g_i`` favours the fullest units (``g_i`` is the unit's position in its SOC
window raised to ``soc_balance_gain``); for charging ``g_i`` is the free room in the window, so the
emptiest units charge hardest. Units never work against the target (no unit charges while the gateway
discharges), so the sum never exceeds the target in magnitude and has its sign. ``λ`` is found exactly
from the sorted breakpoints ``high_i / w_i`` (one sort and two cumulative sums, no loop over units),
which keeps 10,000 units well under a millisecond. If the target exceeds what the units can do this
period, every unit gets its window edge and the difference is reported as ``shortfall_p_kw``.

**Ramps and the fail-safe.** The ramp rule limits increases of ``|P|`` and sign changes; decreases are
immediate. Both safety properties therefore hold at once: a unit never ramps faster than its limit, and
the gateway never delivers more than its target (a unit is never held above a lower target just to
respect a ramp-down rate). A controlled ramp to 0 (fail-safe, shutdown) is made by ramping the gateway
*target* towards 0 (:mod:`bessgw.control.arbitration`), not by holding units up.

**Reactive power** is split in proportion to each available unit's Q capability, clamped to it; any
excess is reported as ``shortfall_q_kvar``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bessgw.control.envelope import ramp_window

#: lower bound on SOC weights, so every unit with headroom can still contribute when needed
_MIN_WEIGHT = 1e-3
#: water-filling sorts every unit below this fleet size, and buckets first above it
_SORT_ALL_BELOW = 2048
#: at most this many buckets (more: finer buckets, fewer units to sort in the one that matters)
_MAX_BUCKETS = 1024
_MANTISSA_BITS = 52


@dataclass(frozen=True, eq=False)
class Fleet:
    """The units of one gateway as parallel arrays (one element per unit, all the same length).

    :ivar available: whether the unit may be driven at all this period.
    :ivar max_charge_kw / max_discharge_kw / max_q_kvar: negotiated limits (magnitudes, >= 0).
    :ivar ramp_kw_per_s: negotiated ramp limit (``inf`` for none).
    :ivar soc_pct / soc_min_pct / soc_max_pct: state of charge and the negotiated SOC window.
    :ivar present_p_kw: the setpoint each unit was last given (the start of its ramp).
    """

    available: np.ndarray
    max_charge_kw: np.ndarray
    max_discharge_kw: np.ndarray
    max_q_kvar: np.ndarray
    ramp_kw_per_s: np.ndarray
    soc_pct: np.ndarray
    soc_min_pct: np.ndarray
    soc_max_pct: np.ndarray
    present_p_kw: np.ndarray

    def __post_init__(self) -> None:
        if self.available.dtype != bool:
            object.__setattr__(self, "available", np.asarray(self.available, dtype=bool))
        size = len(self.available)
        for name in ("max_charge_kw", "max_discharge_kw", "max_q_kvar", "ramp_kw_per_s", "soc_pct",
                     "soc_min_pct", "soc_max_pct", "present_p_kw"):
            if len(getattr(self, name)) != size:
                raise ValueError(f"fleet.{name} has {len(getattr(self, name))} elements, expected {size}")

    @property
    def size(self) -> int:
        return len(self.available)

    @classmethod
    def empty(cls, size: int) -> Fleet:
        """A fleet of ``size`` unavailable units with zero limits (to be filled in by the caller)."""
        zeros = np.zeros(size)
        return cls(np.zeros(size, dtype=bool), zeros.copy(), zeros.copy(), zeros.copy(),
                   np.full(size, np.inf), np.full(size, np.nan), zeros.copy(), np.full(size, 100.0),
                   zeros.copy())


@dataclass(frozen=True, eq=False)
class Allocation:
    """The split of one target: per-unit setpoints and how much of the target they deliver."""

    p_kw: np.ndarray
    q_kvar: np.ndarray
    target_p_kw: float
    target_q_kvar: float
    delivered_p_kw: float
    delivered_q_kvar: float
    shortfall_p_kw: float
    shortfall_q_kvar: float
    #: what the fleet could deliver this period in each direction (ramp windows included), >= 0
    headroom_discharge_kw: float
    headroom_charge_kw: float


def _bucket_shift(t_min: float, t_max: float) -> int:
    """How many low bits of the float64 view to drop so that ``[t_min, t_max]`` spans <= _MAX_BUCKETS."""
    octaves = (int(np.float64(t_max).view(np.int64)) >> _MANTISSA_BITS) - (
        int(np.float64(t_min).view(np.int64)) >> _MANTISSA_BITS) + 1
    fraction_bits = 0
    while fraction_bits < 12 and octaves << (fraction_bits + 1) <= _MAX_BUCKETS:
        fraction_bits += 1
    return _MANTISSA_BITS - fraction_bits


def _level(ts: np.ndarray, cs: np.ndarray, ws: np.ndarray, base_c: float, base_w: float, weight_total: float,
           amount: float) -> float:
    """The water level λ, given candidate units sorted by saturation level ``ts``.

    ``base_c`` / ``base_w`` are the capacity and weight of units known to be saturated below all of
    ``ts``; units above all of ``ts`` are known unsaturated (they only count in ``weight_total``).
    """
    saturated = base_c + np.cumsum(cs)
    weight_used = base_w + np.cumsum(ws)
    level_sum = saturated + ts * (weight_total - weight_used)  # Σ p when λ = ts[k]; nondecreasing in k
    k = int(np.searchsorted(level_sum, amount, side="left"))
    below_c = saturated[k - 1] if k > 0 else base_c
    below_w = weight_used[k - 1] if k > 0 else base_w
    free_w = weight_total - below_w
    return (amount - below_c) / free_w if free_w > 0 else float(ts[-1])


class _Scratch:
    """Work arrays reused from call to call: allocating ~20 fresh 80 kB temporaries per call makes the
    C allocator give memory back and fault it in again, which costs more than the arithmetic."""

    def __init__(self, size: int) -> None:
        self.size = size
        # [0..2] belong to water_fill, [3..] to Allocator.allocate around it
        self.f = [np.empty(size) for _ in range(6)]
        self.b = [np.empty(size, dtype=bool) for _ in range(6)]
        self.i = np.empty(size, dtype=np.int64)


def _polish(c: np.ndarray, w: np.ndarray, level: float, amount: float) -> np.ndarray:
    """``min(c, level·w)`` after one Newton step on ``level``: the breakpoint sums lose a few digits to
    cancellation when nearly all weight is saturated; one step on the actual sum wins them back."""
    scaled = np.multiply(w, level)
    p = np.minimum(c, scaled)
    slope = float(w.sum() - np.multiply(w, scaled >= c).sum())  # weight of the units still below capacity
    if slope > 0:
        np.multiply(w, max(0.0, level + (amount - float(p.sum())) / slope), out=scaled)
        np.minimum(c, scaled, out=p)
    return p


def water_fill(capacity: np.ndarray, weight: np.ndarray, amount: float, *, scratch: _Scratch | None = None
               ) -> np.ndarray:
    """``p_i = min(capacity_i, λ·weight_i)`` with ``Σ p = amount`` (``0 <= amount <= Σ capacity``).

    Units with zero capacity or weight (or a NaN weight) get 0. ``λ`` is found exactly from the sorted
    saturation levels ``capacity_i / weight_i``. For large fleets a full sort costs more than everything
    else together, so the levels are first bucketed on a log scale (``bincount``), the bucket holding
    ``λ`` is found from the bucket sums, and only that bucket is sorted: O(n) plus a small sort, no loop
    over units.
    """
    size = len(capacity)
    work = scratch if scratch is not None and scratch.size == size else _Scratch(size)
    # (np.where / copyto(where=) / divide(where=) are several times slower than plain ufuncs, so masks
    # are applied by multiplying with them, and NaNs are cleared with fmax)
    w = np.fmax(weight, 0.0, out=work.f[0])  # NaN or negative weight -> 0
    active = np.greater(capacity, 0.0, out=work.b[0])
    active &= np.greater(w, 0.0, out=work.b[1])
    mask = np.multiply(active, 1.0, out=work.f[2])
    w *= mask
    c = np.fmax(capacity, 0.0, out=work.f[1])
    c *= mask
    total = float(c.sum())
    if amount <= 0.0 or total <= 0.0:
        return np.zeros(size)
    if amount >= total:
        return c.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.divide(c, w, out=work.f[2])  # the level at which each unit saturates; idle units 0/0 = NaN
    weight_total = float(w.sum())
    if size <= _SORT_ALL_BELOW:
        np.fmax(t, 0.0, out=t)  # idle units: NaN -> 0
        order = np.argsort(t)
        level = _level(t[order], c[order], w[order], 0.0, 0.0, weight_total, amount)
        return _polish(c, w, level, amount)

    t_min = float(np.fmin.reduce(t))  # fmin / fmax skip the idle units' NaNs
    t_max = float(np.fmax.reduce(t))
    if amount <= t_min * weight_total or t_max <= t_min:  # nobody saturates (or all at once)
        return np.minimum(c, (amount / weight_total) * w)
    # Bucket by the float's own bits: for positive doubles the int64 view is monotone, so the top bits
    # (exponent + a few mantissa bits) are an exact log-scale bucket with exactly representable edges.
    np.fmax(t, t_min, out=t)  # idle units (c = w = 0, NaN) join the lowest bucket, where they add nothing
    shift = _bucket_shift(t_min, t_max)
    key_min = int(np.float64(t_min).view(np.int64)) >> shift
    bucket = np.right_shift(t.view(np.int64), shift, out=work.i)
    bucket -= key_min
    buckets = int(bucket.max()) + 1
    c_in = np.bincount(bucket, weights=c, minlength=buckets)
    w_in = np.bincount(bucket, weights=w, minlength=buckets)
    c_below = np.concatenate(([0.0], np.cumsum(c_in)[:-1]))
    w_below = np.concatenate(([0.0], np.cumsum(w_in)[:-1]))
    edges = ((key_min + np.arange(buckets, dtype=np.int64)) << shift).view(np.float64)
    edges[0] = t_min
    at_edge = c_below + edges * (weight_total - w_below)  # Σ p when λ = lower edge of each bucket
    j = max(int(np.searchsorted(at_edge, amount, side="right")) - 1, 0)
    members = np.flatnonzero(np.equal(bucket, j, out=work.b[2]))
    order = members[np.argsort(t[members])]
    level = _level(t[order], c[order], w[order], float(c_below[j]), float(w_below[j]), weight_total, amount)
    return _polish(c, w, level, amount)


class Allocator:
    """Allocation for one fleet size, reusing its work arrays across periods (see :func:`allocate`)."""

    def __init__(self, soc_balance_gain: float = 2.0) -> None:
        self.soc_balance_gain = soc_balance_gain
        self._scratch: _Scratch | None = None

    def allocate(self, fleet: Fleet, target_p_kw: float, target_q_kvar: float = 0.0, *, dt_s: float) -> Allocation:
        """Split ``(target_p_kw, target_q_kvar)`` over ``fleet`` for a period of ``dt_s`` (module docstring).

        Non-finite targets are treated as 0: a NaN from upstream must drive nothing.
        """
        size = fleet.size
        if self._scratch is None or self._scratch.size != size:
            self._scratch = _Scratch(size)
        work = self._scratch
        target_p = float(target_p_kw) if np.isfinite(target_p_kw) else 0.0
        target_q = float(target_q_kvar) if np.isfinite(target_q_kvar) else 0.0
        soc = fleet.soc_pct
        usable = np.isfinite(soc, out=work.b[3])
        usable &= fleet.available
        may_discharge = np.greater(soc, fleet.soc_min_pct, out=work.b[4])
        may_discharge &= usable
        may_charge = np.less(soc, fleet.soc_max_pct, out=work.b[5])
        may_charge &= usable
        max_dis = np.multiply(fleet.max_discharge_kw, may_discharge, out=work.f[3])
        max_ch = np.multiply(fleet.max_charge_kw, may_charge, out=work.f[4])
        low, high = ramp_window(fleet.present_p_kw, max_ch, max_dis, fleet.ramp_kw_per_s, dt_s)
        headroom_dis = float(high.sum())
        headroom_ch = float(-low.sum())

        # SOC balancing weight: where the unit sits in its SOC window (0 empty .. 1 full), from the side
        # that matters for this target, raised to the gain
        span = np.subtract(fleet.soc_max_pct, fleet.soc_min_pct, out=work.f[0])
        if target_p >= 0:
            weight = np.subtract(soc, fleet.soc_min_pct, out=work.f[5])
        else:
            weight = np.subtract(fleet.soc_max_pct, soc, out=work.f[5])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # clipped just below
            weight /= span
        np.clip(weight, _MIN_WEIGHT, 1.0, out=weight)  # NaN stays NaN; water_fill gives those units 0
        if self.soc_balance_gain == 2.0:
            weight *= weight
        elif self.soc_balance_gain != 1.0:
            np.power(weight, self.soc_balance_gain, out=weight)
        if target_p >= 0:
            weight *= max_dis
            p = water_fill(high, weight, target_p, scratch=work)
        else:
            weight *= max_ch
            p = water_fill(np.negative(low), weight, -target_p, scratch=work)
            np.negative(p, out=p)
        delivered = float(p.sum())
        if abs(delivered) > abs(target_p) and delivered != 0.0:  # float rounding: scale down, never up
            p *= abs(target_p) / abs(delivered)
            delivered = float(p.sum())

        q_cap = np.multiply(fleet.max_q_kvar, usable)
        np.maximum(q_cap, 0.0, out=q_cap)
        q_total = float(q_cap.sum())
        if q_total > 0 and target_q != 0.0:
            q_cap *= np.sign(target_q) * min(abs(target_q), q_total) / q_total
            q = q_cap
        else:
            q = np.zeros(size)
        delivered_q = float(q.sum())
        return Allocation(
            p_kw=p,
            q_kvar=q,
            target_p_kw=target_p,
            target_q_kvar=target_q,
            delivered_p_kw=delivered,
            delivered_q_kvar=delivered_q,
            shortfall_p_kw=target_p - delivered,
            shortfall_q_kvar=target_q - delivered_q,
            headroom_discharge_kw=headroom_dis,
            headroom_charge_kw=headroom_ch,
        )


def allocate(
    fleet: Fleet,
    target_p_kw: float,
    target_q_kvar: float = 0.0,
    *,
    dt_s: float,
    soc_balance_gain: float = 2.0,
) -> Allocation:
    """Split ``(target_p_kw, target_q_kvar)`` over ``fleet`` (module docstring); a one-off :class:`Allocator`.

    A control loop keeps one :class:`Allocator` instead, so its work arrays are reused every period.
    """
    return Allocator(soc_balance_gain).allocate(fleet, target_p_kw, target_q_kvar, dt_s=dt_s)
