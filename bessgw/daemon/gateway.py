"""The gateway process: lifecycle, signals, sd_notify, config reload.

Structured concurrency: one root task group holds the simulators (demo only), one supervisor task per
transport and one task per unit. Units never raise (their supervisor is the device boundary), so a
failing unit cannot take a sibling down; a transport or daemon bug does end the group, and systemd
restarts us (``Restart=on-failure``).

Start-up: READY=1 is sent only once every transport and every configured service report started (the
OPC UA endpoint accepts connections, the admin socket listens, ...). A service that cannot start at all —
a busy port, an unusable journal — stops the start with exit 78 naming its config key: a gateway never
runs without a part it was configured to have.

Signals: SIGTERM/SIGINT stop within ``gateway.shutdown_grace_s``: services drain (control ramps the units
to 0 kW), then the tasks of the root group are cancelled — ours only, never a library's — and whatever a
library leaves behind is given a short bounded grace before the process exits (a hard exit backs the bound
up). SIGHUP reloads the config — an invalid new config is logged and ignored, the running one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import structlog

from bessgw import __version__
from bessgw.backoff import Backoff
from bessgw.compat import BaseExceptionGroup, TaskGroup
from bessgw.config import Config, UnitSection, load_config, plugin_options, unit_options
from bessgw.config.preflight import timing_problems
from bessgw.control.journal import STATE_DIR_MODE
from bessgw.daemon.heap import fix_malloc_thresholds, freeze_startup_heap
from bessgw.daemon.logsetup import configure_logging, shutting_down
from bessgw.daemon.sdnotify import Notifier
from bessgw.daemon.services import SERVICES, RunningService, Service, Services, config_problems
from bessgw.errors import BessgwError, ConfigError
from bessgw.model import SiteLimits
from bessgw.plugin.manager import PluginManager, PluginRegistry
from bessgw.plugin.roles import DriverContext, SimulatorContext
from bessgw.southbound.transport import Transport, build_transport
from bessgw.unit.directory import UnitDirectory
from bessgw.unit.supervisor import UnitSupervisor

SIMULATOR_READY_TIMEOUT_S = 15.0
#: bound on the start of transports and services before READY=1 (a service that takes longer fails the start)
START_TIMEOUT_S = 60.0
#: after the root group is done, how long a library's leftover tasks and threads may take to finish
LEFTOVER_GRACE_S = 1.0
#: the config key each service stands for, in start-failure messages
SERVICE_KEYS = {"control": "control", "admin": "gateway.state_dir", "opcua": "northbound.opcua",
                "federation": "federation", "campus": "campus.coordination", "http": "http"}


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
        self.services = Services()
        self._root: TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # every task of the root group: stop cancels these
        self._service_errors: dict[str, BaseException] = {}
        self._starting = True
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.reloads = 0

    @property
    def starting(self) -> bool:
        """Until READY=1: not every transport and service has started yet."""
        return self._starting

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

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
            # the state dir holds the journal and keys: group-readable at most, whichever service creates it
            Path(self.config.gateway.state_dir).mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        except OSError as err:
            where = f"{self.config_path}: gateway.state_dir"
            raise ConfigError(str(self.config_path), [
                f"{where}: cannot create {self.config.gateway.state_dir}: {err}"]) from err
        try:
            async with TaskGroup() as root:
                self._root = root
                self._spawn(self._watchdog_loop(), "watchdog")  # systemd's watchdog also covers the start
                try:
                    await self._apply(self.config)
                    await self._wait_started()
                except BaseException:
                    self._cancel_root()
                    raise
                self._starting = False
                freeze_startup_heap()
                self.notifier.ready(status=self._status_line())
                self.log.info("ready", units=len(self.units), services=self.services.names())
                self._spawn(self._reload_loop(), "reload")
                await self._stop.wait()
                self.log.info("stopping")
                shutting_down()
                self.notifier.stopping()
                self._start_hard_deadline()
                await self._drain_services()
                self._cancel_root()
        except BaseExceptionGroup as group:
            raise _config_error_in(group) or group from None
        finally:
            await self._close_transports()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        self.log.info("stopped")
        return 0

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task in the root group and remember it (stop cancels exactly these)."""
        assert self._root is not None
        task = self._root.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _cancel_root(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _wait_started(self) -> None:
        """Wait (bounded) until every transport and configured service serves; refuse to run otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            problems = [f"{self.config_path}: {SERVICE_KEYS.get(name, name)}: cannot start: "
                        f"{type(err).__name__}: {err}" for name, err in self._service_errors.items()]
            if problems:
                raise ConfigError(str(self.config_path), problems)
            waiting = [name for name, (transport, _task) in self.transports.items() if not transport.started.is_set()]
            waiting += [name for name, running in self.services.running.items()
                        if not _started(running.service)]
            if not waiting:
                return
            if loop.time() >= deadline:
                raise ConfigError(str(self.config_path), [
                    f"{self.config_path}: {SERVICE_KEYS.get(name, name)}: did not start within"
                    f" {START_TIMEOUT_S:g} s" for name in waiting])
            await asyncio.sleep(0.02)

    async def _drain_services(self) -> None:
        """Let services finish their work while the links still run (control ramps units to 0 kW)."""
        for name, running in reversed(list(self.services.running.items())):
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
            exit_process(1)

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
                # what check-config refuses, a reload does
                problems = timing_problems(new, str(self.config_path)) + config_problems(new, str(self.config_path))
                if problems:
                    raise ConfigError(str(self.config_path), problems)
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
                await asyncio.wait({task}, timeout=2.0)
                await transport.close()
                del self.transports[name]
        await self._apply_simulators(config)
        wanted = {unit.id: unit for unit in config.units if unit.enabled}
        for unit_id, running in list(self.units.items()):
            if unit_id not in wanted or unit_fingerprint(config, wanted[unit_id]) != running.fingerprint:
                await self._stop_unit(unit_id)
        for unit_id, section in wanted.items():
            if unit_id not in self.units:
                self._start_unit(config, section)
        await self._apply_services(config)  # after the units: control drives exactly the running ones

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
            task = self._spawn(self._run_simulator(spec.run(args, context), section.name), f"sim:{section.name}")
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

    async def _apply_services(self, config: Config) -> None:
        """Start, restart or stop gateway-wide services whose config section changed."""
        for spec in SERVICES:
            fingerprint = repr(spec.section(config))
            running = self.services.running.get(spec.name)
            if running is not None and running.fingerprint == fingerprint:
                continue
            if running is not None:
                del self.services.running[spec.name]
                running.task.cancel()
                await asyncio.wait({running.task}, timeout=2.0)  # e.g. control persists its state on the way out
                self.log.info("service_stopped", service=spec.name)
            try:
                service = spec.build(self, config)
            except Exception as err:  # e.g. an unwritable state directory
                if self._starting:
                    self._service_errors[spec.name] = err
                    continue
                self.log.error("service_not_started", service=spec.name, error=f"{type(err).__name__}: {err}")
                continue
            if service is None:
                continue
            task = self._spawn(self._run_service(spec.name, service), f"service:{spec.name}")
            self.services.running[spec.name] = RunningService(fingerprint, service, task)
            self.log.info("service_started", service=spec.name)

    async def _run_service(self, name: str, service: Service) -> None:
        """A service that fails is logged and retried with backoff; it never takes the units down.

        At start-up a failure is not retried: it fails the start (exit 78, see :meth:`_wait_started`).
        """
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await service.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if self._starting and not _started(service):
                    self._service_errors[name] = err
                    return
                delay = backoff.next_delay()
                self.log.error("service_failed", service=name, error=f"{type(err).__name__}: {err}",
                               retry_in_s=round(delay, 1))
                await asyncio.sleep(delay)

    def supervisors(self) -> list[UnitSupervisor]:
        """The running units' supervisors, in config order."""
        return [running.supervisor for running in self.units.values()]

    def _transport(self, name: str) -> Transport:
        if name not in self.transports:
            transport = build_transport(name, self.config, self.log.bind(transport=name))
            task = self._spawn(transport.run(), f"transport:{name}")
            self.transports[name] = (transport, task)
        return self.transports[name][0]

    def _start_unit(self, config: Config, section: UnitSection) -> None:
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
            endpoint=_endpoint_name(section),
        )
        task = self._spawn(supervisor.run(), f"unit:{section.id}")
        self.units[section.id] = _RunningUnit(section, unit_fingerprint(config, section), supervisor, task)
        self.directory.add(supervisor)
        log.info("unit_started", driver=section.driver, transport=spec.transport)

    async def _stop_unit(self, unit_id: str) -> None:
        running = self.units.pop(unit_id)
        self.directory.remove(unit_id)
        running.task.cancel()
        await asyncio.wait({running.task}, timeout=2.0)
        await running.supervisor.close(timeout_s=2.0)
        spec = self.registry.drivers.get(running.section.driver)
        if spec is not None and spec.transport in self.transports:
            self.transports[spec.transport][0].release(running.section)
        self.log.info("unit_stopped", unit=unit_id)

    # ------------------------------------------------------------------------------ health

    def _status_line(self) -> str:
        counts = Counter(u.supervisor.snapshot().telemetry.quality.value for u in self.units.values())
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


def unit_fingerprint(config: Config, section: UnitSection) -> str:
    """What a unit's running instance depends on; a reload restarts the unit when it changes."""
    return "|".join(
        [
            section.model_dump_json(),
            config.unit_timing(section).model_dump_json(),
            str(config.plugins.get(section.driver, {})),
            config.gateway.model_dump_json(include={"telemetry_log_interval_s"}),
        ]
    )


def _endpoint_name(section: UnitSection) -> str:
    """Where a unit is, as the transport metrics name it: ``host:port``, ``interface:channel`` or a URL."""
    if section.modbus is not None:
        return f"{section.modbus.host}:{section.modbus.port}"
    if section.can is not None:
        return f"{section.can.interface}:{section.can.channel}"
    if section.opcua is not None:
        return section.opcua.endpoint
    return ""


def _started(service: Service) -> bool:
    """Whether ``service`` reports that it serves (a service without a ``started`` event serves at once)."""
    started = getattr(service, "started", None)
    return started is None or started.is_set()


def _config_error_in(group: BaseExceptionGroup) -> ConfigError | None:
    """The first ``ConfigError`` inside a task group's exception group, if any.

    Why: a start that fails (a service not started in time, a transport refused) raises ``ConfigError``
    inside the root task group, which wraps it; unwrapped, the operator gets the one-line error naming the
    key and exit 78 instead of an "uncaught ExceptionGroup (1 sub-exception)" without a message.
    """
    for err in group.exceptions:
        found = _config_error_in(err) if isinstance(err, BaseExceptionGroup) else err
        if isinstance(found, ConfigError):
            return found
    return None


def exit_process(code: int) -> NoReturn:
    """End the process now, output flushed, without the interpreter's teardown.

    Used when a library leaves a thread or task that would hold the exit, and after every clean stop:
    tearing down the few thousand imported modules costs 0.2–0.4 s during which systemd (or a rolling
    upgrade) cannot start the next gateway and the devices stay uncommanded. By then the journal is
    closed and sockets are released.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _finish_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Give what libraries left running a short, bounded chance to end; True if everything did.

    ``asyncio.run`` would wait for ever for a task that swallows cancellation (pymodbus and asyncua
    fire-and-forget some) or for a blocked worker thread; the daemon must exit within its grace period.
    """
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_GRACE_S))
    clean = all(task.done() for task in leftovers)
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), LEFTOVER_GRACE_S))
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), LEFTOVER_GRACE_S))
        return clean
    return False


def run_gateway(config_path: Path, config: Config, pm: PluginManager, registry: PluginRegistry) -> int:
    """Run the gateway in a fresh event loop; returns the exit code (raises ``ConfigError`` at start-up)."""
    fix_malloc_thresholds()  # before the big buffers: see heap.py
    notifier = Notifier()
    loop = asyncio.new_event_loop()
    clean = False
    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(Gateway(config_path, config, pm, registry, notifier).serve())
        clean = _finish_loop(loop)
    except BaseException:
        clean = _finish_loop(loop)
        raise
    finally:
        notifier.close()
        asyncio.set_event_loop(None)
        if clean:
            loop.close()
    if not clean:  # a library thread or task would hold the interpreter's exit: we are done, leave now
        exit_process(code)
    return code
