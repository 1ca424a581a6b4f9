"""The ``http`` service: builds the HTTP listener with the gateway's collectors, readiness and REST API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bessgw.config import Config
from bessgw.daemon.readiness import not_ready_reasons
from bessgw.daemon.transport_metrics import TransportCollector
from bessgw.northbound.http.metrics import (
    CampusCollector,
    ControlCollector,
    FederationCollector,
    OpcUaCollector,
    UnitCollector,
    build_registry,
)
from bessgw.northbound.http.server import HttpServer, observability_routes, ssl_context

if TYPE_CHECKING:
    from bessgw.daemon.gateway import Gateway


def build_http(gateway: Gateway, config: Config) -> HttpServer | None:
    """The listener of ``[http]``, or ``None`` without that table (off unless configured)."""
    settings = config.http
    if settings is None:
        return None
    services = gateway.services
    registry = build_registry([
        UnitCollector(gateway.directory.snapshots),
        ControlCollector(lambda: services.control),
        TransportCollector(lambda: [transport for transport, _task in list(gateway.transports.values())]),
        OpcUaCollector(lambda: services.opcua),
        FederationCollector(lambda: services.federation),
        CampusCollector(lambda: services.campus, config.gateway.id),
    ])
    app = web.Application(client_max_size=settings.max_body_bytes)
    observability_routes(app, lambda: not_ready_reasons(gateway), registry)
    return HttpServer(settings, app, gateway.log.bind(service="http"),
                      tls=ssl_context(settings, gateway.config_path.parent))
