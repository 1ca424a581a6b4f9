"""An in-process CAN gateway for tests: CanTransport + vendor_c drivers + UnitSupervisors + simulator.

Everything is real (python-can virtual bus, the DBC codec, the supervisor); each test gets a channel
name of its own, so tests can run in parallel in one process or several.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from bessgw_vendor_c.simulator import VendorCSimulator

from bessgw.config import Config, parse_config, unit_options
from bessgw.model import SiteLimits
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import PluginRegistry, build_plugin_manager
from bessgw.southbound.can.transport import CanTransport
from bessgw.unit.supervisor import UnitSupervisor

_counter = itertools.count()


def unique_channel(prefix: str = "t") -> str:
    """A virtual channel no other test (thread, process) uses."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def registry() -> PluginRegistry:
    return build_plugin_manager().collect()


def can_config(channel: str, nodes: list[int], *, can_settings: dict[str, Any] | None = None,
               defaults: dict[str, Any] | None = None, unit_can: dict[str, Any] | None = None,
               options: dict[str, Any] | None = None) -> Config:
    units = [
        {"id": f"c{node}", "driver": "vendor_c",
         "can": {"interface": "virtual", "channel": channel, "node_id": node, **(unit_can or {})},
         "options": dict(options or {})}
        for node in nodes
    ]
    return parse_config({
        "gateway": {"id": "gw-test"},
        "southbound": {"can": dict(can_settings or {})},
        "defaults": {"poll_interval_s": 0.1, "stale_after_s": 0.5, "bad_after_s": 1.5,
                     "heartbeat_interval_s": 0.5, **(defaults or {})},
        "units": units,
    })


class CanGateway:
    """The southbound half of a gateway for the units of ``config`` (all vendor_c on CAN)."""

    def __init__(self, config: Config, reg: PluginRegistry | None = None, *,
                 bus_factory: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.registry = reg or registry()
        self.log = structlog.get_logger("test")
        self.transport = CanTransport(config, self.log, bus_factory=bus_factory)
        spec = self.registry.drivers["vendor_c"]
        self.units: dict[str, UnitSupervisor] = {}
        for unit in config.units:
            link = self.transport.link_for(unit)
            driver = spec.factory(DriverContext(unit.id, link, unit_options(unit, spec.unit_options),
                                                log=self.log.bind(unit=unit.id)))
            self.units[unit.id] = UnitSupervisor(
                unit.id, driver, spec, config.unit_timing(unit), SiteLimits(), self.registry.chemistries,
                log=self.log.bind(unit=unit.id), reconnect_min_s=0.05, reconnect_max_s=0.2,
            )
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> CanGateway:
        self._tasks = [asyncio.create_task(self.transport.run())]
        self._tasks += [asyncio.create_task(unit.run()) for unit in self.units.values()]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for unit in self.units.values():
            await unit._driver.close()
        await self.transport.close()

    async def wait_for(self, unit_id: str, predicate: Callable[[UnitSupervisor], bool],
                       timeout_s: float = 5.0) -> UnitSupervisor:
        """Wait on the unit's published updates (bounded) until ``predicate(unit)`` holds."""
        unit = self.units[unit_id]

        async def _wait() -> None:
            while not predicate(unit):
                await unit.wait_update(timeout_s)

        await asyncio.wait_for(_wait(), timeout_s)
        return unit

    async def connected(self, timeout_s: float = 5.0) -> None:
        """Wait until every unit is identified and negotiated."""
        for unit_id in self.units:
            await self.wait_for(unit_id, lambda u: u.connected and u.limits is not None, timeout_s)


def simulator(channel: str, count: int = 2, first_node_id: int = 1, **kwargs: Any) -> VendorCSimulator:
    return VendorCSimulator(registry().chemistries["lfp"], channel=channel, count=count,
                            first_node_id=first_node_id, **kwargs)
