"""Campus allocation: the split over gateways, and the order of a change (decreases first)."""

from __future__ import annotations

import math

import pytest

from bessgw.campus.allocation import (
    UNKNOWN,
    GatewayAvailability,
    availability_from_view,
    split_setpoint,
    transition,
)
from bessgw.federation.view import CampusAggregate, CampusUnit, CampusView, UnitSummary
from bessgw.model import Quality, UnitState


def gw(name: str, charge: float, discharge: float, soc: float) -> GatewayAvailability:
    return GatewayAvailability(name, charge, discharge, soc)


def test_split_favours_the_fullest_gateway_and_sums_to_the_setpoint() -> None:
    split = split_setpoint(300.0, 0.0, [gw("a", 500, 500, 90), gw("b", 500, 500, 30)])
    assert sum(p for p, _ in split.shares.values()) == pytest.approx(300.0)
    assert split.shares["a"][0] > split.shares["b"][0] > 0
    assert split.shortfall_p_kw == pytest.approx(0.0)


def test_charging_favours_the_emptiest_gateway() -> None:
    split = split_setpoint(-300.0, 0.0, [gw("a", 500, 500, 90), gw("b", 500, 500, 30)])
    assert split.shares["b"][0] < split.shares["a"][0] < 0


def test_a_setpoint_above_capability_gives_a_shortfall_not_an_error() -> None:
    split = split_setpoint(1000.0, 0.0, [gw("a", 100, 200, 50), gw("b", 100, 300, 50)])
    assert split.shares == {"a": (200.0, 0.0), "b": (300.0, 0.0)}
    assert split.shortfall_p_kw == pytest.approx(500.0)


def test_non_finite_targets_drive_nothing() -> None:
    split = split_setpoint(math.nan, math.inf, [gw("a", 100, 100, 50)])
    assert split.shares == {"a": (0.0, 0.0)}
    assert split_setpoint(50.0, 0.0, []).shortfall_p_kw == 50.0


def test_decreases_come_first_and_sign_changes_go_through_zero() -> None:
    current = {"a": (100.0, 0.0), "b": (50.0, 0.0), "c": (30.0, 0.0)}
    target = {"a": (60.0, 0.0), "b": (-20.0, 0.0), "c": (90.0, 0.0)}
    step = transition(current, target, all_acknowledged=True)
    assert step.phase == "decrease"
    assert step.writes == {"a": (60.0, 0.0), "b": (0.0, 0.0)}  # c's increase waits


def test_increases_only_once_everything_is_acknowledged() -> None:
    current = {"a": (60.0, 0.0), "b": (0.0, 0.0)}
    target = {"a": (60.0, 0.0), "b": (-20.0, 0.0), "c": (90.0, 0.0)}
    assert transition(current, target, all_acknowledged=False).phase == "wait"
    step = transition(current, target, all_acknowledged=True)
    assert step.phase == "increase"
    assert step.writes == {"b": (-20.0, 0.0), "c": (90.0, 0.0)}
    assert transition(target, target, all_acknowledged=True).phase == "steady"


def test_a_corrupt_share_is_first_overwritten_with_zero() -> None:
    step = transition({"a": (UNKNOWN, UNKNOWN)}, {"a": (80.0, 0.0)}, all_acknowledged=True)
    assert step.writes == {"a": (0.0, 0.0)}


def test_small_increases_wait_for_the_deadband_but_decreases_never_do() -> None:
    current = {"a": (100.0, 0.0)}
    assert transition(current, {"a": (100.5, 0.0)}, True, min_change_kw=1.0).phase == "steady"
    assert transition(current, {"a": (99.9, 0.0)}, True, min_change_kw=1.0).writes == {"a": (99.9, 0.0)}


def _unit(gateway: str, unit: str, quality: Quality, charge: float, discharge: float, soc: float,
          kwh: float) -> CampusUnit:
    summary = UnitSummary(unit, UnitState.RUNNING, quality, soc, 0.0, charge, discharge, kwh, 0.0)
    return CampusUnit(gateway, False, summary, 0.1, quality, "")


def test_availability_sums_good_units_per_gateway() -> None:
    units = (
        _unit("gw1", "u1", Quality.GOOD, 100, 200, 80, 1000),
        _unit("gw1", "u2", Quality.GOOD, 50, 60, 20, 3000),
        _unit("gw1", "u3", Quality.STALE, 999, 999, 50, 1000),
        _unit("gw2", "u4", Quality.GOOD, 10, 20, 50, 500),
    )
    aggregate = CampusAggregate(0, 0, 0, 0, 0, (), (), 0, 0, 0)
    view = CampusView("gw1", 0.0, (), units, aggregate)
    a, b, c = availability_from_view(view, ["gw1", "gw2", "gw9"])
    assert (a.available_charge_kw, a.available_discharge_kw) == (150, 260)
    assert a.soc_pct == pytest.approx((80 * 1000 + 20 * 3000) / 4000)
    assert (b.available_charge_kw, b.available_discharge_kw) == (10, 20)
    assert c.available_discharge_kw == 0 and math.isnan(c.soc_pct)
