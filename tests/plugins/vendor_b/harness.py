"""vendor_b units for tests: the simulator (asyncua servers on 127.0.0.1) and the configuration for it.

The gateway side (OPC UA client transport, driver, unit supervisors) is the conformance kit's
:class:`bessgw.testing.Southbound`. asyncua servers take seconds to start, so :class:`SimulatorThread`
runs one simulator in its own event loop on a thread, shared by a module's tests (each test runs its
gateway in a fresh loop with ``asyncio.run``); its fault knobs are reset between tests.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bessgw_vendor_b.addressspace import NAMESPACE_URI
from bessgw_vendor_b.simulator import VendorBSimulator

from bessgw.testing import RecordingLog, Southbound, installed_plugins


def registry():
    return installed_plugins()


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
                   state_dir: str | None = None) -> dict[str, Any]:
    """A site configuration with one vendor_b unit ``b<i>`` per container index."""
    return {
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
    }


class Gateway(Southbound):
    """vendor_b units behind the OPC UA client transport."""

    def __init__(self, config: dict[str, Any], log: RecordingLog | None = None) -> None:
        super().__init__(config, log=log)

    @property
    def supervisors(self):
        """The supervised units by id."""
        return self.units

    def endpoint(self, unit_id: str = "b0"):
        return super().endpoint(unit_id)
