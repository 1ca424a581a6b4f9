"""Supervised units over real links, in-process: what the daemon wires together, for tests.

A plugin author describes the unit as they would in a site's TOML file (the driver name and its
``[units.modbus]`` / ``[units.can]`` / ``[units.opcua]`` table) and gets the gateway's own transport and
:class:`~bessgw.unit.UnitSupervisor` driving their driver against their device on loopback::

    async with modbus_unit("my_driver", port=simulator.port) as unit:
        await unit.wait_for(lambda u: u.commandable, 10.0)
        await unit.apply(Setpoint(p_kw=50.0))

Nothing here is mocked: the transports are the daemon's (pymodbus, python-can, asyncua), and every driver
call goes through the supervisor, as in production. This is the one place outside the daemon that wires
transports to drivers; tests use it instead of importing ``bessgw.southbound``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from bessgw.config import Config, check_against_plugins, parse_config, plugin_options, unit_options
from bessgw.plugin import DriverContext, EffectiveLimits, Setpoint, SiteLimits, Telemetry, VendorDriver
from bessgw.plugin.manager import PluginRegistry, build_plugin_manager
from bessgw.southbound.transport import TRANSPORTS, Transport, build_transport
from bessgw.testing.log import RecordingLog
from bessgw.testing.recorder import RecordingDriver
from bessgw.testing.wait import wait_until
from bessgw.unit import UnitSnapshot, UnitSupervisor

#: fast timings, so a conformance run takes seconds; any key can be overridden per unit or per call
TEST_TIMING: dict[str, float] = {
    "poll_interval_s": 0.1, "stale_after_s": 0.6, "bad_after_s": 1.5, "heartbeat_interval_s": 0.2,
    "retry_min_s": 0.1, "retry_max_s": 0.5,
}
#: fast reconnection of the transports themselves
TEST_LINKS: dict[str, dict[str, float]] = {
    "modbus": {"request_timeout_s": 1.0, "connect_timeout_s": 1.0, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
    "opcua": {"request_timeout_s": 2.0, "connect_timeout_s": 3.0, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
              "keepalive_interval_s": 0.3, "publish_interval_s": 0.05},
    "can": {},
}
PLUGINS_ENV = "BESSGW_PLUGINS"



def installed_plugins() -> PluginRegistry:
    """The registry the gateway would load: entry points plus the modules named in ``$BESSGW_PLUGINS``."""
    modules = [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]
    return build_plugin_manager(modules=modules).collect()


class Arrivals:
    """A telemetry observer recording when each unit published what (monotonic clock)."""

    def __init__(self) -> None:
        self.by_unit: dict[str, list[tuple[float, Telemetry]]] = defaultdict(list)

    def on_telemetry(self, telemetry: Telemetry) -> None:
        self.by_unit[telemetry.unit_id].append((time.monotonic(), telemetry))

    def since(self, unit_id: str, t0: float) -> list[tuple[float, Telemetry]]:
        return [item for item in self.by_unit[unit_id] if item[0] >= t0]


class SupervisedUnit:
    """One unit under its supervisor: what a test may see of it and do with it.

    Reads are the supervisor's (``snapshot()`` and the properties mirroring it); actions go through the
    supervisor, which serialises every call into the driver. :attr:`driver` is the plugin's own driver
    object, for reading its own counters in a test; call it only through the methods here.
    """

    def __init__(self, supervisor: UnitSupervisor, recorder: RecordingDriver, log: RecordingLog) -> None:
        self._supervisor = supervisor
        self._recorder = recorder
        self.unit_id = supervisor.unit_id
        #: everything the unit, its driver and its transport logged
        self.log = log

    # ---------------------------------------------------------------------------- what it shows
    def snapshot(self) -> UnitSnapshot:
        return self._supervisor.snapshot()

    @property
    def telemetry(self) -> Telemetry:
        return self._supervisor.telemetry

    @property
    def connected(self) -> bool:
        return self._supervisor.connected

    @property
    def limits(self) -> EffectiveLimits | None:
        return self._supervisor.limits

    @property
    def capability(self) -> Any:
        return self._supervisor.capability

    @property
    def refused_reason(self) -> str:
        return self._supervisor.refused_reason

    @property
    def commandable(self) -> bool:
        """Identified, negotiated and connected: a setpoint can be written."""
        return self.snapshot().commandable

    @property
    def polls(self) -> int:
        return self._supervisor.polls

    @property
    def poll_errors(self) -> int:
        return self._supervisor.poll_errors

    @property
    def supervisor(self) -> UnitSupervisor:
        """The supervisor itself (core's own tests; a plugin's tests need only this class)."""
        return self._supervisor

    @property
    def driver(self) -> VendorDriver:
        return self._recorder.inner

    @property
    def calls(self) -> Mapping[str, int]:
        """How often each driver method was called so far (``identify``, ``read``, ``heartbeat``...)."""
        return self._recorder.calls

    @property
    def max_concurrent_calls(self) -> int:
        """The most driver calls ever in flight at once (1 when the driver was never called concurrently)."""
        return self._recorder.max_in_flight

    @property
    def overlapping_calls(self) -> list[tuple[str, str]]:
        return list(self._recorder.overlaps)

    # ------------------------------------------------------------------------------- what it does
    async def apply(self, setpoint: Setpoint) -> Setpoint:
        """Write ``setpoint`` (clamped to the effective limits) as control would; returns what was written."""
        return await self._supervisor.apply(setpoint)

    async def set_running(self, running: bool) -> None:
        await self._supervisor.set_running(running)

    async def reset_fault(self) -> None:
        await self._supervisor.reset_fault()

    async def wait_update(self, timeout_s: float) -> Telemetry:
        """The next published telemetry (raises ``TimeoutError`` after ``timeout_s``)."""
        return await self._supervisor.wait_update(timeout_s)

    async def wait_for(self, predicate: Callable[[SupervisedUnit], bool], timeout_s: float,
                       what: str = "") -> SupervisedUnit:
        """Wait (bounded) until ``predicate(unit)`` holds, re-checking on every published update."""
        async def holds() -> bool:
            if predicate(self):
                return True
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await self._supervisor.wait_update(0.2)
            return predicate(self)

        await wait_until(holds, timeout_s, what or f"{self.unit_id}: condition; last telemetry {self.telemetry}",
                         step_s=0.0)
        return self

    async def wait_telemetry(self, predicate: Callable[[Telemetry], bool], timeout_s: float) -> Telemetry:
        """The first telemetry (current or next published) satisfying ``predicate``."""
        await self.wait_for(lambda unit: predicate(unit.telemetry), timeout_s,
                            f"{self.unit_id}: telemetry condition; last telemetry {self.telemetry}")
        return self.telemetry


class Southbound:
    """The southbound half of a gateway, in the current event loop: transports + one supervisor per unit.

    ``config`` is a site configuration as the TOML file would hold it (``units``, ``defaults``,
    ``southbound``...); missing timing keys take :data:`TEST_TIMING`. ``transport_options`` are extra
    keyword arguments of a transport's class, by transport name (e.g. a CAN ``bus_factory`` for faults).
    Use it as an async context manager: entering starts the transports and the units, leaving stops them
    and closes every driver through its supervisor, bounded in time.
    """

    def __init__(self, config: Mapping[str, Any], *, registry: PluginRegistry | None = None,
                 log: RecordingLog | None = None,
                 transport_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._state_dir: tempfile.TemporaryDirectory[str] | None = None
        data = dict(config)
        gateway = dict(data.get("gateway") or {"id": "test-gw"})
        if "state_dir" not in gateway:  # the OPC UA client keeps its generated certificate there
            self._state_dir = tempfile.TemporaryDirectory(prefix="bessgw-test-")
            gateway["state_dir"] = self._state_dir.name
        data["gateway"] = gateway
        data["defaults"] = {**TEST_TIMING, **(data.get("defaults") or {})}
        southbound = dict(data.get("southbound") or {})
        for name, fast in TEST_LINKS.items():
            southbound[name] = {**fast, **(southbound.get(name) or {})}
        data["southbound"] = southbound
        self.registry = registry or installed_plugins()
        self.config = parse_config(data, "<test config>")
        check_against_plugins(self.config, self.registry, "<test config>")
        self.log = log or RecordingLog()
        self.arrivals = Arrivals()
        self.transports: dict[str, Transport] = {}
        self.units: dict[str, SupervisedUnit] = {}
        extra = dict(transport_options or {})
        for section in self.config.units:
            spec = self.registry.drivers[section.driver]
            if spec.transport not in self.transports:
                self.transports[spec.transport] = _transport(spec.transport, self.config,
                                                             self.log.bind(transport=spec.transport),
                                                             extra.get(spec.transport))
            unit_log = self.log.bind(unit=section.id)
            context = DriverContext(
                unit_id=section.id, link=self.transports[spec.transport].link_for(section),
                options=unit_options(section, spec.unit_options),
                plugin_options=plugin_options(self.config, spec.plugin_options, spec.name), log=unit_log,
            )
            recorder = RecordingDriver(spec.factory(context))
            timing = self.config.unit_timing(section)
            supervisor = UnitSupervisor(
                section.id, recorder, spec, timing, section_limits(section), dict(self.registry.chemistries),
                expected_chemistry=section.chemistry, observers=[self.arrivals, *self.registry.observers],
                log=unit_log, reconnect_min_s=timing.retry_min_s, reconnect_max_s=timing.retry_max_s,
                auto_start=section.auto_start,
            )
            self.units[section.id] = SupervisedUnit(supervisor, recorder, unit_log)
        self._transport_tasks: dict[str, asyncio.Task[None]] = {}
        self._unit_tasks: dict[str, asyncio.Task[None]] = {}

    # --------------------------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Southbound:
        loop = asyncio.get_running_loop()
        for name, transport in self.transports.items():
            self._transport_tasks[name] = loop.create_task(transport.run(), name=f"transport:{name}")
        for unit_id, unit in self.units.items():
            self._unit_tasks[unit_id] = loop.create_task(unit.supervisor.run(), name=f"unit:{unit_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            tasks = [*self._unit_tasks.values(), *self._transport_tasks.values()]
            for task in tasks:
                task.cancel()
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=5.0)
                if pending:  # a task that ignores cancellation would hang the daemon's shutdown
                    raise AssertionError(f"tasks did not stop when cancelled: {pending}")
            for unit in self.units.values():
                await unit.supervisor.close(timeout_s=2.0)
            for transport in self.transports.values():
                await asyncio.wait_for(transport.close(), 10.0)
        finally:
            if self._state_dir is not None:
                self._state_dir.cleanup()

    # ------------------------------------------------------------------------------- inspection
    def alive(self) -> bool:
        """Every unit and transport task still runs (none crashed or returned)."""
        tasks = [*self._unit_tasks.values(), *self._transport_tasks.values()]
        return all(not task.done() for task in tasks)

    def stop_unit_task(self, unit_id: str) -> None:
        """Cancel one unit's task (its transport keeps running), as a crash or a reload would."""
        self._unit_tasks[unit_id].cancel()

    @property
    def transport(self) -> Transport:
        """The transport, when all units use the same one."""
        (only,) = self.transports.values()
        return only

    def section(self, unit_id: str) -> Any:
        return next(u for u in self.config.units if u.id == unit_id)

    def endpoint(self, unit_id: str) -> Any:
        """The connection ``unit_id`` sits behind (Modbus and OPC UA transports)."""
        section = self.section(unit_id)
        return self.transports[self.registry.drivers[section.driver].transport].endpoint_for(section)

    async def wait_for(self, unit_id: str, predicate: Callable[[Telemetry], bool], timeout_s: float) -> Telemetry:
        """The first telemetry of ``unit_id`` (current or next published) satisfying ``predicate``."""
        return await self.units[unit_id].wait_telemetry(predicate, timeout_s)

    async def wait_unit(self, unit_id: str, predicate: Callable[[SupervisedUnit], bool],
                        timeout_s: float = 5.0) -> SupervisedUnit:
        """Wait until ``predicate(unit)`` holds for ``unit_id``."""
        return await self.units[unit_id].wait_for(predicate, timeout_s)

    async def connected(self, timeout_s: float = 5.0) -> None:
        """Wait until every unit is identified, negotiated and connected."""
        for unit in self.units.values():
            await unit.wait_for(lambda u: u.commandable, timeout_s, f"{unit.unit_id} connected and negotiated")


def _transport(name: str, config: Config, log: RecordingLog, options: Mapping[str, Any] | None) -> Transport:
    """The daemon's transport ``name``; ``options`` are keyword arguments of its class (fault injection)."""
    if not options:
        return build_transport(name, config, log)
    module_name, class_name = TRANSPORTS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)(config, log, **options)


def section_limits(section: Any) -> SiteLimits:
    """The unit's ``site_limits`` table as the model's :class:`SiteLimits`."""
    return SiteLimits(**section.site_limits.model_dump())


@contextlib.asynccontextmanager
async def supervised_unit(driver: str, *, unit_id: str = "u1", options: Mapping[str, Any] | None = None,
                          timing: Mapping[str, Any] | None = None, southbound: Mapping[str, Any] | None = None,
                          registry: PluginRegistry | None = None, **link: Mapping[str, Any]
                          ) -> AsyncIterator[SupervisedUnit]:
    """One unit of ``driver`` under its supervisor; ``link`` is its transport table (``modbus={...}``...).

    :param options: the unit's ``[units.options]`` table, validated by the driver's ``unit_options``.
    :param timing: ``[defaults]`` keys over :data:`TEST_TIMING` (``poll_interval_s``, ``stale_after_s``...).
    :param southbound: ``[southbound.<transport>]`` tables (timeouts, reconnection).
    """
    unit = {"id": unit_id, "driver": driver, "options": dict(options or {}), **{k: dict(v) for k, v in link.items()}}
    config = {"units": [unit], "defaults": dict(timing or {}), "southbound": dict(southbound or {})}
    async with Southbound(config, registry=registry) as gateway:
        yield gateway.units[unit_id]


def modbus_unit(driver: str, port: int, *, host: str = "127.0.0.1", device_id: int = 1,
                **kw: Any) -> contextlib.AbstractAsyncContextManager[SupervisedUnit]:
    """A unit of ``driver`` behind the gateway's Modbus TCP transport, talking to ``host:port``."""
    return supervised_unit(driver, modbus={"host": host, "port": port, "unit_id": device_id}, **kw)


def can_unit(driver: str, channel: str, node_id: int, *, interface: str = "virtual",
             **kw: Any) -> contextlib.AbstractAsyncContextManager[SupervisedUnit]:
    """A unit of ``driver`` behind the gateway's CAN transport (python-can's virtual bus by default)."""
    return supervised_unit(driver, can={"interface": interface, "channel": channel, "node_id": node_id}, **kw)


def opcua_unit(driver: str, endpoint: str, namespace_uri: str, object_path: str, *,
               link: Mapping[str, Any] | None = None,
               **kw: Any) -> contextlib.AbstractAsyncContextManager[SupervisedUnit]:
    """A unit of ``driver`` behind the gateway's OPC UA client transport, its root object at ``object_path``."""
    table = {"endpoint": endpoint, "namespace_uri": namespace_uri, "object_path": object_path, **(link or {})}
    return supervised_unit(driver, opcua=table, **kw)


def unit_without_link(driver: str, **kw: Any) -> contextlib.AbstractAsyncContextManager[SupervisedUnit]:
    """A unit of a ``transport="none"`` driver (in-memory batteries, drivers that bring their own I/O)."""
    return supervised_unit(driver, **kw)


def check_config(data: Mapping[str, Any], path: str = "site.toml", registry: PluginRegistry | None = None) -> None:
    """Validate a site configuration as ``bessgw check-config`` does, against the installed plugins.

    Raises the gateway's configuration error (a :class:`bessgw.plugin.BessgwError`) whose message names
    ``path``, the key and what was expected — so a plugin can test how its option errors read.
    """
    config = parse_config(dict(data), path)
    check_against_plugins(config, registry or installed_plugins(), path)
