"""The campus view: own units plus every peer's last known units, each with its age and an honest quality.

Everything here is a frozen dataclass built from the replicated state and the member table; nothing
crosses this boundary as a bare dict. Quality rules (stale data is never shown as good):

- own units: the quality the unit supervisor reported;
- a peer's unit: Good only while the peer is alive, reported Good, and the data is younger than
  ``stale_after_s``; a suspected peer's units are at best Stale; a dead peer's units are Bad
  ("gateway unreachable"), still listed with their growing age until the peer is reaped.

Ages use the source timestamp the owning gateway stamped (wall clock; campus gateways run NTP), as OPC UA
source timestamps do. The aggregate counts power and energy of Good units only.

Replicated values carry the wire version of their schema in ``v`` (absent: 2, release 0.2.0's). A value
of a version this release does not read, or with an unknown required field (a name starting with ``!``),
is not used; unknown optional fields are ignored. A gateway whose range does not meet ours is listed with
status ``incompatible`` and none of its units.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bessgw.federation.wire import REQUIRED_PREFIX, WIRE_CURRENT, WIRE_MAX, WIRE_MIN
from bessgw.model import Quality, UnitState

UNIT_PREFIX = "unit/"
CAPABILITY_PREFIX = "cap/"
IDENTITY_KEY = "gw"


@dataclass(frozen=True)
class UnitSummary:
    """What a gateway tells the campus about one unit (small: it is gossiped)."""

    unit_id: str
    state: UnitState
    quality: Quality
    soc_pct: float
    p_kw: float
    available_charge_kw: float
    available_discharge_kw: float
    energy_kwh: float
    timestamp: float
    reason: str = ""

    @classmethod
    def from_snapshot(cls, snapshot: Any) -> UnitSummary:
        """From the unit supervisor's ``UnitSnapshot``: limits count only while connected and Good."""
        tel = snapshot.telemetry
        usable = snapshot.connected and snapshot.limits is not None and tel.quality == Quality.GOOD
        return cls(
            unit_id=snapshot.unit_id,
            state=tel.state,
            quality=tel.quality,
            soc_pct=tel.soc_pct,
            p_kw=tel.p_kw,
            available_charge_kw=snapshot.limits.max_charge_kw if usable else 0.0,
            available_discharge_kw=snapshot.limits.max_discharge_kw if usable else 0.0,
            energy_kwh=snapshot.capability.energy_kwh if snapshot.capability is not None else 0.0,
            timestamp=tel.timestamp,
            reason=(tel.quality_reason or snapshot.refused_reason)[:120],
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "v": WIRE_CURRENT,
            "st": self.state.value, "q": self.quality.value, "soc": _num(self.soc_pct), "p": _num(self.p_kw),
            "chg": _num(self.available_charge_kw), "dis": _num(self.available_discharge_kw),
            "kwh": _num(self.energy_kwh), "ts": self.timestamp, "why": self.reason,
        }

    @classmethod
    def from_value(cls, unit_id: str, value: Mapping[str, Any]) -> UnitSummary:
        """Parse a gossiped value; ``ValueError``/``KeyError``/``TypeError`` when it is not a unit summary
        of a version we read."""
        check_value_version(value)
        return cls(
            unit_id=unit_id, state=UnitState(value["st"]), quality=Quality(value["q"]),
            soc_pct=_float(value["soc"]), p_kw=_float(value["p"]), available_charge_kw=_float(value["chg"]),
            available_discharge_kw=_float(value["dis"]), energy_kwh=_float(value["kwh"]),
            timestamp=_float(value["ts"]), reason=str(value.get("why", "")),
        )

    def material(self) -> tuple[Any, ...]:
        """The fields whose change is worth gossiping at once (rounded: noise is not news)."""
        return (self.state, self.quality, _round(self.soc_pct, 1), _round(self.p_kw, 0),
                _round(self.available_charge_kw, 0), _round(self.available_discharge_kw, 0),
                _round(self.energy_kwh, 0), self.reason)


@dataclass(frozen=True)
class CampusUnit:
    """One unit of the campus as this gateway sees it."""

    gateway_id: str
    local: bool
    summary: UnitSummary
    age_s: float
    quality: Quality
    reason: str


@dataclass(frozen=True)
class MemberInfo:
    """One row of the membership table (``bessgw members``)."""

    gateway_id: str
    address: str
    status: str
    incarnation: int
    in_status_s: float
    local: bool
    units: int
    speaks: str = ""  #: the wire versions it told us it speaks ("2..3"; "" if it never said: release 0.2.0)


@dataclass(frozen=True)
class CampusAggregate:
    """``Objects/Campus``: what the campus can do right now (Good units only) and who is there."""

    available_charge_kw: float
    available_discharge_kw: float
    energy_kwh: float
    mean_soc_pct: float
    units_total: int
    units_by_state: tuple[tuple[str, int], ...]
    units_by_quality: tuple[tuple[str, int], ...]
    gateways_alive: int
    gateways_suspect: int
    gateways_dead: int


@dataclass(frozen=True)
class CampusView:
    gateway_id: str
    generated_at: float
    members: tuple[MemberInfo, ...]
    units: tuple[CampusUnit, ...]
    aggregate: CampusAggregate


def check_value_version(value: Mapping[str, Any]) -> int:
    """The schema version of a replicated value, or ``ValueError`` if we must not use it."""
    version = value.get("v", WIRE_MIN)
    if isinstance(version, bool) or not isinstance(version, int) or not WIRE_MIN <= version <= WIRE_MAX:
        raise ValueError(f"value version {version!r:.20}, this gateway reads {WIRE_MIN}..{WIRE_MAX}")
    required = [name for name in value if isinstance(name, str) and name.startswith(REQUIRED_PREFIX)]
    if required:
        raise ValueError(f"unknown required value fields {sorted(required)[:5]}")
    return version


def effective_quality(reported: Quality, age_s: float, local: bool, peer_status: str,
                      stale_after_s: float) -> tuple[Quality, str]:
    """The quality to show for a unit given who reported it and how old the data is."""
    if local:
        return reported, ""
    if peer_status != "alive" and peer_status != "suspect":
        return Quality.BAD, f"gateway {peer_status}: unreachable"
    if reported == Quality.BAD:
        return Quality.BAD, ""
    if peer_status == "suspect":
        return Quality.STALE, "gateway suspected"
    if age_s > stale_after_s:
        return Quality.STALE, f"data {age_s:.0f} s old"
    return reported, ""


def aggregate(units: Iterable[CampusUnit], members: Iterable[MemberInfo]) -> CampusAggregate:
    units = list(units)
    good = [u for u in units if u.quality == Quality.GOOD]
    socs = [u.summary.soc_pct for u in good if math.isfinite(u.summary.soc_pct)]
    statuses = Counter(m.status for m in members)
    return CampusAggregate(
        available_charge_kw=sum(u.summary.available_charge_kw for u in good),
        available_discharge_kw=sum(u.summary.available_discharge_kw for u in good),
        energy_kwh=sum(u.summary.energy_kwh for u in good),
        mean_soc_pct=sum(socs) / len(socs) if socs else math.nan,
        units_total=len(units),
        units_by_state=tuple(sorted(Counter(u.summary.state.value for u in units).items())),
        units_by_quality=tuple(sorted(Counter(u.quality.value for u in units).items())),
        gateways_alive=statuses["alive"],
        gateways_suspect=statuses["suspect"],
        gateways_dead=statuses["dead"],
    )


def to_jsonable(obj: Any) -> Any:
    """Dataclasses/enums/tuples as plain JSON (for the admin socket and ``--json``); NaN becomes null."""
    if hasattr(obj, "__dataclass_fields__"):
        return {name: to_jsonable(getattr(obj, name)) for name in obj.__dataclass_fields__}
    if isinstance(obj, (Quality, UnitState)):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item) for item in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number (got {type(value).__name__})")
    return float(value)


def _round(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None
