"""One simulated container's Modbus TCP server, with the fault knobs tests need.

A real pymodbus server (unit id 1) serves slices of the fleet's register image through pymodbus'
``SimDevice`` action hook, which runs on every request before the answer is built: reads copy the
current image into the answer, writes are validated (a setpoint above rated power is refused with
exception 3, like the real controller) and stored in the image.

Fault knobs (:class:`Faults`) — set them on the object in-process, or write the simulator-only fault
block (holding registers 240..244, see the README) from any Modbus client: delay every answer, answer
every request with an exception code, freeze the values, serve an out-of-range SOC, drop the connection.
Killing and restarting a container is :meth:`ContainerServer.stop` / :meth:`ContainerServer.start`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from bessgw_vendor_a.physics import IMAGE_REGISTERS, Fleet

DEVICE_ID = 1
#: simulator-only registers that control the fault knobs of the container they are written to
FAULT_BLOCK = 240
FAULT_DELAY_MS, FAULT_EXCEPTION, FAULT_FREEZE, FAULT_OUT_OF_RANGE, FAULT_DROP = range(FAULT_BLOCK, FAULT_BLOCK + 5)


@dataclass
class Faults:
    """What is wrong with a container right now (all off by default)."""

    delay_s: float = 0.0
    exception_code: int = 0  # 0: answer normally; else every request gets this Modbus exception code


@dataclass
class RequestCounts:
    reads: int = 0
    writes: int = 0
    registers_read: int = 0


class ContainerServer:
    """The Modbus face of container ``index`` of a :class:`Fleet`."""

    def __init__(self, fleet: Fleet, index: int, host: str, port: int) -> None:
        self.fleet = fleet
        self.index = index
        self.host = host
        self.requested_port = port
        self.port = port
        self.faults = Faults()
        self.counts = RequestCounts()
        self._server: ModbusTcpServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again, after :meth:`stop`, on the same port)."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        device = SimDevice(
            id=DEVICE_ID,
            simdata=SimData(0, count=IMAGE_REGISTERS, values=0, datatype=DataType.REGISTERS),
            action=self._action,
        )
        server = ModbusTcpServer(device, address=(self.host, self.port))
        await server.serve_forever(background=True)
        if server.transport is None:  # pragma: no cover - pymodbus raises first
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every connection (a container that was switched off)."""
        server, self._server = self._server, None
        if server is not None:
            self.drop_connections(server)
            await server.shutdown()

    def drop_connections(self, server: ModbusTcpServer | None = None) -> int:
        """Close every client connection (the listener stays); returns how many were closed."""
        server = server or self._server
        if server is None:
            return 0
        connections = list(server.active_connections.values())
        for connection in connections:
            connection.close()
        return len(connections)

    # ------------------------------------------------------------------------------- requests

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        end = address + count
        if address >= FAULT_BLOCK and end <= FAULT_BLOCK + 5:  # the fault block itself is never faulty
            if set_values is not None:
                self._set_faults(address, [int(v) for v in set_values])
            return None  # pymodbus keeps (and echoes) what was written there
        if self.faults.delay_s > 0:
            await asyncio.sleep(self.faults.delay_s)
        if self.faults.exception_code:
            return ExcCodes(self.faults.exception_code)
        offset = address - start_address
        if set_values is None:
            if function_code in (3, 4):  # not the echo pymodbus reads after a write-single (6)
                self.counts.reads += 1
                self.counts.registers_read += count
            registers[offset : offset + count] = self.fleet.image[self.index, address:end].tolist()
            return None
        self.counts.writes += 1
        values = [int(v) for v in set_values]
        if not self.fleet.validate_write(self.index, address, values):
            return ExcCodes.ILLEGAL_VALUE
        assert self._loop is not None
        self.fleet.apply_write(self.index, address, values, self._loop.time())
        return None

    def _set_faults(self, address: int, values: list[int]) -> None:
        for register, value in enumerate(values, start=address):
            if register == FAULT_DELAY_MS:
                self.faults.delay_s = value / 1000.0
            elif register == FAULT_EXCEPTION:
                self.faults.exception_code = value if value in {e.value for e in ExcCodes} else 0
            elif register == FAULT_FREEZE:
                self.fleet.frozen[self.index] = bool(value)
            elif register == FAULT_OUT_OF_RANGE:
                self.fleet.out_of_range[self.index] = bool(value)
            elif register == FAULT_DROP and value and self._loop is not None:
                self._loop.call_later(0.05, self.drop_connections)  # after this write is answered
