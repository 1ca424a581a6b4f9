"""The REST API ``/api/v1``: reads for status, units, campus view, members and the journal; setpoint and
release through the one command path (``ControlService.submit``: validated, journaled, idempotent by id).

Every answer is JSON, errors too: ``{"error": {"code": ..., "message": ...}}``. Bad JSON, wrong types,
NaN or infinities, unknown fields and bodies over ``[http] max_body_bytes`` are refused with a 4xx
before anything reaches control. Writes need a bearer token of role operator (or admin); reads need
viewer, or nothing with ``[http] anonymous_read``. The document at ``/api/v1/openapi.json`` lists it all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from opentelemetry import propagate, trace

from bessgw.config import HttpSection
from bessgw.control import Command, CommandRejectedError
from bessgw.control.errors import ControlError
from bessgw.errors import BessgwError
from bessgw.northbound.http.auth import MAX_CHECKS_PER_ADDRESS, Principal, TokenChecker, TooManyAttempts
from bessgw.northbound.http.openapi import openapi_document
from bessgw.plugin.roles import Logger
from bessgw.unit.snapshot import UnitSnapshot

if TYPE_CHECKING:
    from bessgw.control.service import ControlService
    from bessgw.federation.service import FederationService

PREFIX = "/api/v1"
#: the setpoint source REST commands act as unless the body names another configured one
DEFAULT_SOURCE = "scada"
#: sources a REST client may not act as: campus shares come from etcd only
FORBIDDEN_SOURCES = frozenset({"campus"})
MAX_JOURNAL_PAGE = 500
#: the largest sequence number the journal (SQLite INTEGER, 64-bit) can be asked about
MAX_SEQ = 2**63 - 1
TRACER = trace.get_tracer("bessgw.northbound.http")
#: HTTP status per CommandRejectedError code
_REJECTED_STATUS = {"invalid": 400, "out_of_range": 422, "unknown_unit": 404, "unavailable": 409, "conflict": 409}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class ApiContext:
    """What the API reads and where its commands go (callables: services come and go on reloads)."""

    settings: HttpSection
    gateway_id: str
    snapshots: Callable[[], list[UnitSnapshot]]
    control: Callable[[], ControlService | None]
    federation: Callable[[], FederationService | None]
    status: Callable[[], Awaitable[dict[str, Any]]]
    log: Logger


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


@web.middleware
async def json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    """Every failure under ``/api/v1`` answers JSON; an unexpected one is logged and is a 500 (a bug)."""
    try:
        return await handler(request)
    except ApiError as err:
        return _error(err.status, err.code, err.message)
    except web.HTTPMethodNotAllowed as err:
        if not request.path.startswith(PREFIX):
            raise
        allowed = ", ".join(sorted(err.allowed_methods))
        response = _error(405, "method_not_allowed", f"{request.method[:16]} is not allowed on {request.path[:80]} "
                                                     f"(allowed: {allowed})")
        response.headers["Allow"] = allowed
        return response
    except web.HTTPNotFound:  # from the router: our handlers answer their own 404s (ApiError)
        if not request.path.startswith(PREFIX):
            raise
        return _error(404, "not_found", f"no such path {request.path[:80]} (the paths: {PREFIX}/openapi.json)")
    except web.HTTPException as err:
        if not request.path.startswith(PREFIX) or err.status < 400:
            raise
        return _error(err.status, err.reason.lower().replace(" ", "_"), err.text or err.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as err:  # a bug: the client still gets JSON, the log gets the stack
        if not request.path.startswith(PREFIX):
            raise
        request.app.logger.exception("http_handler_failed", exc_info=err)
        return _error(500, "internal", f"the gateway failed to answer {request.method} {request.path[:80]} "
                                       "(a bug: see the gateway's log)")


def unit_json(snap: UnitSnapshot, now: float) -> dict[str, Any]:
    telemetry = snap.telemetry

    def finite(value: float) -> float | None:
        return value if math.isfinite(value) else None

    return {
        "id": snap.unit_id,
        "connected": snap.connected,
        "commandable": snap.commandable,
        "quality": telemetry.quality.value,
        "state": telemetry.state.value,
        "reason": telemetry.quality_reason or snap.refused_reason,
        "age_s": round(max(0.0, now - telemetry.timestamp), 3),
        "soc_pct": finite(telemetry.soc_pct),
        "p_kw": finite(telemetry.p_kw),
        "q_kvar": finite(telemetry.q_kvar),
        "limits": None if snap.limits is None else {
            "max_charge_kw": snap.limits.max_charge_kw, "max_discharge_kw": snap.limits.max_discharge_kw,
            "max_q_kvar": snap.limits.max_q_kvar},
    }


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _number(body: dict[str, Any], key: str, *, required: bool = False) -> float | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ApiError(400, "invalid", f"{key} is required")
        return None
    try:  # an integer beyond a float's range (JSON allows 1000...0 with 400 digits) is not finite either
        number = None if isinstance(value, bool) or not isinstance(value, (int, float)) else float(value)
    except OverflowError:
        number = math.inf
    if number is None or not math.isfinite(number):
        raise ApiError(400, "invalid", f"{key} must be a finite number (got {json.dumps(value)[:40]})")
    return number


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable():
        raise ApiError(400, "invalid", f"{key} must be a string of 1..128 printable characters")
    return value


#: the app's token checker (its counters are exported by the HTTP metrics)
TOKENS = web.AppKey("bessgw_api_tokens", TokenChecker)


def add_api_routes(app: web.Application, context: ApiContext) -> None:
    """Add ``/api/v1`` to ``app`` (its middleware renders errors as JSON)."""
    tokens = app[TOKENS] = TokenChecker(context.settings.tokens)
    app.middlewares.append(json_errors)

    async def principal(request: web.Request, role: str) -> Principal | None:
        header = request.headers.get("Authorization", "")
        scheme, _, bearer = header.partition(" ")
        if not header:
            if role == "viewer" and context.settings.anonymous_read:
                return None
            raise ApiError(401, "unauthenticated", "a bearer token is needed (Authorization: Bearer <token>)")
        if scheme.lower() != "bearer":
            raise ApiError(401, "unauthenticated", f"the Authorization header must be 'Bearer <name>.<secret>' "
                                                   f"(got scheme {scheme[:20]!r})")
        try:
            found = await tokens.principal(bearer.strip(), request.remote or "")
        except TooManyAttempts:
            raise ApiError(429, "too_many_attempts", f"this address already has {MAX_CHECKS_PER_ADDRESS} token "
                                                     "checks in progress; retry in a second") from None
        if found is None:
            raise ApiError(401, "unauthenticated", "unknown or invalid bearer token")
        if not found.may(role):
            raise ApiError(403, "forbidden", f"token {found.name} has role {found.role}; this needs {role}")
        return found

    async def body_of(request: web.Request, allowed: set[str]) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > context.settings.max_body_bytes:
            raise ApiError(413, "too_large", f"bodies are limited to {context.settings.max_body_bytes} bytes")
        raw = await request.read()  # aiohttp refuses more than client_max_size (413)
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant) if raw else {}
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {str(err)[:120]}") from err
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "the body must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ApiError(400, "invalid", f"unknown field(s): {', '.join(k[:40] for k in unknown[:5])}")
        return body

    def control() -> ControlService:
        service = context.control()
        if service is None:
            raise ApiError(503, "unavailable", "control is not running on this gateway (see its log)")
        return service

    def federation() -> FederationService:
        service = context.federation()
        if service is None:
            raise ApiError(404, "not_enabled", "federation is not enabled on this gateway ([federation])")
        return service

    async def submit(request: web.Request, command: Command) -> web.Response:
        """Accept: a span (continuing the client's ``traceparent`` header, if any), then the command path."""
        parent = propagate.extract({"traceparent": request.headers.get("traceparent", "")[:64]})
        with TRACER.start_as_current_span(f"rest.{command.kind}", context=parent, kind=trace.SpanKind.SERVER,
                                          attributes={"command.source": command.source,
                                                      "principal": command.principal}):
            return await _submit(command)

    async def _submit(command: Command) -> web.Response:
        try:
            result = await control().submit(command)
        except CommandRejectedError as err:
            raise ApiError(_REJECTED_STATUS.get(err.code, 400), err.code, str(err)) from err
        except ControlError as err:
            raise ApiError(503, "unavailable", str(err)) from err
        except BessgwError as err:
            raise ApiError(400, "invalid", str(err)) from err
        context.log.info("rest_command_accepted", command_id=result.command_id, kind=result.kind, seq=result.seq,
                         source=result.source, principal=result.principal, unit=result.unit_id or None)
        return web.json_response({"result": dataclasses.asdict(result)})

    def command_source(body: dict[str, Any]) -> str:
        source = _string(body, "source") or DEFAULT_SOURCE
        if source in FORBIDDEN_SOURCES:
            raise ApiError(400, "invalid", f"source {source!r} cannot be commanded over REST")
        return source

    async def get_status(request: web.Request) -> web.Response:
        await principal(request, "viewer")
        return web.json_response(await context.status())

    async def get_units(request: web.Request) -> web.Response:
        await principal(request, "viewer")
        now = time.time()
        return web.json_response({"units": [unit_json(snap, now) for snap in context.snapshots()]})

    async def get_unit(request: web.Request) -> web.Response:
        await principal(request, "viewer")
        unit_id = request.match_info["unit_id"]
        for snap in context.snapshots():
            if snap.unit_id == unit_id:
                return web.json_response(unit_json(snap, time.time()))
        raise ApiError(404, "unknown_unit", f"no unit {unit_id[:64]!r} on this gateway")

    async def get_campus(request: web.Request) -> web.Response:
        await principal(request, "viewer")
        from bessgw.federation.view import to_jsonable

        return web.json_response({"view": to_jsonable(federation().campus_view())})

    async def get_members(request: web.Request) -> web.Response:
        await principal(request, "viewer")
        from bessgw.federation.view import to_jsonable

        return web.json_response({"members": to_jsonable(federation().members())})

    async def get_journal(request: web.Request) -> web.Response:
        await principal(request, "viewer")
        try:
            limit = int(request.query.get("limit", "50"))
            before = int(request.query["before_seq"]) if "before_seq" in request.query else None
        except ValueError as err:
            raise ApiError(400, "invalid", "limit and before_seq must be integers") from err
        if not 1 <= limit <= MAX_JOURNAL_PAGE or (before is not None and not 1 <= before <= MAX_SEQ):
            raise ApiError(400, "invalid", f"limit must be 1..{MAX_JOURNAL_PAGE}, before_seq 1..{MAX_SEQ}")
        entries = await asyncio.to_thread(control().journal.page, before, limit)
        next_before = entries[-1].seq if len(entries) == limit else None
        return web.json_response({"entries": [entry.as_dict() for entry in entries], "next_before_seq": next_before})

    async def post_setpoint(request: web.Request) -> web.Response:
        who = await principal(request, "operator")
        body = await body_of(request, {"command_id", "p_kw", "q_kvar", "expires_in_s", "unit_id", "source"})
        p_kw = _number(body, "p_kw", required=True)
        q_kvar = _number(body, "q_kvar") or 0.0
        expires_in_s = _number(body, "expires_in_s")
        if expires_in_s is not None and not 0 < expires_in_s <= 86_400:
            raise ApiError(400, "invalid", "expires_in_s must be in (0, 86400]")
        assert p_kw is not None and who is not None
        command = Command(command_id=_string(body, "command_id") or f"rest-{uuid.uuid4()}",
                          source=command_source(body), p_kw=p_kw, q_kvar=q_kvar, principal=f"rest:{who.name}",
                          expires_at=None if expires_in_s is None else time.time() + expires_in_s,
                          unit_id=_string(body, "unit_id"), clamp=False)
        return await submit(request, command)

    async def post_release(request: web.Request) -> web.Response:
        who = await principal(request, "operator")
        body = await body_of(request, {"command_id", "unit_id", "source"})
        assert who is not None
        command = Command(command_id=_string(body, "command_id") or f"rest-release-{uuid.uuid4()}",
                          source=command_source(body), kind="release", principal=f"rest:{who.name}",
                          unit_id=_string(body, "unit_id"))
        return await submit(request, command)

    async def get_openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    app.router.add_get(f"{PREFIX}/openapi.json", get_openapi)
    app.router.add_get(f"{PREFIX}/status", get_status)
    app.router.add_get(f"{PREFIX}/units", get_units)
    app.router.add_get(f"{PREFIX}/units/{{unit_id}}", get_unit)
    app.router.add_get(f"{PREFIX}/campus", get_campus)
    app.router.add_get(f"{PREFIX}/members", get_members)
    app.router.add_get(f"{PREFIX}/journal", get_journal)
    app.router.add_post(f"{PREFIX}/setpoint", post_setpoint)
    app.router.add_post(f"{PREFIX}/release", post_release)
