"""The ``opcua`` transport: hands each unit an :class:`OpcUaLink`, one shared session per server."""

from __future__ import annotations

import asyncio

from bessgw.config import Config, UnitSection
from bessgw.plugin.roles import Logger
from bessgw.southbound.opcua.endpoint import EndpointKey, OpcUaEndpoint, endpoint_key
from bessgw.southbound.opcua.link import OpcUaUnitLink
from bessgw.southbound.transport import Transport


class OpcUaTransport(Transport):
    """Owns every OPC UA client session of the gateway.

    Endpoints are keyed by URL, security and login, and created on first use; units behind the same
    server share its session and its subscription. Each endpoint supervises itself (connect, watchdog,
    reconnect with backoff, subscriptions restored) in its own task, started by :meth:`run` or by the
    first use of a link, so one dead server never delays another.
    """

    name = "opcua"

    def __init__(self, config: Config, log: Logger) -> None:
        super().__init__(config, log)
        self.endpoints: dict[EndpointKey, OpcUaEndpoint] = {}
        self._links: dict[str, OpcUaUnitLink] = {}

    def link_for(self, unit: UnitSection) -> OpcUaUnitLink:
        if unit.opcua is None:
            raise ValueError(f"unit {unit.id} has no [units.opcua] table")
        link = self._links.get(unit.id)
        if link is not None:
            return link
        key = endpoint_key(unit.opcua)
        endpoint = self.endpoints.get(key)
        if endpoint is None:
            endpoint = OpcUaEndpoint(key, unit.opcua, self.config, self.log)
            self.endpoints[key] = endpoint
        endpoint.users += 1
        link = OpcUaUnitLink(endpoint, unit.opcua)
        self._links[unit.id] = link
        return link

    def endpoint_for(self, unit: UnitSection) -> OpcUaEndpoint:
        """The endpoint a unit's link uses (for stats in tests and metrics)."""
        return self._links[unit.id].endpoint

    def release(self, unit: UnitSection) -> None:
        link = self._links.pop(unit.id, None)
        if link is None:
            return
        link.unsubscribe()
        endpoint = link.endpoint
        endpoint.users -= 1
        if endpoint.users <= 0:
            self.endpoints.pop(endpoint.key, None)
            asyncio.get_running_loop().create_task(endpoint.close())

    async def run(self) -> None:
        for endpoint in list(self.endpoints.values()):
            endpoint.ensure_started()
        self.started.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        for endpoint in list(self.endpoints.values()):
            await endpoint.close()
        self.endpoints.clear()
        self._links.clear()
