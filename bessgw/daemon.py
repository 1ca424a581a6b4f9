"""The gateway process: lifecycle, signals, sd_notify, config reload.

Structured concurrency: one root task group holds the simulators (demo only), one supervisor task per
transport and one task per unit. Units never raise (their supervisor is the device boundary), so a
failing unit cannot take a sibling down; a transport or daemon bug does end the group, and systemd
restarts us (``Restart=on-failure``).

Signals: SIGTERM/SIGINT stop within ``gateway.shutdown_grace_s`` (a hard exit backs the bound up if a
library ignores cancellation); SIGHUP reloads the config — an invalid new config is logged and ignored,
the running one stays.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from bessgw import __version__
from bessgw.compat import TaskGroup
from bessgw.config import Config, UnitSection, load_config, plugin_options, unit_options
from bessgw.errors import BessgwError, ConfigError
from bessgw.logsetup import configure_logging
from bessgw.model import SiteLimits
from bessgw.plugin.manager import PluginManager, PluginRegistry
from bessgw.plugin.roles import DriverContext, SimulatorContext
from bessgw.sdnotify import Notifier
from bessgw.southbound.backoff import Backoff
from bessgw.southbound.directory import UnitDirectory
from bessgw.southbound.transport import Transport, build_transport
from bessgw.southbound.unit import UnitSupervisor

SIMULATOR_READY_TIMEOUT_S = 15.0


@dataclass
class _RunningUnit:
    section: UnitSection
    fingerprint: str
    supervisor: UnitSupervisor
    task: asyncio.Task[None]


@dataclass
class _RunningSimulator:
    fingerprint: str
    task: asyncio.Task[None]


class Service(Protocol):
    """A gateway-wide service run as one root task (OPC UA server, federation node, control loop).

    A service may also have ``async drain()``: called at shutdown, after its task was cancelled and
    before the units are, to finish work that needs the devices (control ramps them to 0 kW).
    """

    async def run(self) -> None: ...


@dataclass(frozen=True)
class ServiceSpec:
    """How the daemon builds one service from config; ``build`` returns ``None`` when it is disabled.

    ``section`` picks the config the service depends on: a reload restarts the service only when that
    changes.
    """

    name: str
    section: Callable[[Config], Any]
    build: Callable[[Gateway, Config], Service | None]


@dataclass
class _RunningService:
    fingerprint: str
    service: Service
    task: asyncio.Task[None]


class Gateway:
    """One running gateway: its units, transports and (demo) simulators, reconfigurable at run time."""

    def __init__(
        self,
        config_path: Path,
        config: Config,
        pm: PluginManager,
        registry: PluginRegistry,
        notifier: Notifier | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.pm = pm
        self.registry = registry
        self.notifier = notifier or Notifier()
        self.log = structlog.get_logger("bessgw").bind(gateway=config.gateway.id)
        self.units: dict[str, _RunningUnit] = {}
        self.directory = UnitDirectory()  # what control, federation and northbound see
        self.transports: dict[str, tuple[Transport, asyncio.Task[None]]] = {}
        self.simulators: list[_RunningSimulator] = []
        self.services: dict[str, _RunningService] = {}
        self._root: TaskGroup | None = None
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.reloads = 0

    # ------------------------------------------------------------------------------ lifecycle

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        self.log.info("starting", version=__version__, config=str(self.config_path), pid=os.getpid(),
                      plugins=sorted({r.plugin for r in self.registry.items}))
        for failure in self.registry.failures:
            self.log.warning("plugin_skipped", plugin=failure.name, version=failure.version, reason=failure.reason)
        try:
            async with TaskGroup() as root:
                self._root = root
                await self._apply(self.config)
                self.notifier.ready(status=self._status_line())
                self.log.info("ready", units=len(self.units))
                root.create_task(self._watchdog_loop(), name="watchdog")
                root.create_task(self._reload_loop(), name="reload")
                await self._stop.wait()
                self.log.info("stopping")
                self.notifier.stopping()
                self._start_hard_deadline()
                await self._drain_services()
                for task in list(asyncio.all_tasks()):
                    if task is not asyncio.current_task() and not task.done():
                        task.cancel()
        finally:
            await self._close_transports()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.log.info("stopped")
        return 0

    async def _drain_services(self) -> None:
        """Let services finish their work while the links still run (control ramps units to 0 kW)."""
        for name, running in reversed(list(self.services.items())):
            drain = getattr(running.service, "drain", None)
            if drain is None or running.task.done():
                continue
            running.task.cancel()
            await asyncio.wait({running.task}, timeout=1.0)
            try:
                await drain()
            except Exception as err:  # shutting down: report, go on stopping
                self.log.error("service_drain_failed", service=name, error=repr(err))

    def _start_hard_deadline(self) -> None:
        """Back the grace period up: exit even if a library task ignores cancellation."""
        grace = self.config.gateway.shutdown_grace_s

        def expire() -> None:
            structlog.get_logger("bessgw").error("shutdown_grace_exceeded", grace_s=grace)
            os._exit(1)

        timer = threading.Timer(grace, expire)
        timer.daemon = True
        timer.start()

    async def _close_transports(self) -> None:
        for transport, _task in self.transports.values():
            try:
                await asyncio.wait_for(transport.close(), timeout=2.0)
            except (asyncio.TimeoutError, Exception) as err:  # best effort at shutdown
                self.log.warning("transport_close_failed", transport=transport.name, error=repr(err))
        self.transports.clear()

    # -------------------------------------------------------------------------------- reload

    async def _reload_loop(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            self.notifier.reloading()
            try:
                new = load_config(self.config_path, self.registry)
            except ConfigError as err:
                for line in err.problems:
                    self.log.error("reload_rejected", problem=line)
                self.log.warning("reload_ignored", reason="invalid config; the running config stays")
                self.notifier.ready(status="reload rejected: invalid config, running the previous one")
                continue
            except BessgwError as err:
                self.log.error("reload_rejected", problem=str(err))
                self.notifier.ready(status="reload rejected")
                continue
            self.reloads += 1
            if (new.gateway.log_level, new.gateway.log_format) != (
                self.config.gateway.log_level, self.config.gateway.log_format
            ):
                configure_logging(new.gateway.log_level, new.gateway.log_format)
            await self._apply(new)
            self.log.info("reloaded", units=len(self.units), reloads=self.reloads)
            self.notifier.ready(status=self._status_line())

    async def _apply(self, config: Config) -> None:
        """Bring the running units, transports and simulators in line with ``config``."""
        assert self._root is not None
        transports_changed = config.southbound != self.config.southbound
        self.config = config
        if transports_changed:
            for unit_id in list(self.units):
                await self._stop_unit(unit_id)
            for name, (transport, task) in list(self.transports.items()):
                task.cancel()
                await transport.close()
                del self.transports[name]
        await self._apply_simulators(config)
        wanted = {unit.id: unit for unit in config.units if unit.enabled}
        for unit_id, running in list(self.units.items()):
            if unit_id not in wanted or _fingerprint(config, wanted[unit_id]) != running.fingerprint:
                await self._stop_unit(unit_id)
        for unit_id, section in wanted.items():
            if unit_id not in self.units:
                self._start_unit(config, section)
        self._apply_services(config)  # after the units: control drives exactly the running ones

    async def _apply_simulators(self, config: Config) -> None:
        wanted = [f"{sim.name} {sim.args!r}" for sim in config.simulators]
        if wanted == [sim.fingerprint for sim in self.simulators]:
            return
        for sim in self.simulators:
            sim.task.cancel()
        self.simulators.clear()
        for section, fingerprint in zip(config.simulators, wanted, strict=True):
            spec = self.registry.simulators[section.name]
            args = spec.parse_args(list(section.args))
            ready = asyncio.Event()
            context = SimulatorContext(chemistries=self.registry.chemistries, ready=ready.set,
                                       log=self.log.bind(simulator=section.name))
            task = self._root.create_task(self._run_simulator(spec.run(args, context), section.name),
                                          name=f"sim:{section.name}")
            self.simulators.append(_RunningSimulator(fingerprint, task))
            waiter = asyncio.ensure_future(ready.wait())
            done, _ = await asyncio.wait({waiter, task}, timeout=SIMULATOR_READY_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if waiter not in done:
                self.log.error("simulator_not_ready", simulator=section.name, timeout_s=SIMULATOR_READY_TIMEOUT_S)
            else:
                self.log.info("simulator_ready", simulator=section.name, args=section.args)

    async def _run_simulator(self, coro: Any, name: str) -> None:
        """A simulator crash is logged and does not stop the gateway (it is demo equipment)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self.log.error("simulator_crashed", simulator=name, error=f"{type(err).__name__}: {err}",
                           exc_info=True)

    # --------------------------------------------------------------------------------- units

    def _apply_services(self, config: Config) -> None:
        """Start, restart or stop gateway-wide services whose config section changed."""
        assert self._root is not None
        for spec in SERVICES:
            fingerprint = repr(spec.section(config))
            running = self.services.get(spec.name)
            if running is not None and running.fingerprint == fingerprint:
                continue
            if running is not None:
                running.task.cancel()
                del self.services[spec.name]
                self.log.info("service_stopped", service=spec.name)
            try:
                service = spec.build(self, config)
            except Exception as err:  # e.g. an unwritable state directory: the units still run, unsupervised
                self.log.error("service_not_started", service=spec.name, error=f"{type(err).__name__}: {err}")
                continue
            if service is None:
                continue
            task = self._root.create_task(self._run_service(spec.name, service), name=f"service:{spec.name}")
            self.services[spec.name] = _RunningService(fingerprint, service, task)
            self.log.info("service_started", service=spec.name)

    async def _run_service(self, name: str, service: Service) -> None:
        """A service that fails is logged and retried with backoff; it never takes the units down."""
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await service.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                delay = backoff.next_delay()
                self.log.error("service_failed", service=name, error=f"{type(err).__name__}: {err}",
                               retry_in_s=round(delay, 1), exc_info=True)
                await asyncio.sleep(delay)

    def _transport(self, name: str) -> Transport:
        assert self._root is not None
        if name not in self.transports:
            transport = build_transport(name, self.config, self.log.bind(transport=name))
            task = self._root.create_task(transport.run(), name=f"transport:{name}")
            self.transports[name] = (transport, task)
        return self.transports[name][0]

    def _start_unit(self, config: Config, section: UnitSection) -> None:
        assert self._root is not None
        log = self.log.bind(unit=section.id)
        spec = self.registry.drivers[section.driver]
        try:
            transport = self._transport(spec.transport)
            link = transport.link_for(section)
            context = DriverContext(
                unit_id=section.id,
                link=link,
                options=unit_options(section, spec.unit_options),
                plugin_options=plugin_options(config, spec.plugin_options, spec.name),
                log=log,
            )
            driver = spec.factory(context)
        except Exception as err:  # a driver that cannot even be built: this unit only
            log.error("unit_not_started", driver=section.driver, error=f"{type(err).__name__}: {err}")
            return
        timing = config.unit_timing(section)
        limits = section.site_limits
        supervisor = UnitSupervisor(
            section.id, driver, spec, timing,
            SiteLimits(**limits.model_dump()),
            self.registry.chemistries,
            expected_chemistry=section.chemistry,
            pm=self.pm,
            observers=self.registry.observers,
            log=log,
            reconnect_min_s=timing.retry_min_s,
            reconnect_max_s=timing.retry_max_s,
            telemetry_log_interval_s=config.gateway.telemetry_log_interval_s,
            auto_start=section.auto_start,
        )
        task = self._root.create_task(supervisor.run(), name=f"unit:{section.id}")
        self.units[section.id] = _RunningUnit(section, _fingerprint(config, section), supervisor, task)
        self.directory.add(supervisor)
        log.info("unit_started", driver=section.driver, transport=spec.transport)

    async def _stop_unit(self, unit_id: str) -> None:
        running = self.units.pop(unit_id)
        self.directory.remove(unit_id)
        running.task.cancel()
        await asyncio.wait({running.task}, timeout=2.0)
        try:
            await asyncio.wait_for(running.supervisor.driver.close(), timeout=2.0)
        except (asyncio.TimeoutError, Exception) as err:
            self.log.warning("driver_close_failed", unit=unit_id, error=repr(err))
        spec = self.registry.drivers.get(running.section.driver)
        if spec is not None and spec.transport in self.transports:
            self.transports[spec.transport][0].release(running.section)
        self.log.info("unit_stopped", unit=unit_id)

    # ------------------------------------------------------------------------------ health

    def _status_line(self) -> str:
        counts = Counter(u.supervisor.telemetry.quality.value for u in self.units.values())
        parts = ", ".join(f"{n} {q}" for q, n in sorted(counts.items()))
        return f"{len(self.units)} units" + (f": {parts}" if parts else "")

    async def _watchdog_loop(self) -> None:
        """WATCHDOG=1 while the event loop turns; STATUS= every few seconds for `systemctl status`."""
        interval = self.notifier.watchdog_interval_s or 5.0
        last_status = 0.0
        while True:
            self.notifier.watchdog()
            now = time.monotonic()
            if now - last_status >= 5.0:
                last_status = now
                self.notifier.status(self._status_line())
            await asyncio.sleep(min(interval, 5.0))


def _build_control(gateway: Gateway, config: Config) -> Service | None:
    from bessgw.control.service import ControlService

    units = [running.supervisor for running in gateway.units.values()]
    return ControlService(config.control, units, config.gateway.state_dir, gateway.log.bind(service="control"))


def _control_section(config: Config) -> Any:
    """Control depends on its table and on exactly which unit instances run."""
    return (config.control, config.gateway.state_dir,
            tuple(_fingerprint(config, unit) for unit in config.units if unit.enabled))


def _build_admin(gateway: Gateway, config: Config) -> Service | None:
    from bessgw.admin import AdminServer, socket_path
    from bessgw.operations import handlers

    return AdminServer(socket_path(config.gateway.state_dir), handlers(gateway), gateway.log.bind(service="admin"))


def _build_opcua(gateway: Gateway, config: Config) -> Service | None:
    settings = config.northbound.opcua
    if not settings.enabled:
        return None
    from bessgw.northbound.server import OpcUaServer

    def control() -> Any:
        running = gateway.services.get("control")
        return running.service if running is not None else None

    def campus() -> Any:
        running = gateway.services.get("federation")
        return running.service.campus_view() if running is not None else None

    return OpcUaServer(settings, config.gateway.id, gateway.directory, config.gateway.state_dir,
                       gateway.log.bind(service="opcua"), control=control, campus=campus)


def _build_federation(gateway: Gateway, config: Config) -> Service | None:
    settings = config.federation
    if settings is None or not settings.enabled:
        return None
    from bessgw.federation.service import FederationService

    endpoints = {"opcua": config.northbound.opcua.endpoint} if config.northbound.opcua.enabled else {}
    return FederationService(settings, config.gateway.id, endpoints=endpoints, keys=settings.campus_keys(),
                             source=gateway.directory.snapshots, log=gateway.log.bind(service="federation"),
                             state_dir=config.gateway.state_dir)


#: gateway-wide services, in start order; each issue that adds one registers it here
SERVICES: list[ServiceSpec] = [
    ServiceSpec("control", _control_section, _build_control),
    ServiceSpec("admin", lambda config: config.gateway.state_dir, _build_admin),
    ServiceSpec("opcua", lambda config: (config.northbound.opcua, config.gateway.id, config.gateway.state_dir),
                _build_opcua),
    ServiceSpec("federation", lambda config: (config.federation, config.gateway.id, config.northbound.opcua.endpoint,
                                              config.gateway.state_dir),
                _build_federation),
]


def _fingerprint(config: Config, section: UnitSection) -> str:
    """What a unit's running instance depends on; a reload restarts the unit when it changes."""
    return "|".join(
        [
            section.model_dump_json(),
            config.unit_timing(section).model_dump_json(),
            str(config.plugins.get(section.driver, {})),
            config.gateway.model_dump_json(include={"telemetry_log_interval_s"}),
        ]
    )


def run_gateway(config_path: Path, config: Config, pm: PluginManager, registry: PluginRegistry) -> int:
    """Run the gateway in a fresh event loop; returns the exit code."""
    notifier = Notifier()

    async def main() -> int:
        return await Gateway(config_path, config, pm, registry, notifier).serve()

    try:
        return asyncio.run(main())
    finally:
        notifier.close()
