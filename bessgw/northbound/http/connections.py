"""Bounds on the HTTP listener's connections: slow or idle clients cannot hold the gateway's sockets.

aiohttp keeps a connection that has not sent a complete request for its keep-alive timeout (3630 s by
default) and accepts any number of connections. Clients that send their headers a byte at a time and
never finish (slowloris) each held a file descriptor for an hour: under systemd's default limit of 1024
descriptors, a thousand of them leave the gateway unable to open a device connection, its journal or an
OPC UA session, and leave ``/healthz`` unanswered. Here:

* a connection with no request in progress is closed :data:`IDLE_TIMEOUT_S` after it was opened or
  after its last answer (aiohttp's keep-alive timeout, which also bounds headers that never complete);
* one connection over :data:`MAX_CONNECTIONS` closes the oldest connection that is not serving a
  request, so a flood displaces its own earlier sockets and idle keep-alive connections (which clients
  re-open), and a fresh client's ``/healthz`` gets through. Only when every other connection is serving
  a request is the newcomer itself closed: requests in progress are never cut.

aiohttp's ``Server`` (the protocol factory) is told of every connection made; :meth:`ConnectionLimiter.install`
wraps that notification, as the OPC UA connection guard wraps asyncua's transport list.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bessgw.plugin.roles import Logger
from bessgw.throttle import LogThrottle

#: open HTTP connections at most (Prometheus, a few REST clients and probes need a handful)
MAX_CONNECTIONS = 256
#: a connection without a request in progress is closed this long after it opened or last answered
IDLE_TIMEOUT_S = 15.0
#: at most one ``http_connections_evicted`` line this often
_LOG_INTERVAL_S = 10.0


class ConnectionLimiter:
    """Closes the oldest idle connections of an aiohttp ``Server`` beyond ``max_connections``."""

    def __init__(self, log: Logger, max_connections: int = MAX_CONNECTIONS) -> None:
        self.log = log
        self.max_connections = max_connections
        self._throttle = LogThrottle(_LOG_INTERVAL_S)

    @property
    def evicted(self) -> int:
        """Connections closed to make room, since start."""
        return self._throttle.total

    def install(self, server: web.Server) -> None:
        """Watch ``server``'s connections (before its site starts listening)."""
        made = server.connection_made

        def connection_made(handler: Any, transport: Any) -> None:
            made(handler, transport)
            self._make_room(server)

        server.connection_made = connection_made  # type: ignore[method-assign]

    def _make_room(self, server: web.Server) -> None:
        handlers = server.connections  # oldest first
        excess = len(handlers) - self.max_connections
        if excess <= 0:
            return
        closed = 0
        for handler in handlers:
            if closed == excess:
                break
            if getattr(handler, "_request_in_progress", False):
                continue  # serving a request: it ends by itself
            handler.force_close()
            closed += 1
        reported = self._throttle.count(closed)
        if reported:
            self.log.warning("http_connections_evicted", count=reported, total=self.evicted,
                             max_connections=self.max_connections)
