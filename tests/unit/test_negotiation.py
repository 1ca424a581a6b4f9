"""Property tests of capability negotiation: offer ∩ chemistry envelope ∩ site limits.

The promise negotiation makes to control is that the effective limits never exceed any of the three
inputs; these tests state that promise over generated inputs, with both synthetic envelopes (to reach
every corner) and the real chemistry models of the chemistry plugin (to check their derating as
negotiation sees it, in kW).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bessgw.model import (
    Capability,
    ChemistryEnvelope,
    EffectiveLimits,
    SiteLimits,
    negotiate,
    parse_version,
    tighten,
)
from bessgw.plugin import ChemistryModel
from bessgw.plugin.manager import build_plugin_manager

CHEMISTRIES: dict[str, ChemistryModel] = build_plugin_manager().collect().chemistries
NAMES = ("lfp", "nmc", "lto", "vrfb")

#: no per-example deadline: the first examples pay for numpy warm-up, which is not what is under test
relaxed = settings(deadline=None)
#: for tests parametrized over the four chemistries (and directions): as many examples in total, faster
per_chemistry = settings(deadline=None, max_examples=40)

kw = st.floats(0, 20_000, allow_nan=False)
pct = st.floats(0, 100, allow_nan=False)
celsius = st.floats(-50, 80, allow_nan=False)


@st.composite
def windows(draw: st.DrawFn, values: st.SearchStrategy[float]) -> tuple[float, float]:
    low, high = sorted((draw(values), draw(values)))
    return low, high


ANY_NAME = st.sampled_from(NAMES)


@st.composite
def offers(draw: st.DrawFn, chemistry: st.SearchStrategy[str] = ANY_NAME) -> Capability:
    soc_min, soc_max = draw(windows(pct))
    temp_min, temp_max = draw(windows(celsius))
    return Capability(
        max_charge_kw=draw(kw),
        max_discharge_kw=draw(kw),
        energy_kwh=draw(st.floats(0, 20_000, allow_nan=False)),
        chemistry=draw(chemistry),
        max_q_kvar=draw(kw),
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        temp_min_c=temp_min,
        temp_max_c=temp_max,
        ramp_kw_per_s=draw(st.one_of(st.just(math.inf), st.floats(0.1, 1e5))),
        protocol_version=draw(st.sampled_from(["1", "1.0", "2.3", "v3.1"])),
    )


@st.composite
def envelopes(draw: st.DrawFn, chemistry: str) -> ChemistryEnvelope:
    soc_min, soc_max = draw(windows(pct))
    temp_min, temp_max = draw(windows(celsius))
    charge, discharge = draw(st.floats(0, 1)), draw(st.floats(0, 1))
    return ChemistryEnvelope(
        chemistry=chemistry,
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        max_charge_c=draw(st.floats(0, 5)) * charge,
        max_discharge_c=draw(st.floats(0, 5)) * discharge,
        temp_min_c=temp_min,
        temp_max_c=temp_max,
        charge_derating=charge,
        discharge_derating=discharge,
    )


@st.composite
def sites(draw: st.DrawFn) -> SiteLimits:
    def maybe(strategy: st.SearchStrategy[float]) -> float | None:
        return draw(st.none() | strategy)

    return SiteLimits(
        max_charge_kw=maybe(kw),
        max_discharge_kw=maybe(kw),
        max_q_kvar=maybe(kw),
        soc_min_pct=maybe(pct),
        soc_max_pct=maybe(pct),
        ramp_kw_per_s=maybe(st.floats(0.1, 1e5)),
    )


def site_or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def assert_within_all_three(
    limits: EffectiveLimits, offer: Capability, envelope: ChemistryEnvelope, site: SiteLimits
) -> None:
    assert limits.max_charge_kw <= offer.max_charge_kw
    assert limits.max_charge_kw <= envelope.max_charge_c * offer.energy_kwh
    assert limits.max_charge_kw <= site_or_inf(site.max_charge_kw)
    assert limits.max_discharge_kw <= offer.max_discharge_kw
    assert limits.max_discharge_kw <= envelope.max_discharge_c * offer.energy_kwh
    assert limits.max_discharge_kw <= site_or_inf(site.max_discharge_kw)
    assert limits.max_q_kvar <= offer.max_q_kvar
    assert limits.max_q_kvar <= site_or_inf(site.max_q_kvar)
    assert limits.ramp_kw_per_s <= offer.ramp_kw_per_s
    assert limits.ramp_kw_per_s <= site_or_inf(site.ramp_kw_per_s)
    # the SOC window lies inside every input's window
    assert limits.soc_min_pct >= max(offer.soc_min_pct, envelope.soc_min_pct)
    assert limits.soc_max_pct <= min(offer.soc_max_pct, envelope.soc_max_pct)
    if site.soc_min_pct is not None:
        assert limits.soc_min_pct >= site.soc_min_pct
    if site.soc_max_pct is not None:
        assert limits.soc_max_pct <= site.soc_max_pct
    assert limits.soc_min_pct <= limits.soc_max_pct
    assert max(offer.temp_min_c, envelope.temp_min_c) <= limits.temp_min_c
    assert limits.temp_max_c <= min(offer.temp_max_c, envelope.temp_max_c)
    assert limits.max_charge_kw >= 0 and limits.max_discharge_kw >= 0


# ------------------------------------------------------------------------------ never exceeds inputs


@relaxed
@given(data=st.data(), site=sites(), soc=pct, temp=celsius)
def test_synthetic_envelope_never_exceeded(data: st.DataObject, site: SiteLimits, soc: float,
                                           temp: float) -> None:
    offer = data.draw(offers())
    envelope = data.draw(envelopes(offer.chemistry))
    result = negotiate(offer, envelope, site, soc_pct=soc, temp_c=temp)
    site_soc_min = -math.inf if site.soc_min_pct is None else site.soc_min_pct
    soc_windows_meet = max(offer.soc_min_pct, envelope.soc_min_pct, site_soc_min) <= min(
        offer.soc_max_pct, envelope.soc_max_pct, site_or_inf(site.soc_max_pct)
    )
    temp_windows_meet = max(offer.temp_min_c, envelope.temp_min_c) <= min(
        offer.temp_max_c, envelope.temp_max_c
    )
    # refused exactly when the windows do not overlap, and then with a reason
    assert result.accepted == (soc_windows_meet and temp_windows_meet)
    if not result.accepted:
        assert result.reason and result.limits is None
        return
    assert_within_all_three(result.limits, offer, envelope, site)
    if not (result.limits.temp_min_c <= temp <= result.limits.temp_max_c):
        assert result.limits.max_charge_kw == result.limits.max_discharge_kw == 0.0


@pytest.mark.parametrize("name", NAMES)
@per_chemistry
@given(data=st.data(), site=sites(), soc=pct, temp=celsius)
def test_real_chemistry_envelope_never_exceeded(name: str, data: st.DataObject, site: SiteLimits,
                                                soc: float, temp: float) -> None:
    model = CHEMISTRIES[name]
    offer = data.draw(offers(st.just(name)))
    envelope = model.envelope(soc, temp)
    result = negotiate(offer, envelope, site, soc_pct=soc, temp_c=temp, known_chemistries=CHEMISTRIES)
    if not result.accepted:
        assert result.reason
        return
    assert_within_all_three(result.limits, offer, envelope, site)
    # the chemistry's own figures, independently of how the envelope was built
    assert result.limits.max_charge_kw <= model.max_charge_c * offer.energy_kwh
    assert result.limits.soc_min_pct >= model.soc_min_pct
    assert result.limits.soc_max_pct <= model.soc_max_pct
    assert model.temp_min_c <= result.limits.temp_min_c <= result.limits.temp_max_c <= model.temp_max_c
    if not model.temp_min_c < temp < model.temp_max_c:
        assert result.limits.max_charge_kw == result.limits.max_discharge_kw == 0.0


# ------------------------------------------------------------------------- derating monotone in kW


def wide_open_offer(name: str, energy_kwh: float = 4000.0) -> Capability:
    """An offer that binds nothing, so the chemistry alone decides the kW."""
    return Capability(max_charge_kw=1e6, max_discharge_kw=1e6, energy_kwh=energy_kwh, chemistry=name,
                      temp_min_c=-60.0, temp_max_c=90.0)


def negotiated_kw(name: str, soc: float, temp: float) -> tuple[float, float]:
    model = CHEMISTRIES[name]
    envelope = model.envelope(soc, temp)
    result = negotiate(wide_open_offer(name), envelope, SiteLimits(), soc_pct=soc, temp_c=temp)
    assert result.accepted, result.reason
    return result.limits.max_charge_kw, result.limits.max_discharge_kw


def comfortable_band(model: ChemistryModel, direction: str) -> tuple[float, float]:
    temps = np.linspace(model.temp_min_c, model.temp_max_c, 2001)
    full = temps[getattr(model, f"{direction}_derating")(temps, 50.0) == 1.0]
    return float(full.min()), float(full.max())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("direction", ["charge", "discharge"])
@per_chemistry
@given(data=st.data(), soc=st.floats(20, 80))
def test_derating_monotone_beyond_the_band(name: str, direction: str, data: st.DataObject,
                                           soc: float) -> None:
    """Further outside the comfortable band never allows more power; 0 at and beyond the hard limits."""
    model = CHEMISTRIES[name]
    low, high = comfortable_band(model, direction)
    index = 0 if direction == "charge" else 1
    below = sorted(data.draw(st.lists(st.floats(model.temp_min_c - 30, low), min_size=2, max_size=6)))
    above = sorted(data.draw(st.lists(st.floats(high, model.temp_max_c + 30), min_size=2, max_size=6)))
    cold = [negotiated_kw(name, soc, t)[index] for t in below]  # coldest first
    hot = [negotiated_kw(name, soc, t)[index] for t in above]  # coolest first
    assert all(a <= b for a, b in itertools.pairwise(cold)), (below, cold)
    assert all(a >= b for a, b in itertools.pairwise(hot)), (above, hot)
    for t in (model.temp_min_c, model.temp_min_c - 5, model.temp_max_c, model.temp_max_c + 5):
        assert negotiated_kw(name, soc, t)[index] == 0.0


def test_lfp_cold_charge_goes_to_zero_while_vrfb_keeps_full_power() -> None:
    lfp_charge, lfp_discharge = negotiated_kw("lfp", 50.0, 0.0)
    assert lfp_charge == 0.0 and lfp_discharge > 0.0
    vrfb_charge, _ = negotiated_kw("vrfb", 50.0, 5.0)
    assert vrfb_charge == pytest.approx(CHEMISTRIES["vrfb"].max_charge_c * 4000.0)
    lto_charge, _ = negotiated_kw("lto", 50.0, -10.0)
    assert lto_charge > 0.0


# -------------------------------------------------------------------------------------- refusals


@relaxed
@given(offer=offers(), site=sites())
def test_unknown_chemistry_is_refused_with_a_reason(offer: Capability, site: SiteLimits) -> None:
    result = negotiate(offer, None, site, soc_pct=50.0, temp_c=25.0, known_chemistries=("lfp", "nmc"))
    assert not result.accepted and result.limits is None
    assert repr(offer.chemistry) in result.reason and "lfp, nmc" in result.reason


def test_unknown_chemistry_without_any_installed() -> None:
    offer = Capability(max_charge_kw=1, max_discharge_kw=1, energy_kwh=1, chemistry="sodium-ion")
    result = negotiate(offer, None, SiteLimits(), soc_pct=50.0, temp_c=25.0)
    assert not result.accepted and "'sodium-ion'" in result.reason and "none installed" in result.reason


def test_envelope_of_another_chemistry_is_refused() -> None:
    offer = wide_open_offer("lfp")
    result = negotiate(offer, CHEMISTRIES["nmc"].envelope(50, 25), SiteLimits(), soc_pct=50.0, temp_c=25.0)
    assert not result.accepted and "nmc" in result.reason


versions = st.lists(st.integers(0, 20), min_size=1, max_size=4).map(lambda parts: ".".join(map(str, parts)))


@relaxed
@given(offered=versions, minimum=versions)
def test_protocol_below_the_minimum_is_refused(offered: str, minimum: str) -> None:
    offer = Capability(max_charge_kw=10, max_discharge_kw=10, energy_kwh=10, chemistry="lfp",
                       protocol_version=offered)
    result = negotiate(offer, CHEMISTRIES["lfp"].envelope(50, 25), SiteLimits(), soc_pct=50.0, temp_c=25.0,
                       min_protocol_version=minimum)
    too_old = parse_version(offered) < parse_version(minimum)
    assert result.accepted is not too_old
    if too_old:
        assert offered in result.reason and minimum in result.reason


def test_unparsable_protocol_version_is_refused() -> None:
    offer = Capability(max_charge_kw=10, max_discharge_kw=10, energy_kwh=10, chemistry="lfp",
                       protocol_version="beta")
    result = negotiate(offer, CHEMISTRIES["lfp"].envelope(50, 25), SiteLimits(), soc_pct=50.0, temp_c=25.0,
                       min_protocol_version="2")
    assert not result.accepted and "version" in result.reason


# --------------------------------------------------------------------------------- SOC at the edges


@pytest.mark.parametrize("name", NAMES)
@per_chemistry
@given(site=sites(), above=st.floats(0, 10))
def test_soc_at_window_top_gives_no_charge(name: str, site: SiteLimits, above: float) -> None:
    model = CHEMISTRIES[name]
    offer = wide_open_offer(name)
    top = min(model.soc_max_pct, site_or_inf(site.soc_max_pct))
    soc = min(top + above, 100.0)
    result = negotiate(offer, model.envelope(soc, 25.0), site, soc_pct=soc, temp_c=25.0)
    assume(result.accepted)
    assert result.limits.max_charge_kw == 0.0
    assert "window top" in result.limits.reason("max_charge_kw")


@pytest.mark.parametrize("name", NAMES)
def test_soc_at_window_bottom_gives_no_discharge(name: str) -> None:
    model = CHEMISTRIES[name]
    soc = model.soc_min_pct
    envelope = model.envelope(soc, 25.0)
    result = negotiate(wide_open_offer(name), envelope, SiteLimits(), soc_pct=soc, temp_c=25.0)
    assert result.limits.max_discharge_kw == 0.0
    assert result.limits.max_charge_kw > 0.0


@pytest.mark.parametrize("name", NAMES)
def test_unknown_soc_or_temperature_allows_nothing(name: str) -> None:
    model = CHEMISTRIES[name]
    for soc, temp in ((math.nan, 25.0), (50.0, math.nan)):
        result = negotiate(wide_open_offer(name), model.envelope(soc, temp), SiteLimits(), soc_pct=soc,
                           temp_c=temp)
        assert result.accepted
        assert result.limits.max_charge_kw == result.limits.max_discharge_kw == 0.0
        assert "unknown" in result.limits.reason("max_charge_kw")


# ------------------------------------------------------------------------------------------ tighten


@st.composite
def limits(draw: st.DrawFn) -> EffectiveLimits:
    soc_min, soc_max = draw(windows(pct))
    temp_min, temp_max = draw(windows(celsius))
    return EffectiveLimits(
        max_charge_kw=draw(kw),
        max_discharge_kw=draw(kw),
        max_q_kvar=draw(kw),
        soc_min_pct=soc_min,
        soc_max_pct=soc_max,
        ramp_kw_per_s=draw(st.one_of(st.just(math.inf), st.floats(0.1, 1e5))),
        temp_min_c=temp_min,
        temp_max_c=temp_max,
        reasons=(("max_charge_kw", "vendor offer"),),
    )


UPPER = ("max_charge_kw", "max_discharge_kw", "max_q_kvar", "ramp_kw_per_s", "soc_max_pct", "temp_max_c")
LOWER = ("soc_min_pct", "temp_min_c")


@relaxed
@given(current=limits(), proposed=limits())
def test_tighten_never_widens(current: EffectiveLimits, proposed: EffectiveLimits) -> None:
    result = tighten(current, proposed, "warranty rule")
    for name in UPPER:
        assert getattr(result, name) == min(getattr(current, name), getattr(proposed, name))
        assert getattr(result, name) <= getattr(current, name)
    for name in LOWER:
        assert getattr(result, name) == max(getattr(current, name), getattr(proposed, name))
        assert getattr(result, name) >= getattr(current, name)
    for name in UPPER:
        if getattr(proposed, name) < getattr(current, name):
            assert result.reason(name) == "warranty rule"
        else:
            assert result.reason(name) == current.reason(name)


@relaxed
@given(current=limits())
def test_tighten_with_itself_or_looser_changes_nothing(current: EffectiveLimits) -> None:
    assert tighten(current, current, "noop") == current
    looser = EffectiveLimits(
        max_charge_kw=current.max_charge_kw + 1, max_discharge_kw=current.max_discharge_kw + 1,
        max_q_kvar=current.max_q_kvar + 1, soc_min_pct=current.soc_min_pct - 1,
        soc_max_pct=current.soc_max_pct + 1, ramp_kw_per_s=current.ramp_kw_per_s + 1,
        temp_min_c=current.temp_min_c - 1, temp_max_c=current.temp_max_c + 1,
    )
    assert tighten(current, looser, "should not apply") == current
