"""What a local operator can ask a running gateway through the admin socket (see :mod:`bessgw.daemon.admin`).

``status`` (units, control, services), ``setpoint`` / ``heartbeat`` / ``release`` (the ``local``
setpoint source of the control plane: the operator override) and ``members`` / ``view`` (federation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from bessgw import __version__
from bessgw.daemon.admin import AdminError, Handler, Peer

if TYPE_CHECKING:
    from bessgw.daemon import Gateway

LOCAL_SOURCE = "local"
TRACER = trace.get_tracer("bessgw.daemon.admin")


def _finite(value: float) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


#: the longest ``expires_in_s`` accepted (a year); beyond it a timestamp is no longer meaningful
MAX_EXPIRES_IN_S = 366 * 86400.0
#: a command id: printable, no whitespace or control characters (it is journaled and shown one per line)


def _number(request: dict[str, Any], key: str, default: float | None = None) -> float | None:
    """A finite number from the request; ``AdminError`` otherwise (a 400-digit integer is not one)."""
    value = request.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AdminError(f"{key} must be a finite number (got {type(value).__name__})")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = "a huge integer" if isinstance(value, int) else number
        raise AdminError(f"{key} must be a finite number (got {shown})")
    return number


def handlers(gateway: Gateway) -> dict[str, Handler]:
    """The admin commands of ``gateway``."""
    started = time.time()

    def control():
        service = gateway.services.control
        if service is None:
            raise AdminError("control is not running on this gateway (see its log)")
        return service

    async def status(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        now = time.time()
        units = []
        for snap in gateway.directory.snapshots():
            telemetry = snap.telemetry
            units.append({
                "id": snap.unit_id,
                "quality": telemetry.quality.value,
                "state": telemetry.state.value,
                "reason": telemetry.quality_reason or snap.refused_reason,
                "age_s": round(telemetry.age_s(now), 3),
                "soc_pct": _finite(telemetry.soc_pct),
                "p_kw": _finite(telemetry.p_kw),
                "max_charge_kw": snap.limits.max_charge_kw if snap.limits else None,
                "max_discharge_kw": snap.limits.max_discharge_kw if snap.limits else None,
                "connected": snap.connected,
            })
        reply: dict[str, Any] = {
            "gateway": gateway.config.gateway.id,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(now - started, 1),
            "reloads": gateway.reloads,
            "services": gateway.services.names(),
            "tasks": len(asyncio.all_tasks()),  # a cheap leak signal for soak runs (bench/soak.py)
            "units": units,
        }
        service = gateway.services.control
        if service is not None:
            state = service.state
            reply["control"] = {
                "mode": state.arbitration.mode.value,
                "source": state.arbitration.source,
                "reason": state.arbitration.reason,
                "target_p_kw": state.target_p_kw,
                "delivered_p_kw": state.delivered_p_kw,
                "shortfall_p_kw": state.shortfall_p_kw,
                "excluded": dict(state.excluded),
                "overrides": {unit: p for unit, (p, _q) in state.overrides.items()},
            }
        return reply

    async def setpoint(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from bessgw.control import Command
        from bessgw.errors import BessgwError

        p_kw = _number(request, "p_kw")
        if p_kw is None:
            raise AdminError("setpoint needs p_kw")
        q_kvar = _number(request, "q_kvar", 0.0) or 0.0
        expires_in_s = _number(request, "expires_in_s")
        if expires_in_s is not None and not 0 < expires_in_s <= MAX_EXPIRES_IN_S:
            raise AdminError(f"expires_in_s must be in (0, {MAX_EXPIRES_IN_S:g}] (got {expires_in_s:g})")
        command_id = request.get("command_id")
        if command_id is None:
            command_id = f"local-{uuid.uuid4()}"
        expires_at = None if expires_in_s is None else time.time() + expires_in_s
        command = Command(command_id=command_id, source=LOCAL_SOURCE, p_kw=p_kw, q_kvar=q_kvar,
                          principal=peer.user, expires_at=expires_at)
        try:
            with TRACER.start_as_current_span("admin.setpoint", attributes={"principal": peer.user}):
                result = await control().submit(command)
        except BessgwError as err:
            raise AdminError(str(err)) from err
        return {"result": dataclasses.asdict(result)}

    async def release(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from bessgw.control import Command
        from bessgw.errors import BessgwError

        command = Command(command_id=f"local-release-{uuid.uuid4()}", source=LOCAL_SOURCE, kind="release",
                          principal=peer.user)
        try:
            return {"result": dataclasses.asdict(await control().submit(command))}
        except BessgwError as err:
            raise AdminError(str(err)) from err

    async def heartbeat(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        control().heartbeat(LOCAL_SOURCE)
        return {}

    def federation():
        service = gateway.services.federation
        if service is None:
            raise AdminError("federation is not enabled on this gateway ([federation] in its config)")
        return service

    async def members(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from bessgw.federation.view import to_jsonable

        return {"members": to_jsonable(federation().members())}

    async def view(request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        from bessgw.federation.view import to_jsonable

        return {"view": to_jsonable(federation().campus_view())}

    from bessgw.daemon.campus_operations import campus_handlers

    return {
        **campus_handlers(gateway),
        "status": status,
        "setpoint": setpoint,
        "release": release,
        "heartbeat": heartbeat,
        "members": members,
        "view": view,
    }
