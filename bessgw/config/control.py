"""``[control]``: setpoint sources, dispatch, fail-safe and the command journal."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, field_validator

from bessgw.config.base import IDENTIFIER, StrictModel


class ControlSourceTable(StrictModel):
    """``[[control.sources]]``: one setpoint source (operator override, SCADA, campus dispatch)."""

    name: str = Field(pattern=IDENTIFIER, description="Source name commands are tagged with, e.g. local, scada")
    priority: int = Field(ge=0, le=1000, description="Higher wins while several sources are live")
    heartbeat_timeout_s: float = Field(
        gt=0, le=3600, description="A source not heard from (setpoint or heartbeat) for this long is dropped"
    )
    on_loss: Literal["hold", "zero"] = Field(
        "hold", description="When this source is lost: hold its last target for hold_s then ramp to 0 (hold),"
        " or go to 0 kW at once (zero: campus shares, which another gateway may take over)")


def _default_control_sources() -> list[ControlSourceTable]:
    return [
        ControlSourceTable(name="local", priority=300, heartbeat_timeout_s=30.0),
        ControlSourceTable(name="scada", priority=200, heartbeat_timeout_s=10.0),
        ControlSourceTable(name="campus", priority=100, heartbeat_timeout_s=5.0, on_loss="zero"),
    ]


class ControlSection(StrictModel):
    """``[control]``: dispatch, fail-safe and the command journal."""

    period_s: float = Field(0.1, gt=0, le=60, description="Control period: arbitrate, allocate, write")
    write_timeout_s: float | None = Field(
        None, gt=0, le=60, description="Bound on one unit's setpoint write (default: the period, at least 0.5 s)"
    )
    hold_s: float = Field(
        10.0, ge=0, le=3600, description="With no live source, hold the last target this long, then ramp to 0"
    )
    fail_safe_ramp_kw_per_s: float | None = Field(
        None, gt=0, description="Ramp of the gateway target to 0 (default: the sum of the units' ramp limits)"
    )
    soc_balance_gain: float = Field(
        2.0, ge=0, le=10, description="How strongly allocation favours full units (discharge) / empty ones (charge)"
    )
    ramp_to_zero_on_stop: bool = Field(True, description="On SIGTERM ramp every unit to 0 kW before stopping")
    stop_timeout_s: float = Field(
        4.0, gt=0, le=3600, description="Bound on the ramp to 0 kW at stop; keep below gateway.shutdown_grace_s"
    )
    sources: list[ControlSourceTable] = Field(default_factory=_default_control_sources)
    journal_file: str = Field("commands.sqlite3", description="Command journal, relative to gateway.state_dir")
    journal_keep_days: float = Field(90.0, gt=0, description="Journal entries older than this are pruned")

    @field_validator("journal_file")
    @classmethod
    def _journal_inside_state_dir(cls, name: str) -> str:
        """The journal lives in the state directory: an absolute path or ``..`` would put it elsewhere
        (``"/"`` left a gateway running with no control at all)."""
        path = PurePosixPath(name)
        if not name.strip() or name.endswith("/") or path.name in ("", ".", ".."):
            raise ValueError("must name a file, e.g. commands.sqlite3")
        if path.is_absolute() or ".." in path.parts:
            raise ValueError("must be a file name relative to gateway.state_dir, without '..'")
        return name

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[ControlSourceTable]) -> list[ControlSourceTable]:
        seen: dict[str, int] = {}
        for index, source in enumerate(sources):
            if source.name in seen:
                raise ValueError(f"source {source.name!r} is used by sources[{seen[source.name]}] and sources[{index}]")
            seen[source.name] = index
        return sources
