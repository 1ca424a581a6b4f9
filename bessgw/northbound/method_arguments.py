"""The input arguments of the ``SetPower`` methods, checked as OPC UA Part 4 (Call) describes.

Every ``SetPower(p_kw, q_kvar, command_id)`` of the address space (a unit's, the gateway's and
``Campus/SetPower``) checks its arguments here before anything runs: too few or too many, a value of
another type, a non-finite power, a command id too long or with control characters are refused with
their status code (and one per argument), never with a traceback and ``BadUnexpectedError``.

A method also belongs to one object: asyncua runs the method whatever ``ObjectId`` the call names, so
unit A1's ``SetPower`` called "on" A2 (or on the Server object) commanded A1. Part 4 says the method
must be a component of the object: :func:`called_on` refuses any other with ``BadMethodInvalid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from asyncua import ua

#: command ids are journaled, logged and shown to people: bounded and printable at the edge
MAX_COMMAND_ID_CHARS = 128
_NUMBER_TYPES = frozenset({
    ua.VariantType.Double, ua.VariantType.Float, ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16,
    ua.VariantType.UInt16, ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64,
})
_STRING_TYPES = frozenset({ua.VariantType.String})
_GOOD = ua.StatusCode(ua.StatusCodes.Good)


@dataclass(frozen=True)
class Refused:
    """Why a method's input arguments are refused before anything runs."""

    status: str
    reason: str
    per_argument: tuple[ua.StatusCode, ...] = ()


def set_power_arguments(arguments: tuple[Any, ...]) -> tuple[float, float, str] | Refused:
    """``SetPower(p_kw, q_kvar, command_id)``'s arguments checked as OPC UA Part 4 (Call) describes.

    Too few or too many arguments, a value of another type, a non-finite power or a command id that is
    too long or holds control characters are refused here, before the command path sees them.
    """
    if len(arguments) != 3:
        status = "BadArgumentsMissing" if len(arguments) < 3 else "BadTooManyArguments"
        return Refused(status, f"SetPower takes 3 arguments (p_kw, q_kvar, command_id), got {len(arguments)}")
    results = [_GOOD, _GOOD, _GOOD]
    reasons: list[str] = []
    mismatch = invalid = False
    numbers: list[float] = []
    for index, name in enumerate(("p_kw", "q_kvar")):
        value = _plain(arguments[index], _NUMBER_TYPES)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            results[index] = ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
            reasons.append(f"{name} must be a number")
            mismatch = True
            numbers.append(math.nan)
        elif not math.isfinite(value):
            results[index] = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
            reasons.append(f"{name} must be finite")
            invalid = True
            numbers.append(math.nan)
        else:
            numbers.append(float(value))
    command_id = _plain(arguments[2], _STRING_TYPES, null="")  # a null String is a String: no id
    if not isinstance(command_id, str):
        results[2] = ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        reasons.append("command_id must be a String")
        mismatch = True
    elif len(command_id) > MAX_COMMAND_ID_CHARS:
        results[2] = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        reasons.append(f"command_id is longer than {MAX_COMMAND_ID_CHARS} characters ({len(command_id)})")
        invalid = True
    elif not command_id.isprintable():
        results[2] = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        reasons.append("command_id holds control characters (NUL, newline, ...)")
        invalid = True
    if mismatch or invalid:
        status = "BadTypeMismatch" if mismatch and not invalid else "BadInvalidArgument"
        return Refused(status, "; ".join(reasons), tuple(results))
    assert isinstance(command_id, str)
    return numbers[0], numbers[1], command_id


def _plain(value: Any, types: frozenset[ua.VariantType], null: Any = None) -> Any:
    """The Python value of a scalar argument of one of ``types`` (``null`` for a null one); ``None`` else."""
    if isinstance(value, ua.Variant):
        if value.is_array or value.VariantType not in types:
            return None
        return null if value.Value is None else value.Value
    return value  # asyncua passes Variants; a plain value comes from in-process callers


def called_on(parent: Any, owner: ua.NodeId, method: str) -> Refused | None:
    """``BadMethodInvalid`` unless the call's ``ObjectId`` (``parent``) is the object owning the method."""
    if parent == owner:
        return None
    shown = parent.to_string() if isinstance(parent, ua.NodeId) else repr(parent)
    return Refused("BadMethodInvalid",
                   f"{method} is not a method of object {shown[:80]} (call it on {owner.to_string()})")
