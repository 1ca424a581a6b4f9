"""The ``modbus`` transport: hands each unit a register link, one shared connection per endpoint."""

from __future__ import annotations

import asyncio

from bessgw.config import Config, UnitSection
from bessgw.plugin.roles import Logger
from bessgw.southbound.modbus.endpoint import ModbusEndpoint
from bessgw.southbound.modbus.link import ModbusRegisterLink
from bessgw.southbound.transport import Transport


class ModbusTransport(Transport):
    """Owns every Modbus TCP endpoint of the gateway.

    Endpoints are keyed by ``host:port`` and created on first use; units with the same endpoint (several
    unit ids behind one Modbus gateway) share its connection: their requests take turns on it, or with
    ``max_in_flight`` above 1 are pipelined and matched to their answers by transaction id. Units on
    different endpoints never wait for each other: each unit's requests
    run in its own task and every endpoint has its own connection, timeout, backoff and breaker.
    Connections are (re)opened lazily by the first request, so there is nothing to supervise between
    requests and :meth:`run` just waits for cancellation.
    """

    name = "modbus"

    def __init__(self, config: Config, log: Logger) -> None:
        super().__init__(config, log)
        self.settings = config.southbound.modbus
        self.endpoints: dict[tuple[str, int], ModbusEndpoint] = {}
        self._links: dict[str, ModbusRegisterLink] = {}

    def link_for(self, unit: UnitSection) -> ModbusRegisterLink:
        if unit.modbus is None:
            raise ValueError(f"unit {unit.id} has no [units.modbus] table")
        link = self._links.get(unit.id)
        if link is not None:
            return link
        key = (unit.modbus.host, unit.modbus.port)
        endpoint = self.endpoints.get(key)
        if endpoint is None:
            endpoint = ModbusEndpoint(unit.modbus.host, unit.modbus.port, self.settings, self.log)
            self.endpoints[key] = endpoint
        endpoint.users += 1
        link = ModbusRegisterLink(endpoint, unit.modbus.unit_id, self.settings.max_registers_per_read)
        self._links[unit.id] = link
        return link

    def endpoint_for(self, unit: UnitSection) -> ModbusEndpoint:
        """The endpoint a unit's link uses (for stats in tests and metrics)."""
        return self._links[unit.id].endpoint

    def release(self, unit: UnitSection) -> None:
        link = self._links.pop(unit.id, None)
        if link is None:
            return
        endpoint = link.endpoint
        endpoint.users -= 1
        if endpoint.users <= 0:
            self.endpoints.pop((endpoint.host, endpoint.port), None)
            asyncio.get_running_loop().create_task(endpoint.close())

    async def close(self) -> None:
        for endpoint in list(self.endpoints.values()):
            await endpoint.close()
        self.endpoints.clear()
        self._links.clear()
