"""What a unit can do: the vendor's offer, the chemistry's envelope, the site's limits, and their meet.

All powers are in kW and non-negative magnitudes: ``max_charge_kw`` is how hard the unit may charge,
``max_discharge_kw`` how hard it may discharge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _require_finite_nonneg(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{owner}.{name} must be a finite number >= 0 (got {value!r})")


def _require_window(owner: str, name: str, low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{owner}.{name}: need min <= max (got {low!r}..{high!r})")


@dataclass(frozen=True, slots=True)
class Capability:
    """A unit's capability offer, as declared by its vendor driver (nameplate and protocol facts)."""

    max_charge_kw: float
    max_discharge_kw: float
    energy_kwh: float
    chemistry: str
    max_q_kvar: float = 0.0
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    voltage_min_v: float = 0.0
    voltage_max_v: float = 1500.0
    temp_min_c: float = -40.0
    temp_max_c: float = 60.0
    ramp_kw_per_s: float = math.inf
    protocol_version: str = "1"
    firmware_version: str = ""
    vendor: str = ""
    model: str = ""
    serial: str = ""
    features: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _require_finite_nonneg(
            "capability",
            max_charge_kw=self.max_charge_kw,
            max_discharge_kw=self.max_discharge_kw,
            energy_kwh=self.energy_kwh,
            max_q_kvar=self.max_q_kvar,
        )
        if math.isnan(self.ramp_kw_per_s) or self.ramp_kw_per_s <= 0:
            raise ValueError(f"capability.ramp_kw_per_s must be > 0 (got {self.ramp_kw_per_s!r})")
        if not self.chemistry:
            raise ValueError("capability.chemistry must name a chemistry")
        object.__setattr__(self, "chemistry", self.chemistry.lower())
        _require_window("capability", "soc", self.soc_min_pct, self.soc_max_pct)
        if self.soc_min_pct < 0 or self.soc_max_pct > 100:
            raise ValueError("capability soc window must lie within 0..100 %")
        _require_window("capability", "voltage", self.voltage_min_v, self.voltage_max_v)
        _require_window("capability", "temp", self.temp_min_c, self.temp_max_c)
        if not isinstance(self.features, frozenset):
            object.__setattr__(self, "features", frozenset(self.features))


@dataclass(frozen=True, slots=True)
class ChemistryEnvelope:
    """What a chemistry allows at one operating point (SOC and cell temperature).

    C-rates are per hour of the unit's energy: ``max_charge_c * energy_kwh`` is a power in kW. The
    derating factors (0..1) are already applied to the C-rates; they are kept so the reason for a
    reduced limit can be shown to people.
    """

    chemistry: str
    soc_min_pct: float
    soc_max_pct: float
    max_charge_c: float
    max_discharge_c: float
    temp_min_c: float
    temp_max_c: float
    charge_derating: float = 1.0
    discharge_derating: float = 1.0

    def __post_init__(self) -> None:
        _require_finite_nonneg(
            "envelope", max_charge_c=self.max_charge_c, max_discharge_c=self.max_discharge_c
        )
        _require_window("envelope", "soc", self.soc_min_pct, self.soc_max_pct)
        _require_window("envelope", "temp", self.temp_min_c, self.temp_max_c)
        for name in ("charge_derating", "discharge_derating"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"envelope.{name} must be within 0..1 (got {value!r})")


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """Limits the site engineer sets in config; ``None`` means "no site limit on this"."""

    max_charge_kw: float | None = None
    max_discharge_kw: float | None = None
    max_q_kvar: float | None = None
    soc_min_pct: float | None = None
    soc_max_pct: float | None = None
    ramp_kw_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """The negotiated envelope that control uses for one unit at one moment.

    ``reasons`` names, per limit, which input bound it (``"max_charge_kw": "chemistry derating 0.42 at
    -5.0 °C"``), so an operator can see why a unit delivers less than its nameplate.
    """

    max_charge_kw: float
    max_discharge_kw: float
    max_q_kvar: float
    soc_min_pct: float
    soc_max_pct: float
    ramp_kw_per_s: float
    temp_min_c: float
    temp_max_c: float
    reasons: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _require_finite_nonneg(
            "limits",
            max_charge_kw=self.max_charge_kw,
            max_discharge_kw=self.max_discharge_kw,
            max_q_kvar=self.max_q_kvar,
        )

    def clamp_p(self, p_kw: float) -> float:
        """``p_kw`` limited to ``[-max_charge_kw, +max_discharge_kw]``."""
        return min(self.max_discharge_kw, max(-self.max_charge_kw, p_kw))

    def allows_p(self, p_kw: float) -> bool:
        """Whether ``p_kw`` lies inside the envelope (for rejecting, rather than clamping, a write)."""
        return -self.max_charge_kw <= p_kw <= self.max_discharge_kw

    def reason(self, name: str) -> str:
        """Why limit ``name`` has its value ('' when nothing in particular bound it)."""
        return dict(self.reasons).get(name, "")
