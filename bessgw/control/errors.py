"""Errors of the control plane: refused commands and bad control inputs, reported to people."""

from __future__ import annotations

from bessgw.errors import BessgwError


class ControlError(BessgwError):
    """Base of control-plane errors (a command or source the gateway refuses)."""


class UnknownSourceError(ControlError):
    """A command named a setpoint source that is not configured under ``[[control.sources]]``."""


class CommandRejectedError(ControlError):
    """A command was refused and not journaled (nothing of it is kept); the one rejection type of every door.

    ``code`` says why in a form the doors translate (OPC UA status, HTTP status, CLI exit code):

    - ``invalid``: malformed (bad id, non-finite values, unknown source or kind, already expired);
    - ``out_of_range``: outside the range the command asked to be checked against (never clamped silently);
    - ``unknown_unit``: names a unit this gateway does not run;
    - ``unavailable``: the target cannot be commanded now (unit offline or not negotiated, control stopped);
    - ``conflict``: the command id was already used with other arguments.
    """

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class JournalError(ControlError):
    """The command journal cannot be opened or written; commands are refused rather than acknowledged."""
