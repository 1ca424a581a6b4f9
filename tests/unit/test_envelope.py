"""The safety envelope: no write leaves the negotiated limits or the ramp rule, whatever is asked."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bessgw.control.envelope import gate, gate_arrays, ramp_window
from bessgw.model import Capability, EffectiveLimits, SiteLimits, negotiate
from bessgw.plugin.manager import build_plugin_manager

CHEMISTRIES = build_plugin_manager().collect().chemistries
PROPERTY = settings(max_examples=200, deadline=None)

kw = st.floats(0.0, 5000.0, allow_nan=False)
ramps = st.one_of(st.floats(0.01, 1e4), st.just(math.inf))
requests = st.one_of(st.floats(-1e5, 1e5), st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))


@st.composite
def negotiated_limits(draw) -> EffectiveLimits:
    """Limits as the gateway derives them: a vendor offer ∩ a real chemistry at a SOC/temperature ∩ site."""
    name = draw(st.sampled_from(sorted(CHEMISTRIES)))
    offer = Capability(max_charge_kw=draw(kw), max_discharge_kw=draw(kw), energy_kwh=draw(st.floats(1.0, 10000.0)),
                       chemistry=name, max_q_kvar=draw(kw), ramp_kw_per_s=draw(ramps))
    site = SiteLimits(max_charge_kw=draw(st.none() | kw), max_discharge_kw=draw(st.none() | kw),
                      ramp_kw_per_s=draw(st.none() | st.floats(0.01, 1e4)))
    soc = draw(st.floats(0.0, 100.0))
    temp = draw(st.floats(-40.0, 70.0))
    result = negotiate(offer, CHEMISTRIES[name].envelope(soc, temp), site, soc_pct=soc, temp_c=temp)
    assert result.limits is not None, result.reason
    return result.limits


@st.composite
def random_limits(draw) -> EffectiveLimits:
    return EffectiveLimits(max_charge_kw=draw(kw), max_discharge_kw=draw(kw), max_q_kvar=draw(kw),
                           soc_min_pct=0.0, soc_max_pct=100.0, ramp_kw_per_s=draw(ramps),
                           temp_min_c=-20.0, temp_max_c=55.0)


any_limits = st.one_of(negotiated_limits(), random_limits())


def test_real_chemistries_are_installed() -> None:
    assert {"lfp", "nmc"} <= set(CHEMISTRIES)


@PROPERTY
@given(limits=any_limits, present=st.floats(-6000.0, 6000.0), request=requests, q=requests,
       dt=st.floats(0.0, 10.0))
def test_no_write_leaves_the_envelope_or_the_ramp_rule(limits, present, request, q, dt) -> None:
    out = gate(request, q, limits, present_p_kw=present, dt_s=dt)
    step = limits.ramp_kw_per_s * dt if dt > 0 else 0.0
    assert math.isfinite(out.p_kw) and math.isfinite(out.q_kvar)
    assert -limits.max_charge_kw <= out.p_kw <= limits.max_discharge_kw
    assert abs(out.q_kvar) <= limits.max_q_kvar
    # ramp rule: |P| grows by at most one ramp step on either side; a sign change starts from 0
    if out.p_kw > 0:
        assert out.p_kw <= max(present, 0.0) + step + 1e-9
    if out.p_kw < 0:
        assert -out.p_kw <= max(-present, 0.0) + step + 1e-9
    # and the envelope never moves a request further than needed: inside the window it passes unchanged
    low, high = ramp_window(present, limits.max_charge_kw, limits.max_discharge_kw, limits.ramp_kw_per_s, dt)
    if math.isfinite(request) and low <= request <= high:
        assert out.p_kw == request


@PROPERTY
@given(limits=any_limits, present=st.floats(-6000.0, 6000.0), fraction=st.floats(0.0, 1.0))
def test_reducing_power_is_always_allowed_at_once(limits, present, fraction) -> None:
    """Less |P| in the same direction (within the limits) passes unchanged, however slow the ramp."""
    request = limits.clamp_p(present) * fraction
    out = gate(request, 0.0, limits, present_p_kw=present, dt_s=0.0)
    assert out.p_kw == pytest.approx(request, abs=1e-9)


def test_unnegotiated_unit_gets_zero() -> None:
    out = gate(250.0, 10.0, None, present_p_kw=100.0, dt_s=1.0)
    assert (out.p_kw, out.q_kvar, out.clamped) == (0.0, 0.0, True)


def test_sign_change_is_limited_like_an_increase_from_zero() -> None:
    limits = EffectiveLimits(500.0, 500.0, 0.0, 0.0, 100.0, ramp_kw_per_s=10.0, temp_min_c=-20, temp_max_c=55)
    out = gate(-400.0, 0.0, limits, present_p_kw=300.0, dt_s=1.0)
    assert out.p_kw == -10.0  # dropping 300 -> 0 is immediate, 0 -> -10 is one ramp step


@PROPERTY
@given(st.lists(st.tuples(any_limits, st.floats(-6000.0, 6000.0), requests, requests), min_size=1, max_size=20),
       st.floats(0.0, 5.0))
def test_fleet_gate_equals_the_per_unit_gate(rows, dt) -> None:
    p, q = gate_arrays(
        np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
        present_p_kw=np.array([r[1] for r in rows]),
        max_charge_kw=np.array([r[0].max_charge_kw for r in rows]),
        max_discharge_kw=np.array([r[0].max_discharge_kw for r in rows]),
        max_q_kvar=np.array([r[0].max_q_kvar for r in rows]),
        ramp_kw_per_s=np.array([r[0].ramp_kw_per_s for r in rows]), dt_s=dt)
    for i, (limits, present, request, q_request) in enumerate(rows):
        single = gate(request, q_request, limits, present_p_kw=present, dt_s=dt)
        assert p[i] == pytest.approx(single.p_kw, abs=1e-9)
        assert q[i] == pytest.approx(single.q_kvar, abs=1e-9)
