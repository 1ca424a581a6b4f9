"""Pure domain model: capabilities, telemetry, setpoints, negotiation. No I/O, no asyncio."""

from bessgw.model.capability import Capability, ChemistryEnvelope, EffectiveLimits, SiteLimits
from bessgw.model.negotiation import Negotiation, negotiate, tighten
from bessgw.model.setpoint import Setpoint, no_more_power
from bessgw.model.telemetry import Quality, Telemetry, UnitState
from bessgw.model.version import parse_version

__all__ = [
    "Capability",
    "ChemistryEnvelope",
    "EffectiveLimits",
    "Negotiation",
    "Quality",
    "Setpoint",
    "SiteLimits",
    "Telemetry",
    "UnitState",
    "negotiate",
    "no_more_power",
    "parse_version",
    "tighten",
]
