"""Campus commands as the admin socket and OPC UA take them: commit in etcd, then journal locally.

:class:`CampusCommands` is the one entry point for a campus setpoint, whoever sends it (``bessgw campus
setpoint``, ``Objects/Campus/SetPower``): it bounds the commit in time, journals what this gateway
accepted (kind ``campus_setpoint``, never restored: only etcd with a live lease gives a share), and turns
"this gateway has no campus" into the same clear refusal everywhere.

Exit codes travel with the errors: :class:`~bessgw.errors.CoordinationError` (69, the campus cannot
commit it: no ``[campus.coordination]``, etcd unreachable, not confirmed in time) and
:class:`~bessgw.errors.SetpointRefusedError` (65, not a setpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from bessgw.campus.service import CampusService, CampusStatus, ReleaseResult, SubmitResult
from bessgw.control.service import ControlService
from bessgw.errors import BessgwError, CoordinationError
from bessgw.model.timestamp import local_iso
from bessgw.plugin.roles import Logger

#: why a gateway without ``[campus.coordination]`` refuses campus commands
NOT_CONFIGURED = "this gateway has no [campus.coordination]: campus setpoints need etcd"
#: bound on one campus command: under the admin socket's 5 s, above an etcd leader change (1-2 s)
COMMAND_TIMEOUT_S = 4.0


class CampusCommands:
    """Campus setpoint, release and status for the entry points of one gateway (module docstring)."""

    def __init__(self, campus: Callable[[], CampusService | None], control: Callable[[], ControlService | None],
                 log: Logger, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._campus = campus
        self._control = control
        self.log = log
        self.timeout_s = timeout_s

    def service(self) -> CampusService:
        """The running campus service; :class:`CoordinationError` (69) when this gateway has none."""
        service = self._campus()
        if service is None:
            raise CoordinationError(NOT_CONFIGURED)
        return service

    async def setpoint(self, p_kw: float, q_kvar: float = 0.0, *, command_id: str | None = None, source: str,
                       principal: str = "", expires_in_s: float | None = None,
                       traceparent: str = "") -> SubmitResult:
        """Commit the campus setpoint (idempotent by ``command_id`` campus-wide), then journal it here."""
        service = self.service()
        command_id = command_id or f"{source}-{uuid.uuid4().hex}"
        received_at = time.time()
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await service.submit_setpoint(p_kw, q_kvar, command_id=command_id, source=source,
                                                       principal=principal, expires_in_s=expires_in_s,
                                                       traceparent=traceparent)
        except TimeoutError:
            raise CoordinationError(
                f"campus setpoint {command_id}: etcd did not confirm it within {self.timeout_s:g} s; it may still"
                " commit: send the same command id again to find out") from None
        await self._journal(result, p_kw, q_kvar, principal, received_at, expires_in_s, traceparent, source)
        return result

    async def _journal(self, result: SubmitResult, p_kw: float, q_kvar: float, principal: str,
                       received_at: float, expires_in_s: float | None, traceparent: str, source: str) -> None:
        """The local record (the campus-wide one is in etcd): a failure here is logged, the commit stands."""
        control = self._control()
        if control is None:
            self.log.warning("campus_setpoint_not_journaled", command_id=result.command_id,
                             reason="control is not running")
            return
        note = (f"via {source}, " + ("repeat of the commit at" if result.duplicate else "committed at")
                + f" etcd revision {result.revision}")
        try:
            await control.journal_campus_setpoint(
                command_id=result.command_id, p_kw=float(p_kw), q_kvar=float(q_kvar), principal=principal,
                received_at=received_at,
                expires_at=received_at + expires_in_s if expires_in_s is not None else None,
                note=note, traceparent=traceparent)
        except BessgwError as err:
            self.log.error("campus_setpoint_not_journaled", command_id=result.command_id, error=str(err))

    async def release(self, principal: str = "") -> ReleaseResult:
        """Delete the campus setpoint: every share decreases to 0."""
        service = self.service()
        try:
            async with asyncio.timeout(self.timeout_s):
                return await service.release(principal)
        except TimeoutError:
            raise CoordinationError(f"campus release: etcd did not confirm it within {self.timeout_s:g} s;"
                                    " it may still happen: release again to be sure") from None

    async def status(self) -> CampusStatus:
        """The campus as this gateway knows it, with every lease's time left asked of etcd (bounded)."""
        service = self.service()
        with contextlib.suppress(TimeoutError, CoordinationError):
            async with asyncio.timeout(min(1.0, self.timeout_s)):
                await service.refresh_lease_times()
        return service.status()


def status_to_json(status: CampusStatus) -> dict[str, Any]:
    """``bessgw campus status --json``: plain JSON (non-finite numbers as ``null``)."""
    return _finite(dataclasses.asdict(status))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def format_status(status: dict[str, Any]) -> str:
    """``bessgw campus status``: the setpoint, the allocator, one line per gateway, the shortfall."""
    setpoint = status.get("setpoint")
    lines = []
    if setpoint:
        expires_at = setpoint.get("expires_at")
        expiry = "" if expires_at is None else f", expires {local_iso(expires_at)}"
        lines.append(f"campus setpoint: {setpoint['p_kw']:g} kW / {setpoint['q_kvar']:g} kvar"
                     f"  id {setpoint['command_id']}  revision {status['setpoint_revision']}"
                     f"  (accepted by {setpoint['accepted_by']}{expiry})")
    else:
        lines.append("campus setpoint: none (every share is 0 kW)")
    lines.append(f"allocator: {status.get('allocator') or '-'}   campus shortfall: "
                 f"{_num(status.get('shortfall_p_kw'))} kW / {_num(status.get('shortfall_q_kvar'))} kvar"
                 f"   etcd: {status.get('endpoint') or '-'}   corrupt records refused: {status['corrupt_records']}"
                 f"   shares refused: {status.get('shares_refused', 0)}")
    width = max([16, *(len(row["gateway_id"]) for row in status.get("gateways", []))])  # the longest id
    lines.append(f"{'gateway':<{width}} {'share kW':>10} {'share rev':>9} {'applied rev':>11} {'lease left s':>12}"
                 f" {'delivered kW':>12}")
    for row in status.get("gateways", []):
        lines.append(f"{row['gateway_id']:<{width}} {_num(row['share_p_kw']):>10} {row['share_revision']:>9}"
                     f" {row['applied_revision']:>11} {_num(row['lease_time_left_s']):>12}"
                     f" {_num(row['delivered_p_kw']):>12}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"
