"""Errors of the control plane: refused commands and bad control inputs, reported to people."""

from __future__ import annotations

from bessgw.errors import BessgwError


class ControlError(BessgwError):
    """Base of control-plane errors (a command or source the gateway refuses)."""


class UnknownSourceError(ControlError):
    """A command named a setpoint source that is not configured under ``[[control.sources]]``."""


class CommandRejectedError(ControlError):
    """A command is malformed (no id, non-finite values, already expired) and was not journaled."""


class JournalError(ControlError):
    """The command journal cannot be opened or written; commands are refused rather than acknowledged."""
