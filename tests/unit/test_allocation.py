"""Allocation: limits, ramps, unavailable units, shortfall and SOC balancing, as properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bessgw.control import allocation
from bessgw.control.allocation import Fleet, allocate, water_fill
from bessgw.control.envelope import ramp_window
from bessgw.model import Capability, SiteLimits, negotiate
from bessgw.plugin.manager import build_plugin_manager

CHEMISTRIES = build_plugin_manager().collect().chemistries
PROPERTY = settings(max_examples=200, deadline=None)


def rel_tol(value: float) -> float:
    return 1e-9 * max(1.0, abs(value))


@st.composite
def unit_rows(draw) -> dict[str, float]:
    """One unit: part random limits, part negotiated from a real chemistry at a random SOC/temperature."""
    soc = draw(st.one_of(st.floats(0.0, 100.0), st.just(math.nan)))
    present = draw(st.floats(-3000.0, 3000.0))
    available = draw(st.booleans() | st.just(True))
    ramp = draw(st.one_of(st.floats(0.1, 5000.0), st.just(math.inf)))
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(CHEMISTRIES)))
        temp = draw(st.floats(-30.0, 65.0))
        offer = Capability(max_charge_kw=draw(st.floats(0, 3000)), max_discharge_kw=draw(st.floats(0, 3000)),
                           energy_kwh=draw(st.floats(10, 8000)), chemistry=name,
                           max_q_kvar=draw(st.floats(0, 1000)), ramp_kw_per_s=ramp)
        limits = negotiate(offer, CHEMISTRIES[name].envelope(50.0 if math.isnan(soc) else soc, temp),
                           SiteLimits(), soc_pct=soc, temp_c=temp).limits
        assert limits is not None
        return dict(available=available, max_charge_kw=limits.max_charge_kw,
                    max_discharge_kw=limits.max_discharge_kw, max_q_kvar=limits.max_q_kvar,
                    ramp_kw_per_s=limits.ramp_kw_per_s, soc_pct=soc, soc_min_pct=limits.soc_min_pct,
                    soc_max_pct=limits.soc_max_pct, present_p_kw=present)
    soc_min = draw(st.floats(0.0, 40.0))
    return dict(available=available, max_charge_kw=draw(st.floats(0, 3000)),
                max_discharge_kw=draw(st.floats(0, 3000)), max_q_kvar=draw(st.floats(0, 1000)),
                ramp_kw_per_s=ramp, soc_pct=soc, soc_min_pct=soc_min,
                soc_max_pct=draw(st.floats(soc_min, 100.0)), present_p_kw=present)


def fleet_of(rows: list[dict[str, float]]) -> Fleet:
    return Fleet(**{name: np.array([row[name] for row in rows], dtype=bool if name == "available" else float)
                    for name in rows[0]})


targets = st.one_of(st.floats(-50_000.0, 50_000.0), st.just(0.0))


@PROPERTY
@given(rows=st.lists(unit_rows(), min_size=1, max_size=30), target=targets, target_q=targets,
       dt=st.floats(0.01, 5.0), gain=st.floats(0.0, 4.0))
def test_allocation_stays_in_every_envelope_and_never_exceeds_the_target(rows, target, target_q, dt, gain) -> None:
    fleet = fleet_of(rows)
    result = allocate(fleet, target, target_q, dt_s=dt, soc_balance_gain=gain)
    p, q = result.p_kw, result.q_kvar
    low, high = ramp_window(fleet.present_p_kw, fleet.max_charge_kw, fleet.max_discharge_kw,
                            fleet.ramp_kw_per_s, dt)
    # every unit inside its limits and its ramp window
    assert np.all(p <= np.minimum(high, fleet.max_discharge_kw) + 1e-9)
    assert np.all(p >= np.maximum(low, -fleet.max_charge_kw) - 1e-9)
    assert np.all(np.abs(q) <= fleet.max_q_kvar + 1e-9)
    # unavailable (or SOC unknown) units get exactly 0
    idle = ~fleet.available | np.isnan(fleet.soc_pct)
    assert np.all(p[idle] == 0.0) and np.all(q[idle] == 0.0)
    # no discharge from an empty unit, no charge into a full one
    assert np.all(p[fleet.soc_pct <= fleet.soc_min_pct] <= 0.0)
    assert np.all(p[fleet.soc_pct >= fleet.soc_max_pct] >= 0.0)
    # no unit works against the target, and the sum never exceeds it in magnitude
    assert np.all(p * target >= 0.0)
    assert abs(result.delivered_p_kw) <= abs(target) + rel_tol(target)
    assert abs(result.delivered_q_kvar) <= abs(target_q) + rel_tol(target_q)
    assert result.delivered_p_kw == pytest.approx(float(p.sum()), abs=1e-6)
    # shortfall = target - delivered; 0 when the target is feasible, else every unit is at its edge
    assert result.shortfall_p_kw == target - result.delivered_p_kw
    headroom = result.headroom_discharge_kw if target >= 0 else result.headroom_charge_kw
    if abs(target) <= headroom:
        assert abs(result.shortfall_p_kw) <= 1e-6 * max(1.0, abs(target))
    else:
        assert abs(result.delivered_p_kw) == pytest.approx(headroom, rel=1e-9, abs=1e-6)
    assert result.shortfall_q_kvar == target_q - result.delivered_q_kvar


@PROPERTY
@given(soc_a=st.floats(6.0, 94.0), soc_b=st.floats(6.0, 94.0), fraction=st.floats(0.01, 0.99),
       discharge=st.booleans())
def test_soc_balancing_discharges_the_fullest_and_charges_the_emptiest_hardest(soc_a, soc_b, fraction,
                                                                               discharge) -> None:
    fleet = Fleet(np.array([True, True]), np.full(2, 500.0), np.full(2, 500.0), np.zeros(2), np.full(2, np.inf),
                  np.array([soc_a, soc_b]), np.full(2, 5.0), np.full(2, 95.0), np.zeros(2))
    target = (1000.0 if discharge else -1000.0) * fraction
    p = allocate(fleet, target, dt_s=1.0).p_kw
    fuller, emptier = (0, 1) if soc_a >= soc_b else (1, 0)
    if discharge:
        assert p[fuller] >= p[emptier] - 1e-9
    else:
        assert -p[emptier] >= -p[fuller] - 1e-9
    if abs(soc_a - soc_b) > 1.0:  # strictly: without balancing both would get half
        assert (p[fuller] > p[emptier]) if discharge else (-p[emptier] > -p[fuller])
    assert float(p.sum()) == pytest.approx(target, rel=1e-9)


def test_an_unavailable_units_share_moves_to_the_others() -> None:
    fleet = Fleet(np.array([True, True, True]), np.full(3, 400.0), np.full(3, 400.0), np.full(3, 100.0),
                  np.full(3, np.inf), np.full(3, 50.0), np.full(3, 5.0), np.full(3, 95.0), np.zeros(3))
    assert allocate(fleet, 900.0, dt_s=1.0).p_kw == pytest.approx([300.0, 300.0, 300.0])
    fleet.available[1] = False
    result = allocate(fleet, 600.0, 150.0, dt_s=1.0)
    assert result.p_kw == pytest.approx([300.0, 0.0, 300.0])
    assert result.q_kvar == pytest.approx([75.0, 0.0, 75.0])
    over = allocate(fleet, 1000.0, 500.0, dt_s=1.0)
    assert over.p_kw == pytest.approx([400.0, 0.0, 400.0])
    assert over.shortfall_p_kw == pytest.approx(200.0)
    assert over.shortfall_q_kvar == pytest.approx(300.0)


def test_ramp_limits_increases_but_not_decreases() -> None:
    fleet = Fleet(np.array([True, True]), np.full(2, 500.0), np.full(2, 500.0), np.zeros(2), np.full(2, 10.0),
                  np.full(2, 50.0), np.full(2, 5.0), np.full(2, 95.0), np.array([300.0, 0.0]))
    up = allocate(fleet, 1000.0, dt_s=1.0)
    assert up.p_kw == pytest.approx([310.0, 10.0]) and up.shortfall_p_kw == pytest.approx(680.0)
    down = allocate(fleet, 50.0, dt_s=1.0)  # unit 0 drops from 300 at once, the sum follows the target
    assert float(down.p_kw.sum()) == pytest.approx(50.0) and np.all(down.p_kw <= [310.0, 10.0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2049, 6000), fill=st.floats(0.0, 1.2),
       gain=st.integers(0, 3))
def test_bucketed_water_fill_matches_the_full_sort(seed, size, fill, gain) -> None:
    rng = np.random.default_rng(seed)
    capacity = rng.uniform(0, 500, size) * (rng.random(size) > 0.2)
    weight = capacity * np.maximum(rng.random(size), 1e-3) ** gain
    amount = float(capacity.sum()) * fill
    bucketed = water_fill(capacity, weight, amount)
    original = allocation._SORT_ALL_BELOW
    allocation._SORT_ALL_BELOW = size + 1
    try:
        exact = water_fill(capacity, weight, amount)
    finally:
        allocation._SORT_ALL_BELOW = original
    assert np.all(bucketed <= capacity) and np.all(bucketed >= 0)
    assert bucketed == pytest.approx(exact, abs=1e-6)  # 1 mW per unit
    assert float(bucketed.sum()) == pytest.approx(min(amount, float(capacity.sum())), rel=1e-9, abs=1e-6)


def test_non_finite_targets_drive_nothing() -> None:
    fleet = Fleet(np.array([True]), np.full(1, 100.0), np.full(1, 100.0), np.full(1, 10.0), np.full(1, np.inf),
                  np.full(1, 50.0), np.zeros(1), np.full(1, 100.0), np.zeros(1))
    for bad in (math.nan, math.inf, -math.inf):
        result = allocate(fleet, bad, bad, dt_s=1.0)
        assert result.p_kw.tolist() == [0.0] and result.q_kvar.tolist() == [0.0]


def test_fleet_arrays_must_agree_in_length() -> None:
    with pytest.raises(ValueError, match="max_charge_kw"):
        Fleet(np.ones(2, dtype=bool), np.zeros(3), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
              np.zeros(2), np.zeros(2), np.zeros(2))
