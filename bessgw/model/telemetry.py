"""Telemetry: one timestamped, quality-tagged snapshot of a unit, as OPC UA models a data value."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from types import MappingProxyType

import numpy as np


class Quality(str, Enum):
    """Data quality, mapped northbound to OPC UA Good / Uncertain / Bad."""

    GOOD = "good"
    STALE = "stale"  # last known value, older than allowed: OPC UA Uncertain, never Good
    BAD = "bad"  # no usable value: device error, exception response, out-of-range data


class UnitState(str, Enum):
    """Operating state of a unit as the gateway understands it (vendor states map onto these)."""

    UNKNOWN = "unknown"
    OFFLINE = "offline"
    STANDBY = "standby"
    RUNNING = "running"
    FAULT = "fault"


_NUMERIC_FIELDS = (
    "soc_pct",
    "soh_pct",
    "p_kw",
    "q_kvar",
    "dc_v",
    "dc_a",
    "cell_temp_min_c",
    "cell_temp_max_c",
    "cell_v_min",
    "cell_v_max",
)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A unit's measured state.

    Sign convention (generator, as in IEC 61850): ``p_kw > 0`` discharges into the grid, ``p_kw < 0``
    charges. ``alarms`` / ``warnings`` are the vendor's bitfields; ``alarm_names`` decodes the set bits
    the driver knows. ``extra`` carries vendor or chemistry specifics (e.g. electrolyte temperature of a
    flow battery, or the BMS's live current limits) that have no field of their own.
    """

    unit_id: str
    timestamp: float
    quality: Quality = Quality.GOOD
    state: UnitState = UnitState.UNKNOWN
    soc_pct: float = math.nan
    soh_pct: float = math.nan
    p_kw: float = math.nan
    q_kvar: float = math.nan
    dc_v: float = math.nan
    dc_a: float = math.nan
    cell_temp_min_c: float = math.nan
    cell_temp_max_c: float = math.nan
    cell_v_min: float = math.nan
    cell_v_max: float = math.nan
    alarms: int = 0
    warnings: int = 0
    alarm_names: frozenset[str] = frozenset()
    quality_reason: str = ""
    extra: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.unit_id:
            raise ValueError("telemetry needs a unit_id")
        if not math.isfinite(self.timestamp):
            raise ValueError(f"telemetry timestamp must be finite (got {self.timestamp!r})")
        if not isinstance(self.quality, Quality):
            object.__setattr__(self, "quality", Quality(self.quality))
        if not isinstance(self.state, UnitState):
            object.__setattr__(self, "state", UnitState(self.state))
        if self.alarms < 0 or self.warnings < 0:
            raise ValueError("alarm and warning bitfields are unsigned")
        if not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))
        if self.quality is Quality.GOOD:
            self._check_plausible()

    def _check_plausible(self) -> None:
        """Good data must be physically possible; drivers mark implausible values BAD instead."""
        if not math.isnan(self.soc_pct) and not 0.0 <= self.soc_pct <= 100.0:
            raise ValueError(f"soc_pct out of 0..100 (got {self.soc_pct})")
        if not math.isnan(self.soh_pct) and not 0.0 <= self.soh_pct <= 100.0:
            raise ValueError(f"soh_pct out of 0..100 (got {self.soh_pct})")

    def age_s(self, now: float) -> float:
        """Seconds since the data was measured (never negative)."""
        return max(0.0, now - self.timestamp)

    def with_quality(self, quality: Quality, reason: str = "") -> Telemetry:
        """The same values with another quality, e.g. marking the last good sample stale."""
        return replace(self, quality=quality, quality_reason=reason)

    def as_array(self) -> np.ndarray:
        """The numeric fields in a fixed order (see :data:`NUMERIC_FIELDS`), for stacking fleets."""
        return np.array([getattr(self, name) for name in _NUMERIC_FIELDS], dtype=np.float64)

    def as_dict(self) -> dict[str, object]:
        """A plain-data view for logs and JSON (enums as their values)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


NUMERIC_FIELDS = _NUMERIC_FIELDS
