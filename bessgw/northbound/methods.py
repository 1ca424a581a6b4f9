"""Commands from OPC UA: SetPower on a unit or on the gateway, setpoint writes, fault reset.

A request outside the negotiated limits is refused with ``BadOutOfRange`` — never silently clamped,
since a SCADA that asked for 800 kW must learn it did not get it. When the control plane runs (the
daemon always starts it), commands go through it: the gateway's SetPower becomes the ``scada`` source's
target (journaled before it is acknowledged, arbitrated, allocated by SOC); a unit's SetPower becomes a
unit override in the control loop that lasts the scada source's heartbeat timeout unless repeated, and
still passes the safety envelope and ramp rule. Without a control plane (tests of this module alone),
commands go straight to the unit supervisors.

Commands are idempotent by command id: repeating an id returns the first answer and writes nothing;
reusing an id with other arguments is refused. Transient failures (link down, timeout) are not
remembered, so a retry with the same id is tried again.

The outcome is an OPC UA status name (``"BadOutOfRange"``); the server turns it into a StatusCode. This
module itself has no asyncua dependency, so its rules are testable on their own.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bessgw.control.commands import Command
from bessgw.control.loop import UnitOverride
from bessgw.control.service import ControlService
from bessgw.errors import BessgwError, DeviceError
from bessgw.model import Setpoint
from bessgw.northbound.access import Role
from bessgw.unit.directory import UnitDirectory
from bessgw.unit.supervisor import UnitSupervisor

#: the control plane's setpoint source that OPC UA commands act as
SCADA_SOURCE = "scada"
#: returns the running control plane, or None (it is rebuilt when the units change)
ControlProvider = Callable[[], "ControlService | None"]

#: how many command ids are remembered per target (oldest forgotten first)
COMMAND_MEMORY = 4096
#: outcomes a retry with the same id may change, hence not remembered
_TRANSIENT = frozenset({"BadCommunicationError", "BadNoCommunication", "BadTimeout", "BadInvalidState"})


class CommandRejected(Exception):
    """A command was refused; ``status`` is the OPC UA status name, ``message`` says why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Applied:
    """What was written: the power actually commanded."""

    p_kw: float
    q_kvar: float


@dataclass
class _Remembered:
    arguments: tuple[float, float]
    outcome: asyncio.Future[Applied]


class CommandHandler:
    """Executes SetPower / setpoint writes / fault resets for the OPC UA server."""

    def __init__(self, directory: UnitDirectory, command_timeout_s: float,
                 on_applied: Callable[[str, Applied], None] | None = None,
                 control: ControlProvider | None = None) -> None:
        """``control`` returns the running control plane (or None): commands then go through its
        arbitration, journal and safety envelope instead of straight to the units."""
        self.directory = directory
        self.control = control
        self.command_timeout_s = command_timeout_s
        self.on_applied = on_applied
        self._memory: dict[str, OrderedDict[str, _Remembered]] = {}
        self.commands = 0
        self.writes = 0
        self.rejected = 0

    # ------------------------------------------------------------------------------ entry points

    async def set_unit_power(self, unit_id: str, p_kw: float, q_kvar: float, command_id: str, *,
                             role: Role, user: str) -> Applied:
        _require(role, Role.OPERATOR, "SetPower needs the operator role")
        return await self._once(f"unit:{unit_id}", command_id, (p_kw, q_kvar),
                                lambda: self._apply_unit(unit_id, p_kw, q_kvar, command_id, user))

    async def set_gateway_power(self, p_kw: float, q_kvar: float, command_id: str, *, role: Role,
                                user: str) -> Applied:
        _require(role, Role.OPERATOR, "SetPower needs the operator role")
        return await self._once("gateway", command_id, (p_kw, q_kvar),
                                lambda: self._apply_gateway(p_kw, q_kvar, command_id, user))

    async def reset_fault(self, unit_id: str, *, role: Role) -> None:
        _require(role, Role.ADMIN, "ResetFault needs the admin role")
        supervisor = self._supervisor(unit_id)
        try:
            await asyncio.wait_for(supervisor.reset_fault(), self.command_timeout_s)
        except asyncio.TimeoutError as err:
            raise CommandRejected("BadTimeout", f"unit {unit_id} did not answer in time") from err
        except NotImplementedError as err:
            raise CommandRejected("BadNotSupported", f"unit {unit_id} cannot reset faults remotely") from err
        except DeviceError as err:
            raise CommandRejected("BadCommunicationError", str(err)) from err

    # ------------------------------------------------------------------------------ idempotency

    async def _once(self, target: str, command_id: str, arguments: tuple[float, float],
                    execute: Callable[[], asyncio.Future[Applied] | object]) -> Applied:
        self.commands += 1
        if not all(math.isfinite(value) for value in arguments):
            raise self._count(CommandRejected("BadInvalidArgument", "p_kw and q_kvar must be finite numbers"))
        if not command_id:
            return await self._run(execute)
        memory = self._memory.setdefault(target, OrderedDict())
        known = memory.get(command_id)
        if known is not None:
            if known.arguments != arguments:
                raise self._count(CommandRejected(
                    "BadInvalidArgument", f"command id {command_id!r} was already used with other arguments"))
            memory.move_to_end(command_id)
            return await asyncio.shield(known.outcome)
        outcome: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        memory[command_id] = _Remembered(arguments, outcome)
        while len(memory) > COMMAND_MEMORY:
            memory.popitem(last=False)
        try:
            result = await self._run(execute)
        except CommandRejected as err:
            outcome.set_exception(err)
            outcome.exception()  # retrieved: a forgotten future must not warn
            if err.status in _TRANSIENT:
                memory.pop(command_id, None)
            raise
        except BaseException:
            memory.pop(command_id, None)
            outcome.cancel()
            raise
        outcome.set_result(result)
        return result

    async def _run(self, execute: Callable[[], object]) -> Applied:
        try:
            return await execute()  # type: ignore[misc]
        except CommandRejected as err:
            raise self._count(err) from None

    def _count(self, err: CommandRejected) -> CommandRejected:
        self.rejected += 1
        return err

    # ---------------------------------------------------------------------------------- writes

    def _supervisor(self, unit_id: str) -> UnitSupervisor:
        supervisor = self.directory.get(unit_id)
        if supervisor is None:
            raise CommandRejected("BadNodeIdUnknown", f"unit {unit_id} is not configured any more")
        return supervisor

    def _check_available(self, supervisor: UnitSupervisor) -> None:
        if not supervisor.connected:
            raise CommandRejected("BadNoCommunication", f"unit {supervisor.unit_id} is not connected")
        if supervisor.limits is None:
            reason = supervisor.refused_reason or "not negotiated yet"
            raise CommandRejected("BadInvalidState", f"unit {supervisor.unit_id} cannot be commanded: {reason}")

    async def _apply_unit(self, unit_id: str, p_kw: float, q_kvar: float, command_id: str, user: str) -> Applied:
        supervisor = self._supervisor(unit_id)
        self._check_available(supervisor)
        limits = supervisor.limits
        assert limits is not None
        if not limits.allows_p(p_kw):
            raise CommandRejected("BadOutOfRange", f"p_kw {p_kw:g} outside {-limits.max_charge_kw:g}.."
                                  f"{limits.max_discharge_kw:g} kW for unit {unit_id}")
        if abs(q_kvar) > limits.max_q_kvar:
            raise CommandRejected("BadOutOfRange", f"q_kvar {q_kvar:g} outside ±{limits.max_q_kvar:g} kvar for unit"
                                  f" {unit_id}")
        return await self._write(supervisor, p_kw, q_kvar, command_id, user)

    def _control(self) -> ControlService | None:
        return self.control() if self.control is not None else None

    async def _write(self, supervisor: UnitSupervisor, p_kw: float, q_kvar: float, command_id: str,
                     user: str) -> Applied:
        control = self._control()
        if control is not None:  # a unit override in the control loop: envelope, ramp, other units re-share
            expires_at = time.time() + control.source_timeout_s(SCADA_SOURCE)
            control.loop.set_override(supervisor.unit_id, UnitOverride(
                p_kw=p_kw, q_kvar=q_kvar, expires_at=expires_at, source=f"opcua:{user}", command_id=command_id))
            applied = Applied(p_kw, q_kvar)
            if self.on_applied is not None:
                self.on_applied(supervisor.unit_id, applied)
            return applied
        setpoint = Setpoint(p_kw=p_kw, q_kvar=q_kvar, command_id=command_id, source=f"opcua:{user}",
                            issued_at=time.time())
        try:
            written = await asyncio.wait_for(supervisor.apply(setpoint), self.command_timeout_s)
        except asyncio.TimeoutError as err:
            raise CommandRejected("BadTimeout", f"unit {supervisor.unit_id} did not accept the setpoint in time") \
                from err
        except DeviceError as err:
            raise CommandRejected("BadCommunicationError", str(err)) from err
        self.writes += 1
        applied = Applied(written.p_kw, written.q_kvar)
        if self.on_applied is not None:
            self.on_applied(supervisor.unit_id, applied)
        return applied

    async def _apply_gateway(self, p_kw: float, q_kvar: float, command_id: str, user: str) -> Applied:
        """With control: the SCADA source's gateway target (journaled, arbitrated, allocated by SOC).

        Without: share the request across available units in proportion to their limits.
        """
        units = [s for s in self.directory if s.connected and s.limits is not None]
        control = self._control()
        if control is not None:
            return await self._submit_gateway(control, units, p_kw, q_kvar, command_id, user)
        if not units:
            raise CommandRejected("BadInvalidState", "no unit of this gateway can be commanded now")
        charge = sum(s.limits.max_charge_kw for s in units)  # type: ignore[union-attr]
        discharge = sum(s.limits.max_discharge_kw for s in units)  # type: ignore[union-attr]
        reactive = sum(s.limits.max_q_kvar for s in units)  # type: ignore[union-attr]
        if not -charge <= p_kw <= discharge:
            raise CommandRejected("BadOutOfRange", f"p_kw {p_kw:g} outside {-charge:g}..{discharge:g} kW available")
        if abs(q_kvar) > reactive:
            raise CommandRejected("BadOutOfRange", f"q_kvar {q_kvar:g} outside ±{reactive:g} kvar available")
        shares = []
        for supervisor in units:
            limits = supervisor.limits
            assert limits is not None
            side = limits.max_discharge_kw / discharge if p_kw > 0 and discharge else (
                limits.max_charge_kw / charge if p_kw < 0 and charge else 0.0)
            q_share = limits.max_q_kvar / reactive if reactive else 0.0
            shares.append(self._write(supervisor, p_kw * side, q_kvar * q_share, command_id, user))
        results = await asyncio.gather(*shares, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, CommandRejected):
                raise failure
        if failures:
            raise CommandRejected("BadCommunicationError",
                                  "; ".join(f.message for f in failures if isinstance(f, CommandRejected)))
        applied = [r for r in results if isinstance(r, Applied)]
        return Applied(sum(a.p_kw for a in applied), sum(a.q_kvar for a in applied))


    async def _submit_gateway(self, control: ControlService, units: list[UnitSupervisor], p_kw: float,
                              q_kvar: float, command_id: str, user: str) -> Applied:
        charge = sum(s.limits.max_charge_kw for s in units)  # type: ignore[union-attr]
        discharge = sum(s.limits.max_discharge_kw for s in units)  # type: ignore[union-attr]
        if not -charge <= p_kw <= discharge:
            raise CommandRejected("BadOutOfRange", f"p_kw {p_kw:g} outside {-charge:g}..{discharge:g} kW available")
        command = Command(command_id=command_id or f"opcua-{uuid.uuid4()}", source=SCADA_SOURCE, p_kw=p_kw,
                          q_kvar=q_kvar, principal=f"opcua:{user}")
        try:
            result = await asyncio.wait_for(control.submit(command), self.command_timeout_s)
        except asyncio.TimeoutError as err:
            raise CommandRejected("BadTimeout", "the command journal did not accept the command in time") from err
        except BessgwError as err:
            raise CommandRejected("BadInvalidArgument", str(err)) from err
        self.writes += 1
        return Applied(result.applied_p_kw or 0.0, result.applied_q_kvar or 0.0)


def _require(role: Role, needed: Role, message: str) -> None:
    if role < needed:
        raise CommandRejected("BadUserAccessDenied", message)
