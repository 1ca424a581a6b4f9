"""Capability negotiation: vendor offer ∩ chemistry envelope ∩ site limits.

A pure function of its inputs so that it can be property-tested and re-run cheaply whenever a unit's SOC,
temperature or offer changes. The result never exceeds any of the three inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from bessgw.model.capability import Capability, ChemistryEnvelope, EffectiveLimits, SiteLimits
from bessgw.model.version import parse_version


@dataclass(frozen=True, slots=True)
class Negotiation:
    """Outcome of negotiating one unit: either ``limits`` or a human-readable refusal ``reason``."""

    limits: EffectiveLimits | None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.limits is not None


def _refuse(reason: str) -> Negotiation:
    return Negotiation(limits=None, reason=reason)


def _site(value: float | None) -> float:
    return math.inf if value is None else value


def negotiate(
    offer: Capability,
    envelope: ChemistryEnvelope | None,
    site: SiteLimits,
    *,
    soc_pct: float,
    temp_c: float,
    min_protocol_version: str = "0",
    known_chemistries: Iterable[str] = (),
) -> Negotiation:
    """Intersect the three inputs into the limits control may use right now.

    :param offer: the vendor driver's capability offer (nameplate, windows, protocol version).
    :param envelope: the chemistry model evaluated at this SOC and temperature, or ``None`` when no
        installed chemistry plugin knows ``offer.chemistry`` (the unit is then refused).
    :param site: the site engineer's limits from config.
    :param soc_pct: present state of charge; NaN (unknown) allows no power in either direction.
    :param temp_c: present (worst) cell temperature; NaN (unknown) allows no power.
    :param min_protocol_version: the lowest protocol version the vendor plugin supports.
    :param known_chemistries: names shown in the refusal when the chemistry is unknown.
    :returns: a :class:`Negotiation`; refused ones carry the reason, never silently accept.
    """
    if envelope is None:
        known = ", ".join(sorted(known_chemistries)) or "none installed"
        return _refuse(f"unknown chemistry {offer.chemistry!r} (known: {known})")
    if envelope.chemistry.lower() != offer.chemistry:
        return _refuse(
            f"chemistry envelope is for {envelope.chemistry!r} but the unit offers {offer.chemistry!r}"
        )
    try:
        too_old = parse_version(offer.protocol_version) < parse_version(min_protocol_version)
    except ValueError as err:
        return _refuse(f"cannot compare protocol version: {err}")
    if too_old:
        return _refuse(
            f"protocol version {offer.protocol_version} is below the plugin's minimum"
            f" {min_protocol_version}"
        )

    reasons: dict[str, str] = {}

    def meet(name: str, candidates: list[tuple[float, str]], pick=min) -> float:
        value, why = pick(candidates, key=lambda item: item[0])
        if why:
            reasons[name] = why
        return value

    soc_min = meet(
        "soc_min_pct",
        [
            (offer.soc_min_pct, "vendor offer"),
            (envelope.soc_min_pct, f"{envelope.chemistry} usable window"),
            (-math.inf if site.soc_min_pct is None else site.soc_min_pct, "site limit"),
        ],
        pick=max,
    )
    soc_max = meet(
        "soc_max_pct",
        [
            (offer.soc_max_pct, "vendor offer"),
            (envelope.soc_max_pct, f"{envelope.chemistry} usable window"),
            (_site(site.soc_max_pct), "site limit"),
        ],
    )
    if soc_min > soc_max:
        return _refuse(f"SOC windows do not overlap ({soc_min:g} % > {soc_max:g} %)")
    temp_min = max(offer.temp_min_c, envelope.temp_min_c)
    temp_max = min(offer.temp_max_c, envelope.temp_max_c)
    if temp_min > temp_max:
        return _refuse(f"temperature windows do not overlap ({temp_min:g} °C > {temp_max:g} °C)")

    charge_kw = meet(
        "max_charge_kw",
        [
            (offer.max_charge_kw, "vendor offer"),
            (
                envelope.max_charge_c * offer.energy_kwh,
                f"{envelope.chemistry} charge limit (derating {envelope.charge_derating:.2f}"
                f" at {temp_c:g} °C, SOC {soc_pct:g} %)",
            ),
            (_site(site.max_charge_kw), "site limit"),
        ],
    )
    discharge_kw = meet(
        "max_discharge_kw",
        [
            (offer.max_discharge_kw, "vendor offer"),
            (
                envelope.max_discharge_c * offer.energy_kwh,
                f"{envelope.chemistry} discharge limit (derating {envelope.discharge_derating:.2f}"
                f" at {temp_c:g} °C, SOC {soc_pct:g} %)",
            ),
            (_site(site.max_discharge_kw), "site limit"),
        ],
    )
    q_kvar = min(offer.max_q_kvar, _site(site.max_q_kvar))
    ramp = min(offer.ramp_kw_per_s, _site(site.ramp_kw_per_s))

    if math.isnan(soc_pct):
        charge_kw = discharge_kw = 0.0
        reasons["max_charge_kw"] = reasons["max_discharge_kw"] = "SOC unknown"
    else:
        if soc_pct >= soc_max:
            charge_kw = 0.0
            reasons["max_charge_kw"] = f"SOC {soc_pct:g} % at or above window top {soc_max:g} %"
        if soc_pct <= soc_min:
            discharge_kw = 0.0
            reasons["max_discharge_kw"] = f"SOC {soc_pct:g} % at or below window bottom {soc_min:g} %"
    if math.isnan(temp_c) or not temp_min <= temp_c <= temp_max:
        charge_kw = discharge_kw = 0.0
        why = "temperature unknown" if math.isnan(temp_c) else (
            f"temperature {temp_c:g} °C outside {temp_min:g}..{temp_max:g} °C"
        )
        reasons["max_charge_kw"] = reasons["max_discharge_kw"] = why

    return Negotiation(
        limits=EffectiveLimits(
            max_charge_kw=charge_kw,
            max_discharge_kw=discharge_kw,
            max_q_kvar=q_kvar,
            soc_min_pct=soc_min,
            soc_max_pct=soc_max,
            ramp_kw_per_s=ramp,
            temp_min_c=temp_min,
            temp_max_c=temp_max,
            reasons=tuple(sorted(reasons.items())),
        )
    )


def tighten(current: EffectiveLimits, proposed: EffectiveLimits, why: str) -> EffectiveLimits:
    """Apply a plugin's proposed limits, but only where they are stricter than ``current``.

    Plugins adjusting negotiated capabilities (``adjust_limits`` hook) may narrow the envelope, never
    widen it: a buggy or malicious plugin cannot push a unit beyond what negotiation allowed.
    """
    reasons = dict(current.reasons)
    values: dict[str, float] = {}
    for name in ("max_charge_kw", "max_discharge_kw", "max_q_kvar", "ramp_kw_per_s", "soc_max_pct", "temp_max_c"):
        mine, theirs = getattr(current, name), getattr(proposed, name)
        values[name] = min(mine, theirs)
        if theirs < mine:
            reasons[name] = why
    for name in ("soc_min_pct", "temp_min_c"):
        mine, theirs = getattr(current, name), getattr(proposed, name)
        values[name] = max(mine, theirs)
        if theirs > mine:
            reasons[name] = why
    return replace(current, **values, reasons=tuple(sorted(reasons.items())))
