"""An in-process Modbus gateway for tests: ModbusTransport + vendor_a drivers + UnitSupervisors + simulator.

Everything is real: pymodbus servers (the vendor_a simulator) on 127.0.0.1 with ports the OS picks, the
pymodbus client inside :class:`ModbusTransport`, the driver, and core's :class:`UnitSupervisor` — the same
objects the daemon wires together. Waits are on published telemetry with bounded timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bessgw_vendor_a.simulator import VendorASimulator

from bessgw.config import Config, parse_config, unit_options
from bessgw.model import SiteLimits, Telemetry
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager
from bessgw.southbound.modbus.transport import ModbusTransport
from bessgw.southbound.transport import Transport
from bessgw.unit.supervisor import UnitSupervisor

_REGISTRY = None


def registry():
    """The installed plugins (collected once per test process)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_plugin_manager().collect()
    return _REGISTRY


def chemistry(name: str = "lfp"):
    return registry().chemistries[name]


class RecordingLog:
    """A :class:`bessgw.plugin.Logger` that keeps every event (and binds like structlog)."""

    def __init__(self, events: list[tuple[str, str, dict[str, Any]]] | None = None, **bound: Any) -> None:
        self.events = events if events is not None else []
        self.bound = bound

    def bind(self, **kw: Any) -> RecordingLog:
        return RecordingLog(self.events, **{**self.bound, **kw})

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, {**self.bound, **kw}))

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for _level, name, fields in self.events if name == event]


class Arrivals:
    """A telemetry observer recording when each unit published what (monotonic clock)."""

    def __init__(self) -> None:
        self.by_unit: dict[str, list[tuple[float, Telemetry]]] = defaultdict(list)

    def on_telemetry(self, telemetry: Telemetry) -> None:
        self.by_unit[telemetry.unit_id].append((time.monotonic(), telemetry))

    def since(self, unit_id: str, t0: float) -> list[tuple[float, Telemetry]]:
        return [item for item in self.by_unit[unit_id] if item[0] >= t0]


def _print_await_chain(task: asyncio.Task[Any]) -> None:
    """Where a task is stuck: every frame down its chain of awaits (print_stack shows only the top)."""
    print(f"--- {task.get_name()} ({'cancelling' if task.cancelling() else 'pending'})")
    coro: Any = task.get_coro()
    for _ in range(50):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            print("    awaiting", repr(coro)[:200])
            break
        print(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if coro is None:
            break


def gateway_config(ports: list[int], *, modbus: dict[str, Any] | None = None,
                   defaults: dict[str, Any] | None = None) -> Config:
    return parse_config({
        "gateway": {"id": "test-gw"},
        "southbound": {"modbus": modbus or {}},
        "defaults": defaults or {},
        "units": [
            {"id": f"u{i}", "driver": "vendor_a", "modbus": {"host": "127.0.0.1", "port": port}}
            for i, port in enumerate(ports)
        ],
    })


class SupervisedGateway:
    """A transport + one supervisor per configured unit, run as tasks of the current loop.

    The daemon's southbound runtime in-process, for any driver: subclasses name the transport and driver.
    """

    def __init__(self, config: Config, transport: Transport, driver: str, log: RecordingLog,
                 reconnect_min_s: float, reconnect_max_s: float, run_transport: bool = False) -> None:
        self.config = config
        self.log = log
        self.transport = transport
        self.run_transport = run_transport
        self.arrivals = Arrivals()
        spec = registry().drivers[driver]
        self.supervisors: dict[str, UnitSupervisor] = {}
        for unit in config.units:
            unit_log = self.log.bind(unit=unit.id)
            context = DriverContext(unit_id=unit.id, link=self.transport.link_for(unit),
                                    options=unit_options(unit, spec.unit_options), log=unit_log)
            self.supervisors[unit.id] = UnitSupervisor(
                unit.id, spec.factory(context), spec, config.unit_timing(unit), SiteLimits(),
                dict(registry().chemistries), observers=[self.arrivals], log=unit_log,
                reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s,
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self):
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(s.run(), name=f"unit:{uid}") for uid, s in self.supervisors.items()]
        if self.run_transport:
            self._tasks.append(loop.create_task(self.transport.run(), name=f"transport:{self.transport.name}"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            if self._tasks:
                _done, pending = await asyncio.wait(self._tasks, timeout=5.0)
                if pending:  # a task that ignores cancellation would hang the daemon's shutdown
                    for task in asyncio.all_tasks():
                        _print_await_chain(task)
                    raise AssertionError(f"tasks did not stop when cancelled: {pending}")
        finally:
            await asyncio.wait_for(self.transport.close(), 10.0)

    def alive(self) -> bool:
        """Every supervisor task still runs (none crashed or returned)."""
        return all(not task.done() for task in self._tasks)

    def endpoint(self, unit_id: str):
        unit = next(u for u in self.config.units if u.id == unit_id)
        return self.transport.endpoint_for(unit)

    async def wait_for(self, unit_id: str, predicate: Callable[[Telemetry], bool], timeout_s: float) -> Telemetry:
        """The first telemetry of ``unit_id`` (current or next published) satisfying ``predicate``."""
        supervisor = self.supervisors[unit_id]
        deadline = time.monotonic() + timeout_s
        while True:
            if predicate(supervisor.telemetry):
                return supervisor.telemetry
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{unit_id}: condition not met within {timeout_s} s; last telemetry {supervisor.telemetry}"
                )
            try:
                await supervisor.wait_update(min(remaining, 0.5))
            except TimeoutError:
                continue


class Gateway(SupervisedGateway):
    """vendor_a units behind the Modbus transport."""

    def __init__(self, config: Config, log: RecordingLog | None = None) -> None:
        log = log or RecordingLog()
        settings = config.southbound.modbus
        super().__init__(config, ModbusTransport(config, log.bind(transport="modbus")), "vendor_a", log,
                         settings.reconnect_min_s, settings.reconnect_max_s)


def simulator(count: int = 1, **kw: Any) -> VendorASimulator:
    """A simulator on OS-chosen loopback ports, with the installed LFP model."""
    return VendorASimulator(chemistry(kw.pop("chemistry", "lfp")), count=count, port=0, **kw)
