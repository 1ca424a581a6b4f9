"""An in-process OPC UA gateway for tests: OpcUaTransport + vendor_b drivers + UnitSupervisors + simulator.

Everything is real: asyncua servers (the vendor_b simulator) on 127.0.0.1, the asyncua client inside
:class:`OpcUaTransport`, the driver, and core's :class:`UnitSupervisor`. asyncua servers take seconds to
start, so :class:`SimulatorThread` runs one simulator in its own event loop on a thread, shared by a
module's tests (each test runs its gateway in a fresh loop with ``asyncio.run``); its fault knobs are
reset between tests. Waits are on published telemetry or on conditions with bounded timeouts.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bessgw_vendor_b.addressspace import NAMESPACE_URI
from bessgw_vendor_b.simulator import VendorBSimulator

from bessgw.config import Config, parse_config, unit_options
from bessgw.model import SiteLimits, Telemetry
from bessgw.plugin import DriverContext
from bessgw.southbound.opcua.transport import OpcUaTransport
from bessgw.southbound.unit import UnitSupervisor
from tests.plugins.vendor_a.harness import Arrivals, RecordingLog, registry


class SimulatorThread:
    """A :class:`VendorBSimulator` serving from its own event loop on a daemon thread."""

    def __init__(self, count: int = 1, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vendor_b-sim", daemon=True)
        self.thread.start()
        self.pki = tempfile.TemporaryDirectory(prefix="vendor_b-sim-")
        self.sim: VendorBSimulator = self.call(self._make(count, kw))
        self.call(self.sim.start())

    async def _make(self, count: int, kw: dict[str, Any]) -> VendorBSimulator:
        return VendorBSimulator(registry().chemistries["vrfb"], count, 0, pki_dir=Path(self.pki.name), **kw)

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        """Run ``coroutine`` in the simulator's loop and wait for its result (bounded)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    async def acall(self, coroutine: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
        """:meth:`call` from inside another event loop, without blocking that loop."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)

    def do(self, action: Callable[[], Any]) -> Any:
        """Run a plain callable in the simulator's loop (knobs are touched from its thread only)."""
        async def wrapper() -> Any:
            return action()
        return self.call(wrapper())

    async def _cancel_leftovers(self) -> None:
        """asyncua leaves session tasks behind after ``server.stop()``: end them before the loop stops."""
        leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=5.0)

    def reset_knobs(self) -> None:
        def reset() -> None:
            self.sim.frozen = False
            self.sim.reject_certificates = False
            self.sim.slow_s = 0.0
        self.do(reset)

    def close(self) -> None:
        try:
            self.call(self.sim.stop())
            self.call(self._cancel_leftovers())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10.0)
            self.pki.cleanup()


def gateway_config(sim: VendorBSimulator, *, indexes: tuple[int, ...] = (0,), opcua: dict[str, Any] | None = None,
                   defaults: dict[str, Any] | None = None, link: dict[str, Any] | None = None,
                   state_dir: str | None = None) -> Config:
    return parse_config({
        "gateway": {"id": "test-gw", "state_dir": state_dir or tempfile.mkdtemp(prefix="bessgw-state-")},
        "southbound": {"opcua": {"request_timeout_s": 1.0, "connect_timeout_s": 3.0, "reconnect_min_s": 0.1,
                                 "reconnect_max_s": 0.5, "keepalive_interval_s": 0.3, "publish_interval_s": 0.05,
                                 **(opcua or {})}},
        "defaults": {"poll_interval_s": 0.05, "stale_after_s": 0.6, "bad_after_s": 1.5, "retry_min_s": 0.1,
                     "retry_max_s": 0.5, "heartbeat_interval_s": 0.2, **(defaults or {})},
        "units": [
            {"id": f"b{i}", "driver": "vendor_b",
             "opcua": {"endpoint": sim.endpoint(i), "namespace_uri": NAMESPACE_URI,
                       "object_path": f"Containers/{sim.containers[i].name}", **(link or {})}}
            for i in indexes
        ],
    })


class Gateway:
    """Transport + one supervisor per configured unit, run as tasks of the current loop."""

    def __init__(self, config: Config, log: RecordingLog | None = None) -> None:
        self.config = config
        self.log = log or RecordingLog()
        self.transport = OpcUaTransport(config, self.log.bind(transport="opcua"))
        self.arrivals = Arrivals()
        spec = registry().drivers["vendor_b"]
        settings = config.southbound.opcua
        self.supervisors: dict[str, UnitSupervisor] = {}
        for unit in config.units:
            unit_log = self.log.bind(unit=unit.id)
            driver = spec.factory(DriverContext(unit_id=unit.id, link=self.transport.link_for(unit),
                                                options=unit_options(unit, spec.unit_options), log=unit_log))
            self.supervisors[unit.id] = UnitSupervisor(
                unit.id, driver, spec, config.unit_timing(unit), SiteLimits(), dict(registry().chemistries),
                observers=[self.arrivals], log=unit_log,
                reconnect_min_s=settings.reconnect_min_s, reconnect_max_s=settings.reconnect_max_s,
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Gateway:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(s.run(), name=f"unit:{uid}") for uid, s in self.supervisors.items()]
        self._tasks.append(loop.create_task(self.transport.run(), name="transport:opcua"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            _done, pending = await asyncio.wait(self._tasks, timeout=5.0)
            assert not pending, f"tasks did not stop when cancelled: {pending}"
        finally:
            await asyncio.wait_for(self.transport.close(), 10.0)

    def endpoint(self, unit_id: str = "b0"):
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


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.02) -> None:
    """Poll a cheap in-memory condition (a counter, a flag) until it holds, bounded in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(step_s)
