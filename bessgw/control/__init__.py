"""Control plane: arbitration, allocation, the safety envelope, the fail-safe and the command journal.

``arbitration`` picks the gateway target from the live setpoint sources (hold, then ramp to 0 when none
is live); ``allocation`` splits it over the units (vectorised, SOC-balanced, within limits and ramps);
``envelope`` is the last gate before any device write; ``commands`` + ``journal`` make commands
idempotent and durable; ``loop`` runs it all once per control period.
"""

from bessgw.control.allocation import Allocation, Allocator, Fleet, allocate
from bessgw.control.arbitration import Arbiter, ArbitrationState, Mode, SourcePolicy
from bessgw.control.commands import (
    MAX_ID_LENGTH,
    Command,
    CommandProcessor,
    CommandResult,
    GatewayRange,
    Ranges,
    check_text,
)
from bessgw.control.envelope import GatedSetpoint, gate, gate_arrays, ramp_window
from bessgw.control.errors import CommandRejectedError, ControlError, JournalError, UnknownSourceError
from bessgw.control.journal import Journal, JournalEntry, read_tail, tail_text
from bessgw.control.loop import ControlLoop, ControlState, UnitOverride, policies_from

__all__ = [
    "MAX_ID_LENGTH",
    "Allocation",
    "Allocator",
    "Arbiter",
    "ArbitrationState",
    "Command",
    "CommandProcessor",
    "CommandRejectedError",
    "CommandResult",
    "ControlError",
    "ControlLoop",
    "ControlState",
    "Fleet",
    "GatedSetpoint",
    "GatewayRange",
    "Journal",
    "JournalEntry",
    "JournalError",
    "Mode",
    "Ranges",
    "SourcePolicy",
    "UnitOverride",
    "UnknownSourceError",
    "allocate",
    "check_text",
    "gate",
    "gate_arrays",
    "policies_from",
    "ramp_window",
    "read_tail",
    "tail_text",
]
