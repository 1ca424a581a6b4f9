"""The domain dataclasses refuse impossible values and stay immutable."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bessgw.model import Capability, EffectiveLimits, Quality, Setpoint, Telemetry, UnitState, parse_version
from bessgw.model.telemetry import NUMERIC_FIELDS


def offer(**overrides) -> Capability:
    values = dict(max_charge_kw=500, max_discharge_kw=500, energy_kwh=1000, chemistry="LFP")
    values.update(overrides)
    return Capability(**values)


def test_capability_normalises_and_freezes() -> None:
    capability = offer(features={"grid_forming"})
    assert capability.chemistry == "lfp"
    assert capability.features == frozenset({"grid_forming"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        capability.energy_kwh = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_charge_kw": -1}, "max_charge_kw must be a finite number >= 0"),
        ({"energy_kwh": math.nan}, "energy_kwh must be a finite number >= 0"),
        ({"soc_min_pct": 90, "soc_max_pct": 10}, "soc: need min <= max"),
        ({"soc_max_pct": 120}, r"soc window must lie within 0\.\.100"),
        ({"ramp_kw_per_s": 0}, "ramp_kw_per_s must be > 0"),
        ({"chemistry": ""}, "must name a chemistry"),
    ],
)
def test_capability_rejects(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        offer(**overrides)


def test_telemetry_good_data_must_be_plausible_but_bad_data_may_not_be() -> None:
    with pytest.raises(ValueError, match=r"soc_pct out of 0\.\.100"):
        Telemetry(unit_id="u", timestamp=1.0, soc_pct=130.0)
    bad = Telemetry(unit_id="u", timestamp=1.0, soc_pct=130.0, quality=Quality.BAD, quality_reason="range")
    assert bad.quality is Quality.BAD


def test_telemetry_quality_age_and_array() -> None:
    telemetry = Telemetry(unit_id="u", timestamp=100.0, state="running", soc_pct=50.0, p_kw=10.0,
                          extra={"electrolyte_temp_c": 30.0})
    assert telemetry.state is UnitState.RUNNING
    assert telemetry.age_s(103.5) == 3.5 and telemetry.age_s(50.0) == 0.0
    stale = telemetry.with_quality(Quality.STALE, "old")
    assert (stale.quality, stale.quality_reason, stale.soc_pct) == (Quality.STALE, "old", 50.0)
    array = telemetry.as_array()
    assert array.shape == (len(NUMERIC_FIELDS),) and array[NUMERIC_FIELDS.index("soc_pct")] == 50.0
    assert np.isnan(array[NUMERIC_FIELDS.index("dc_v")])
    assert telemetry.as_dict()["state"] == "running"
    with pytest.raises(TypeError):
        telemetry.extra["x"] = 1.0  # type: ignore[index]


def test_setpoint_validation_and_expiry() -> None:
    with pytest.raises(ValueError, match="p_kw must be finite"):
        Setpoint(p_kw=math.inf)
    with pytest.raises(ValueError, match="expires before it was issued"):
        Setpoint(p_kw=1, issued_at=10, expires_at=5)
    setpoint = Setpoint(p_kw=1, issued_at=10, expires_at=20)
    assert not setpoint.expired(19.9) and setpoint.expired(20.0)
    assert not Setpoint(p_kw=1).expired(1e12)


def test_limits_clamp_and_allow() -> None:
    limits = EffectiveLimits(max_charge_kw=100, max_discharge_kw=200, max_q_kvar=0, soc_min_pct=5,
                             soc_max_pct=95, ramp_kw_per_s=10, temp_min_c=0, temp_max_c=50,
                             reasons=(("max_charge_kw", "site limit"),))
    assert limits.clamp_p(500) == 200 and limits.clamp_p(-500) == -100 and limits.clamp_p(5) == 5
    assert limits.allows_p(-100) and not limits.allows_p(-100.1)
    assert limits.reason("max_charge_kw") == "site limit" and limits.reason("ramp_kw_per_s") == ""


@pytest.mark.parametrize(("text", "parsed"), [("2.1", (2, 1)), ("v2", (2,)), ("3.0.7-rc1", (3, 0, 7)),
                                              ("2.0.0", (2,)), ("FW 12.4", (12, 4)),
                                              ("2.1rc3", (2, 1))])
def test_parse_version(text: str, parsed: tuple[int, ...]) -> None:
    assert parse_version(text) == parsed


def test_parse_version_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="not a version"):
        parse_version("beta")
