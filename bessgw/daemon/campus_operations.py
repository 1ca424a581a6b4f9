"""The campus commands of the admin socket: ``campus_setpoint``, ``campus_release``, ``campus_status``.

They go through :class:`~bessgw.campus.commands.CampusCommands` like OPC UA's ``Campus/SetPower``. A
refusal carries its exit code (69: the campus cannot commit it; 65: not a setpoint) so that ``bessgw
campus ...`` exits with it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from bessgw.daemon.admin import AdminError, Handler, Peer
from bessgw.errors import BessgwError
from bessgw.northbound.trace_context import current_traceparent

if TYPE_CHECKING:
    from bessgw.campus.commands import CampusCommands
    from bessgw.daemon.gateway import Gateway

#: accept spans of campus commands given over the admin socket (``bessgw campus setpoint``)
TRACER = trace.get_tracer("bessgw.daemon.admin")


def campus_commands(gateway: Gateway) -> CampusCommands:
    """The campus entry point of ``gateway`` (the running campus and control services, looked up per call)."""
    from bessgw.campus.commands import CampusCommands

    services = gateway.services
    return CampusCommands(lambda: services.campus, lambda: services.control, gateway.log.bind(service="campus"))


def _number(request: dict[str, Any], key: str, default: float | None = None) -> float | None:
    """A number from the request; NaN/inf pass through to the campus's own refusal (exit 65)."""
    value = request.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdminError(f"{key} must be a number (got {value!r})", exit_code=65)
    return float(value)


def campus_handlers(gateway: Gateway) -> dict[str, Handler]:
    commands = campus_commands(gateway)

    async def campus_setpoint(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        p_kw = _number(request, "p_kw")
        if p_kw is None:
            raise AdminError("campus_setpoint needs p_kw", exit_code=65)
        command_id = request.get("command_id")
        if command_id is not None and not isinstance(command_id, str):
            raise AdminError("command_id must be a string", exit_code=65)
        # the accept span: its traceparent goes into the campus setpoint, the shares and every gateway's writes
        with TRACER.start_as_current_span("admin.campus_setpoint", kind=trace.SpanKind.SERVER,
                                          attributes={"principal": peer.user[:128]}):
            try:
                result = await commands.setpoint(
                    p_kw, _number(request, "q_kvar", 0.0) or 0.0, command_id=command_id, source="cli",
                    principal=peer.user, expires_in_s=_number(request, "expires_in_s"),
                    traceparent=current_traceparent())
            except BessgwError as err:
                raise AdminError(str(err), exit_code=err.exit_code) from err
        return {"result": dataclasses.asdict(result)}

    async def campus_release(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        try:
            return {"result": dataclasses.asdict(await commands.release(peer.user))}
        except BessgwError as err:
            raise AdminError(str(err), exit_code=err.exit_code) from err

    async def campus_status(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from bessgw.campus.commands import status_to_json

        try:
            return {"campus": status_to_json(await commands.status())}
        except BessgwError as err:
            raise AdminError(str(err), exit_code=err.exit_code) from err

    return {"campus_setpoint": campus_setpoint, "campus_release": campus_release, "campus_status": campus_status}
