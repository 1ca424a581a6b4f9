"""The HTTP listener (aiohttp in the daemon's event loop): one service, optional TLS.

Routes: ``/healthz`` — the process and its event loop are alive (an answer at all proves it);
``/readyz`` — the gateway serves (same facts as READY=1: config loaded, transports and services started,
control stepping), else 503 with the reasons in JSON; ``/metrics`` — Prometheus; ``/api/v1`` — the REST
API, when the daemon hands one in.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from bessgw.config import HttpSection
from bessgw.northbound.http.connections import IDLE_TIMEOUT_S, ConnectionLimiter
from bessgw.northbound.http.families import CONTENT_TYPE, Registry
from bessgw.plugin.roles import Logger
from bessgw.throttle import LogThrottle

#: bound on closing the listener and its open connections at shutdown or reload
CLOSE_TIMEOUT_S = 2.0

Readiness = Callable[[], list[str]]
#: at most one ``http_bad_requests`` line this often, however many malformed requests arrive
BAD_REQUEST_LOG_INTERVAL_S = 10.0


class RequestErrorLog:
    """Stands in for aiohttp's server logger: a client's malformed request is a counted drop, not a bug.

    aiohttp answers a request it cannot parse (request line or header over 8190 bytes, bad framing) with
    a 400 itself, then logs it at error level with a stack: any client could fill the journal with
    "errors". Those become one ``http_bad_requests`` warning at most every
    :data:`BAD_REQUEST_LOG_INTERVAL_S` with the count since the last one; anything else (a bug) still
    goes to aiohttp's logger with its stack.
    """

    def __init__(self, log: Logger, interval_s: float = BAD_REQUEST_LOG_INTERVAL_S) -> None:
        self.log = log
        self._throttle = LogThrottle(interval_s)

    @property
    def bad_requests(self) -> int:
        """Malformed requests since start."""
        return self._throttle.total

    def exception(self, message: str, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self._count(exc_info, args[0] if args else None)
            return
        server_logger.exception(message, *args, exc_info=exc_info, **kwargs)

    def _count(self, error: HttpProcessingError, remote: object) -> None:
        reported = self._throttle.count()
        if reported:
            self.log.warning("http_bad_requests", count=reported, total=self.bad_requests,
                             last=type(error).__name__, status=error.code, remote=str(remote)[:64])

    def __getattr__(self, name: str) -> Any:  # debug, isEnabledFor, ...: aiohttp's logger
        return getattr(server_logger, name)



def ssl_context(settings: HttpSection, base_dir: Path) -> ssl.SSLContext | None:
    """The TLS context of ``[http.tls]`` (relative files are relative to the config file's directory)."""
    if settings.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = (path if path.is_absolute() else base_dir / path
                 for path in (settings.tls.cert_file, settings.tls.key_file))
    context.load_cert_chain(cert, key)
    return context


def observability_routes(app: web.Application, readiness: Readiness, registry: Registry) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app``."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        reasons = readiness()
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def metrics(request: web.Request) -> web.Response:
        body = registry.render()  # synchronous: its duration is what the scrape cost the event loop
        timing = (f"render;dur={registry.last_render_s * 1e3:.3f},"
                  f" render_cpu;dur={registry.last_render_cpu_s * 1e3:.3f}")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Server-Timing": timing})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


class HttpServer:
    """Serves ``app`` on ``[http] listen`` until cancelled; :attr:`started` once it accepts connections."""

    def __init__(self, settings: HttpSection, app: web.Application, log: Logger,
                 tls: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.app = app
        self.log = log
        self.tls = tls
        self.started = asyncio.Event()
        self.port: int | None = None  #: the bound port (differs from config with port 0)
        self.request_errors = RequestErrorLog(log)
        self.connections = ConnectionLimiter(log)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = self.settings.host
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def run(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=CLOSE_TIMEOUT_S / 2, logger=self.request_errors,
                               keepalive_timeout=IDLE_TIMEOUT_S)
        await runner.setup()
        assert runner.server is not None
        self.connections.install(runner.server)
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=self.tls,
                               reuse_address=True)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
            self.started.set()
            self.log.info("http_listening", url=self.url)
            await asyncio.Event().wait()
        finally:
            try:
                await asyncio.wait_for(runner.cleanup(), CLOSE_TIMEOUT_S)
            except (asyncio.TimeoutError, TimeoutError):
                self.log.warning("http_close_timeout", timeout_s=CLOSE_TIMEOUT_S)
