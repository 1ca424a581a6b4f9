"""The gateway-wide services (control, admin socket, OPC UA, federation, campus, HTTP) and how the daemon builds them.

Each service is one root task. :class:`Services` is the typed view the rest of the process uses —
``gateway.services.control`` rather than a lookup by string — and :data:`SERVICES` says, per service,
which part of the config it depends on (a reload restarts it only when that part changed) and how to
build it (``None``: disabled by config).

A service may have:

- ``started``: an :class:`asyncio.Event` set once it serves; the daemon sends READY=1 only after every
  configured service (and every transport) has set it;
- ``async drain()``: called at shutdown, after its task was cancelled and before the units are, to finish
  work that needs the devices (control ramps them to 0 kW).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bessgw.config import Config

if TYPE_CHECKING:
    from bessgw.campus.service import CampusService
    from bessgw.control.service import ControlService
    from bessgw.daemon.admin import AdminServer
    from bessgw.daemon.gateway import Gateway
    from bessgw.federation.service import FederationService
    from bessgw.northbound.http.server import HttpServer
    from bessgw.northbound.server import OpcUaServer


class Service(Protocol):
    """A gateway-wide service run as one root task."""

    async def run(self) -> None: ...


@dataclass(frozen=True)
class ServiceSpec:
    """How the daemon builds one service from config; ``build`` returns ``None`` when it is disabled."""

    name: str
    section: Callable[[Config], Any]
    build: Callable[[Gateway, Config], Service | None]


@dataclass
class RunningService:
    fingerprint: str
    service: Service
    task: asyncio.Task[None]


class Services:
    """The running services, typed: ``None`` for one that is disabled, not started or being rebuilt."""

    def __init__(self) -> None:
        self.running: dict[str, RunningService] = {}

    def _get(self, name: str) -> Any:
        running = self.running.get(name)
        return running.service if running is not None else None

    @property
    def control(self) -> ControlService | None:
        return self._get("control")

    @property
    def admin(self) -> AdminServer | None:
        return self._get("admin")

    @property
    def opcua(self) -> OpcUaServer | None:
        return self._get("opcua")

    @property
    def federation(self) -> FederationService | None:
        return self._get("federation")

    @property
    def campus(self) -> CampusService | None:
        return self._get("campus")

    @property
    def http(self) -> HttpServer | None:
        return self._get("http")

    def names(self) -> list[str]:
        return sorted(self.running)


def _fingerprint_units(config: Config) -> tuple[str, ...]:
    from bessgw.daemon.gateway import unit_fingerprint

    return tuple(unit_fingerprint(config, unit) for unit in config.units if unit.enabled)


def _build_control(gateway: Gateway, config: Config) -> Service | None:
    from bessgw.control.service import ControlService

    return ControlService(config.control, gateway.supervisors(), config.gateway.state_dir,
                          gateway.log.bind(service="control"))


def _control_section(config: Config) -> Any:
    """Control depends on its table and on exactly which unit instances run."""
    return (config.control, config.gateway.state_dir, _fingerprint_units(config))


def _build_admin(gateway: Gateway, config: Config) -> Service | None:
    from bessgw.daemon.admin import AdminServer, socket_path
    from bessgw.daemon.operations import handlers

    return AdminServer(socket_path(config.gateway.state_dir), handlers(gateway), gateway.log.bind(service="admin"))


def config_problems(config: Config, path: str) -> list[str]:
    """Problems a service would refuse when built from ``config`` (read from ``path``), found before anything
    starts or stops; lines ``path: key: message`` as the config layer's checks write them.

    ``check-config``, ``run`` and a reload ask this after the config layer's own checks: what only a
    service's layer knows (the OPC UA address space's variable names) is checked without building it.
    """
    problems: list[str] = []
    if config.northbound.opcua.deadbands:  # a typo is one also while the server is off
        from bessgw.northbound.server import settings_problems

        problems += settings_problems(config.northbound.opcua)
    return [f"{path}: {problem}" for problem in problems]


def _build_opcua(gateway: Gateway, config: Config) -> Service | None:
    settings = config.northbound.opcua
    if not settings.enabled:
        return None
    from bessgw.northbound.server import OpcUaServer

    services = gateway.services

    def campus() -> Any:
        federation = services.federation
        return federation.campus_view() if federation is not None else None

    from bessgw.daemon.campus_operations import campus_commands

    return OpcUaServer(settings, config.gateway.id, gateway.directory, config.gateway.state_dir,
                       gateway.log.bind(service="opcua"), control=lambda: services.control, campus=campus,
                       campus_commands=campus_commands(gateway))


def _build_federation(gateway: Gateway, config: Config) -> Service | None:
    settings = config.federation
    if settings is None or not settings.enabled:
        return None
    from bessgw.federation.service import FederationService

    endpoints = {"opcua": config.northbound.opcua.endpoint} if config.northbound.opcua.enabled else {}
    return FederationService(settings, config.gateway.id, endpoints=endpoints, keys=settings.campus_keys(),
                             source=gateway.directory.snapshots, log=gateway.log.bind(service="federation"),
                             state_dir=config.gateway.state_dir)


def _build_campus(gateway: Gateway, config: Config) -> Service | None:
    """Campus dispatch, with ``[campus.coordination]``: the federation's campus view in, shares to control."""
    settings = config.campus.coordination if config.campus is not None else None
    if settings is None:
        return None
    from bessgw.campus.service import CampusService

    services = gateway.services
    if config.federation is None or not config.federation.enabled:
        gateway.log.warning("campus_without_federation",
                            reason="no campus view: the allocator sees nothing available on this gateway")

    def campus_view() -> Any:
        federation = services.federation
        return federation.campus_view() if federation is not None else None

    async def share_sink(share: Any, fence_deadline_monotonic: float) -> None:
        control = services.control
        if control is not None:  # without control nothing writes to the units: nothing to stop or start
            await control.apply_campus_share(share, fence_deadline_monotonic)

    return CampusService(settings, config.gateway.id, campus_view, share_sink)


def _build_http(gateway: Gateway, config: Config) -> Service | None:
    from bessgw.daemon.http_service import build_http

    return build_http(gateway, config)


#: gateway-wide services, in start order; each feature that adds one registers it here
SERVICES: list[ServiceSpec] = [
    ServiceSpec("control", _control_section, _build_control),
    ServiceSpec("admin", lambda config: config.gateway.state_dir, _build_admin),
    ServiceSpec("opcua", lambda config: (config.northbound.opcua, config.gateway.id, config.gateway.state_dir),
                _build_opcua),
    ServiceSpec("federation", lambda config: (config.federation, config.gateway.id, config.northbound.opcua.endpoint,
                                              config.gateway.state_dir), _build_federation),
    ServiceSpec("campus", lambda config: (config.campus, config.gateway.id, config.federation is not None),
                _build_campus),
    ServiceSpec("http", lambda config: (config.http, config.gateway.id, config.control.sources), _build_http),
]
