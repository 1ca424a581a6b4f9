"""Commands from OPC UA, translated onto the one command path of the control plane.

SetPower on the gateway, SetPower on a unit and a setpoint variable write each become one
:class:`~bessgw.control.Command` of the ``scada`` source, submitted to the control service: journaled
before it is acknowledged, idempotent by command id (the journal is the memory of ids), arbitrated, and
passed through the safety envelope and ramp rules like every other source. OPC UA commands are *strict*:
a request outside the available range is refused with ``BadOutOfRange``, never clamped silently, since a
SCADA that asked for 800 kW must learn it did not get it.

This module only translates: roles to refusals, :class:`~bessgw.control.CommandRejectedError` codes to
OPC UA status names (``"BadOutOfRange"``); the server turns those into StatusCodes. It has no asyncua
dependency, so its rules are testable on their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from opentelemetry import trace

from bessgw.control import Command, CommandRejectedError, CommandResult, ControlError
from bessgw.control.service import ControlService
from bessgw.errors import DeviceError
from bessgw.northbound.access import Role
from bessgw.northbound.trace_context import current_traceparent
from bessgw.unit import UnitDirectory

#: the control plane's setpoint source that OPC UA commands act as
SCADA_SOURCE = "scada"
#: returns the running control plane, or None (it is rebuilt when the units change)
ControlProvider = Callable[[], "ControlService | None"]

#: accept spans of OPC UA commands: the root of each command's trace (no-op while tracing is off)
TRACER = trace.get_tracer("bessgw.northbound.opcua")

#: CommandRejectedError codes as OPC UA status names
_STATUS = {
    "invalid": "BadInvalidArgument",
    "out_of_range": "BadOutOfRange",
    "unknown_unit": "BadNodeIdUnknown",
    "unavailable": "BadInvalidState",
    "conflict": "BadInvalidArgument",
}


class CommandRejected(Exception):
    """A command was refused; ``status`` is the OPC UA status name, ``message`` says why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Applied:
    """What was accepted: the power the command set (control ramps towards it)."""

    p_kw: float
    q_kvar: float


class CommandHandler:
    """Executes SetPower / setpoint writes / fault resets for the OPC UA server."""

    def __init__(self, directory: UnitDirectory, command_timeout_s: float,
                 on_applied: Callable[[str, Applied], None] | None = None,
                 control: ControlProvider | None = None) -> None:
        self.directory = directory
        self.control = control
        self.command_timeout_s = command_timeout_s
        self.on_applied = on_applied
        self.commands = 0
        self.rejected = 0

    # ------------------------------------------------------------------------------ entry points

    async def set_unit_power(self, unit_id: str, p_kw: float, q_kvar: float, command_id: str, *,
                             role: Role, user: str, traceparent: str = "") -> Applied:
        _require(role, Role.OPERATOR, "SetPower needs the operator role")
        with _accept_span(unit_id, user) as span:
            result = await self._submit(Command(
                command_id=command_id or f"opcua-{uuid.uuid4()}", source=SCADA_SOURCE, p_kw=p_kw, q_kvar=q_kvar,
                principal=f"opcua:{user}", unit_id=unit_id, clamp=False,
                traceparent=traceparent or current_traceparent()), span)
        applied = Applied(result.applied_p_kw or 0.0, result.applied_q_kvar or 0.0)
        if self.on_applied is not None:
            self.on_applied(unit_id, applied)
        return applied

    async def set_gateway_power(self, p_kw: float, q_kvar: float, command_id: str, *, role: Role,
                                user: str, traceparent: str = "") -> Applied:
        _require(role, Role.OPERATOR, "SetPower needs the operator role")
        with _accept_span("", user) as span:
            result = await self._submit(Command(
                command_id=command_id or f"opcua-{uuid.uuid4()}", source=SCADA_SOURCE, p_kw=p_kw, q_kvar=q_kvar,
                principal=f"opcua:{user}", clamp=False, traceparent=traceparent or current_traceparent()), span)
        return Applied(result.applied_p_kw or 0.0, result.applied_q_kvar or 0.0)

    async def reset_fault(self, unit_id: str, *, role: Role) -> None:
        """Not a power command: it goes to the unit's supervisor (the only door to its driver)."""
        _require(role, Role.ADMIN, "ResetFault needs the admin role")
        supervisor = self.directory.get(unit_id)
        if supervisor is None:
            raise CommandRejected("BadNodeIdUnknown", f"unit {unit_id} is not configured any more")
        try:
            await asyncio.wait_for(supervisor.reset_fault(), self.command_timeout_s)
        except asyncio.TimeoutError as err:
            raise CommandRejected("BadTimeout", f"unit {unit_id} did not answer in time") from err
        except NotImplementedError as err:
            raise CommandRejected("BadNotSupported", f"unit {unit_id} cannot reset faults remotely") from err
        except DeviceError as err:
            raise CommandRejected("BadCommunicationError", str(err)) from err

    # ---------------------------------------------------------------------------- translation

    async def _submit(self, command: Command, span: trace.Span) -> CommandResult:
        self.commands += 1
        control = self.control() if self.control is not None else None
        if control is None:
            raise self._count(CommandRejected("BadInvalidState", "control is not running on this gateway"), span)
        span.set_attribute("command.id", command.command_id[:128])
        try:
            # wait_for runs submit in a task of its own, which copies the context: the span stays its parent
            return await asyncio.wait_for(control.submit(command), self.command_timeout_s)
        except asyncio.TimeoutError as err:
            raise self._count(CommandRejected(
                "BadTimeout", "the command journal did not accept the command in time"), span) from err
        except CommandRejectedError as err:
            raise self._count(CommandRejected(_STATUS.get(err.code, "BadInvalidArgument"), str(err)), span) from None
        except ControlError as err:  # stopping, or the journal cannot be written: nothing was acknowledged
            raise self._count(CommandRejected("BadInvalidState", str(err)), span) from None

    def _count(self, err: CommandRejected, span: trace.Span) -> CommandRejected:
        self.rejected += 1
        span.set_attribute("result", err.status)
        span.set_status(trace.Status(trace.StatusCode.ERROR, err.message[:200]))
        return err


def _accept_span(unit_id: str, user: str) -> AbstractContextManager[trace.Span]:
    """The accept span of one SetPower: the root of the command's trace (journal, step, every write)."""
    return TRACER.start_as_current_span(
        "opcua.SetPower", kind=trace.SpanKind.SERVER, record_exception=False, set_status_on_exception=False,
        attributes={"opcua.method": "SetPower", "command.unit": unit_id[:128], "principal": f"opcua:{user}"[:128]})


def _require(role: Role, needed: Role, message: str) -> None:
    if role < needed:
        raise CommandRejected("BadUserAccessDenied", message)
