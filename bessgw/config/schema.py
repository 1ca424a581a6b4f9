"""The whole configuration of one gateway: ``[gateway]`` and the :class:`Config` that holds every table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from bessgw.config.base import IDENTIFIER, StrictModel
from bessgw.config.campus import CampusSection
from bessgw.config.control import ControlSection
from bessgw.config.federation import FederationSection
from bessgw.config.northbound import NorthboundSection
from bessgw.config.observability import HttpSection, TracingSection
from bessgw.config.southbound import SimulatorSection, SouthboundSection, UnitDefaults, UnitSection


class GatewaySection(StrictModel):
    """``[gateway]``: who this gateway is and how the process behaves."""

    id: str = Field(pattern=IDENTIFIER, description="Gateway id, unique in the campus")
    state_dir: Path = Field(
        Path("/var/lib/bessgw"),
        description="Writable state (journal, certificates, admin socket); relative to the config file's directory",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: readable on a TTY, JSON otherwise (journald, pipes)"
    )
    telemetry_log_interval_s: float = Field(
        10.0, ge=0, description="How often each unit's telemetry is logged at info level (0: never)"
    )
    shutdown_grace_s: float = Field(
        5.0, gt=0, le=60, description="Bound on clean shutdown; keep below systemd's TimeoutStopSec"
    )


class Config(StrictModel):
    """The whole configuration of one gateway."""

    gateway: GatewaySection
    southbound: SouthboundSection = SouthboundSection()
    defaults: UnitDefaults = UnitDefaults()
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-plugin tables")
    simulators: list[SimulatorSection] = Field(default_factory=list)
    units: list[UnitSection] = Field(
        default_factory=list, max_length=10_000,
        description="The units this gateway controls (at most 10,000; a gateway is sized for a few hundred)")
    federation: FederationSection | None = None
    northbound: NorthboundSection = NorthboundSection()
    control: ControlSection = ControlSection()
    campus: CampusSection | None = None
    http: HttpSection | None = None
    tracing: TracingSection = TracingSection()

    @field_validator("units")
    @classmethod
    def _unique_unit_ids(cls, units: list[UnitSection]) -> list[UnitSection]:
        seen: dict[str, int] = {}
        for index, unit in enumerate(units):
            if unit.id in seen:
                raise ValueError(f"unit id {unit.id!r} is used by units[{seen[unit.id]}] and units[{index}]")
            seen[unit.id] = index
        return units

    def unit_timing(self, unit: UnitSection) -> UnitDefaults:
        """The unit's effective timing: its own values over ``[defaults]``."""
        merged = self.defaults.model_dump()
        for name in merged:
            value = getattr(unit, name)
            if value is not None:
                merged[name] = value
        return UnitDefaults.model_validate(merged)


# ------------------------------------------------------------------------------------ loading
