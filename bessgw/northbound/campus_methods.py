"""Campus dispatch in the address space: ``Objects/Campus/SetPower`` and the campus setpoint's status.

``Campus/SetPower(p_kw, q_kvar, command_id)`` commits a campus setpoint through the same entry point as
``bessgw campus setpoint`` (:class:`~bessgw.campus.commands.CampusCommands`): operator role, refused per
role like the other SetPower methods, idempotent by command id campus-wide, answered with the etcd
revision it was committed at. Its arguments are checked like every SetPower's
(:mod:`bessgw.northbound.method_arguments`). Refusals map to status codes: no ``[campus.coordination]`` is
``BadNotSupported`` (with the reason in the log), etcd unable to commit is ``BadResourceUnavailable``
(``BadTimeout`` when not confirmed in time), values that are not a setpoint are ``BadInvalidArgument``.

The status variables on ``Objects/Campus`` (``SetpointKw``, ``SetpointKvar``, ``SetpointRevision``,
``SetpointCommandId``, ``Allocator``, ``ShortfallKw``, ``ShareKw``) follow the campus service's last known
state at the server's sampling interval; they stay ``BadWaitingForInitialData`` without a campus service,
and only changed values are written.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from asyncua import Server, ua
from opentelemetry import trace

from bessgw.campus.commands import NOT_CONFIGURED, CampusCommands
from bessgw.errors import BessgwError, CoordinationError, SetpointRefusedError
from bessgw.northbound import information_model as model
from bessgw.northbound.access import Role, current_role, current_user_name
from bessgw.northbound.method_arguments import Refused, called_on, set_power_arguments
from bessgw.northbound.trace_context import current_traceparent
from bessgw.plugin.roles import Logger

#: the accept span of Campus/SetPower: the root of a trace that reaches the unit writes of every gateway
TRACER = trace.get_tracer("bessgw.northbound.opcua")

_VARIANTS = {str: ua.VariantType.String, float: ua.VariantType.Double}


class CampusDispatchNodes:
    """The campus dispatch method and variables of one server (module docstring)."""

    def __init__(self, server: Server, instance: model.Instance, commands: CampusCommands, interval_s: float,
                 log: Logger) -> None:
        self.server = server
        self.instance = instance
        self.commands = commands
        self.interval_s = interval_s
        self.log = log
        self.calls = 0
        self.refused = 0
        self._shown: dict[str, Any] = {}
        self.node_id = instance.node.nodeid  #: Objects/Campus, the object Campus/SetPower belongs to

    @classmethod
    async def create(cls, server: Server, types: model.Types, commands: CampusCommands, interval_s: float,
                     log: Logger) -> CampusDispatchNodes:
        """Add the variables and ``Campus/SetPower`` (the Campus folder exists: the gateway is created first)."""
        instance = await model.create_campus_dispatch(server, types)
        nodes = cls(server, instance, commands, interval_s, log)
        campus = server.get_node(ua.NodeId("Campus", types.ns))

        def arguments(spec: tuple[tuple[str, ua.VariantType, str], ...]) -> list[ua.Argument]:
            return [ua.Argument(Name=name, DataType=ua.NodeId(getattr(ua.ObjectIds, variant.name)), ValueRank=-1,
                                Description=ua.LocalizedText(text)) for name, variant, text in spec]

        method = await campus.add_method(ua.NodeId("Campus.SetPower", types.ns), ua.QualifiedName("SetPower", types.ns),
                                         nodes.set_power, arguments(model.SET_POWER_INPUTS),
                                         arguments(model.CAMPUS_SET_POWER_OUTPUTS))
        await method.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(
            "Commit the campus setpoint in etcd: the allocator splits it over every gateway (operator)"))))
        return nodes

    # ------------------------------------------------------------------------------ method

    async def set_power(self, parent: ua.NodeId, *arguments: Any) -> Any:
        self.calls += 1
        user = current_user_name()
        parsed = called_on(parent, self.node_id, "Campus/SetPower") or set_power_arguments(arguments)
        command_id = parsed[2] if not isinstance(parsed, Refused) else ""
        with TRACER.start_as_current_span(
                "opcua.Campus.SetPower", kind=trace.SpanKind.SERVER, record_exception=False,
                attributes={"opcua.method": "Campus/SetPower", "principal": f"opcua:{user}"[:128],
                            "command.id": command_id}) as span:
            if isinstance(parsed, Refused):
                answer: Any = self._refuse(parsed.status, parsed.reason, user)
                result = ua.CallMethodResult(StatusCode=answer, InputArgumentResults=list(parsed.per_argument))
            else:
                answer = result = await self._set_power(*parsed, user)
            if isinstance(answer, ua.StatusCode):
                span.set_attribute("result", answer.name)
                span.set_status(trace.Status(trace.StatusCode.ERROR, answer.name))
            return result

    async def _set_power(self, p_kw: float, q_kvar: float, command_id: str, user: str) -> Any:
        if current_role() < Role.OPERATOR:
            return self._refuse("BadUserAccessDenied", "Campus/SetPower needs the operator role", user)
        try:
            # the campus setpoint in etcd carries this span's traceparent; the allocator copies it into
            # every share, and each gateway writes its share's units as children of it
            result = await self.commands.setpoint(
                p_kw, q_kvar, command_id=command_id or None, source="opcua",
                principal=f"opcua:{user}", traceparent=current_traceparent())
        except SetpointRefusedError as err:
            return self._refuse("BadInvalidArgument", str(err), user)
        except CoordinationError as err:
            status = "BadNotSupported" if str(err) == NOT_CONFIGURED else \
                "BadTimeout" if "did not confirm" in str(err) else "BadResourceUnavailable"
            return self._refuse(status, str(err), user)
        except BessgwError as err:
            return self._refuse("BadInvalidState", str(err), user)
        self.log.info("opcua_campus_setpoint", command_id=result.command_id, revision=result.revision,
                      duplicate=result.duplicate, user=user)
        return [ua.Variant(float(result.revision), ua.VariantType.Double),
                ua.Variant(result.duplicate, ua.VariantType.Boolean)]

    def _refuse(self, status: str, reason: str, user: str) -> ua.StatusCode:
        self.refused += 1
        self.log.warning("opcua_command_refused", method="Campus/SetPower", status=status, reason=reason, user=user)
        return ua.StatusCode(getattr(ua.StatusCodes, status))

    # ------------------------------------------------------------------------------ status

    async def run(self) -> None:
        """Refresh the variables every interval until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception as err:  # the campus status must not take the server of our own units down
                self.log.warning("opcua_campus_dispatch_refresh_failed", error=f"{type(err).__name__}: {err}")
            await asyncio.sleep(self.interval_s)

    async def refresh(self) -> None:
        try:
            status = self.commands.service().status()
        except CoordinationError:
            return  # no campus service: the variables keep waiting for data
        setpoint = status.setpoint
        own = next((row for row in status.gateways if row.gateway_id == self.commands.service().gateway_id), None)
        values: dict[str, Any] = {
            "SetpointKw": setpoint.p_kw if setpoint is not None else 0.0,
            "SetpointKvar": setpoint.q_kvar if setpoint is not None else 0.0,
            "SetpointRevision": float(status.setpoint_revision),
            "SetpointCommandId": setpoint.command_id if setpoint is not None else "",
            "Allocator": status.allocator or "",
            "ShortfallKw": status.shortfall_p_kw,
            "ShareKw": own.share_p_kw if own is not None and own.share_p_kw is not None else 0.0,
        }
        for name, value in values.items():
            if self._shown.get(name) == value or (isinstance(value, float) and not math.isfinite(value)):
                continue
            await self.server.write_attribute_value(self.instance.child(name), ua.DataValue(
                ua.Variant(value, _VARIANTS[type(value)]), StatusCode=ua.StatusCode(ua.StatusCodes.Good)))
            self._shown[name] = value

