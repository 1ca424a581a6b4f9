"""The ``http`` service: builds the HTTP listener with the gateway's collectors, readiness and REST API."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bessgw.config import Config
from bessgw.daemon.admin import Peer
from bessgw.daemon.operations import handlers
from bessgw.daemon.readiness import not_ready_reasons
from bessgw.daemon.transport_metrics import TransportCollector
from bessgw.northbound.http.api import ApiContext, add_api_routes
from bessgw.northbound.http.metrics import (
    CampusCollector,
    ControlCollector,
    FederationCollector,
    HttpCollector,
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
    listener: list[HttpServer] = []  # the listener counts its own drops; it is built last
    registry = build_registry([
        UnitCollector(gateway.directory.snapshots),
        ControlCollector(lambda: services.control),
        TransportCollector(lambda: [transport for transport, _task in list(gateway.transports.values())]),
        OpcUaCollector(lambda: services.opcua),
        FederationCollector(lambda: services.federation),
        CampusCollector(lambda: services.campus, config.gateway.id),
        HttpCollector(lambda: listener[0] if listener else None),
    ])
    app = web.Application(client_max_size=settings.max_body_bytes)
    observability_routes(app, lambda: not_ready_reasons(gateway), registry)
    status = handlers(gateway)["status"]

    async def gateway_status() -> dict[str, Any]:
        return await status({}, Peer(pid=os.getpid(), uid=os.getuid(), user="rest"))

    add_api_routes(app, ApiContext(settings, config.gateway.id, gateway.directory.snapshots,
                                   lambda: services.control, lambda: services.federation, gateway_status,
                                   gateway.log.bind(service="http")))
    listener.append(HttpServer(settings, app, gateway.log.bind(service="http"),
                               tls=ssl_context(settings, gateway.config_path.parent)))
    return listener[0]
