"""vendor_c units for tests: the simulator on a python-can virtual channel and the configuration for it.

The gateway side (CAN transport, driver, unit supervisors) is the conformance kit's
:class:`bessgw.testing.Southbound`. Each test gets a channel name of its own, so tests can run in parallel
in one process or several.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from typing import Any

from bessgw_vendor_c.simulator import VendorCSimulator

from bessgw.testing import Southbound, installed_plugins

_counter = itertools.count()


def unique_channel(prefix: str = "t") -> str:
    """A virtual channel no other test (thread, process) uses."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def registry():
    return installed_plugins()


def can_config(channel: str, nodes: list[int], *, can_settings: dict[str, Any] | None = None,
               defaults: dict[str, Any] | None = None, unit_can: dict[str, Any] | None = None,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A site configuration with one vendor_c unit ``c<node>`` per node id on ``channel``."""
    units = [
        {"id": f"c{node}", "driver": "vendor_c",
         "can": {"interface": "virtual", "channel": channel, "node_id": node, **(unit_can or {})},
         "options": dict(options or {})}
        for node in nodes
    ]
    return {
        "gateway": {"id": "gw-test"},
        "southbound": {"can": dict(can_settings or {})},
        "defaults": {"poll_interval_s": 0.1, "stale_after_s": 0.5, "bad_after_s": 1.5,
                     "heartbeat_interval_s": 0.5, "retry_min_s": 0.05, "retry_max_s": 0.2, **(defaults or {})},
        "units": units,
    }


class CanGateway(Southbound):
    """The southbound half of a gateway for the units of ``config`` (all vendor_c on CAN).

    ``bus_factory`` replaces python-can's ``can.Bus`` inside the transport (fault injection).
    """

    def __init__(self, config: dict[str, Any], reg: Any = None, *,
                 bus_factory: Callable[..., Any] | None = None) -> None:
        options = {"can": {"bus_factory": bus_factory}} if bus_factory is not None else None
        super().__init__(config, registry=reg, transport_options=options)

    async def wait_for(self, unit_id: str, predicate: Callable[[Any], bool], timeout_s: float = 5.0) -> Any:
        """Wait on the unit's published updates (bounded) until ``predicate(unit)`` holds."""
        return await self.wait_unit(unit_id, predicate, timeout_s)


def simulator(channel: str, count: int = 2, first_node_id: int = 1, **kwargs: Any) -> VendorCSimulator:
    return VendorCSimulator(registry().chemistries["lfp"], channel=channel, count=count,
                            first_node_id=first_node_id, **kwargs)
