"""The :class:`bessgw.plugin.RegisterLink` a Modbus driver gets: one unit id behind a shared endpoint."""

from __future__ import annotations

from collections.abc import Sequence

from bessgw.errors import DeviceProtocolError
from bessgw.plugin.modbus import MAX_READ_REGISTERS, MAX_WRITE_REGISTERS, RegisterSnapshot, RegisterSpan
from bessgw.southbound.modbus.coalesce import plan_reads
from bessgw.southbound.modbus.endpoint import ModbusEndpoint


class ModbusRegisterLink:
    """Implements :class:`bessgw.plugin.RegisterLink` for ``device_id`` at ``endpoint``.

    Read plans are cached per tuple of spans: a driver polls the same spans every cycle, so planning is
    paid once, not 2000 times a second.
    """

    def __init__(
        self, endpoint: ModbusEndpoint, device_id: int, max_registers: int = MAX_READ_REGISTERS
    ) -> None:
        self.endpoint = endpoint
        self.device_id = device_id
        self.max_registers = max_registers
        self._plans: dict[tuple[RegisterSpan, ...], list[RegisterSpan]] = {}
        self._last: tuple[tuple[RegisterSpan, ...], list[RegisterSpan]] | None = None

    def plan(self, spans: Sequence[RegisterSpan]) -> list[RegisterSpan]:
        """The requests :meth:`read_blocks` will send for ``spans``."""
        last = self._last
        if last is not None and spans is last[0]:  # the same tuple as last poll: no hashing of its spans
            return last[1]
        key = tuple(spans)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_reads(key, self.max_registers)
            if len(self._plans) < 64:  # bounded: drivers use a handful of span sets
                self._plans[key] = plan
        if type(spans) is tuple:  # immutable (of frozen spans), so identity is enough next time
            self._last = (spans, plan)
        return plan

    async def read_blocks(self, spans: Sequence[RegisterSpan]) -> RegisterSnapshot:
        blocks = []
        for request in self.plan(spans):
            values = await self.endpoint.read_holding_registers(
                self.device_id, request.address, request.count
            )
            blocks.append((request.address, values))
        return RegisterSnapshot(blocks)

    async def read_holding_registers(self, address: int, count: int) -> list[int]:
        if not 1 <= count <= MAX_READ_REGISTERS:
            raise ValueError(f"count must be 1..{MAX_READ_REGISTERS} (got {count})")
        return await self.endpoint.read_holding_registers(self.device_id, address, count)

    async def write_registers(self, address: int, values: Sequence[int], *, verify: bool = True) -> None:
        payload = [int(v) for v in values]
        if not 1 <= len(payload) <= MAX_WRITE_REGISTERS:
            raise ValueError(f"write 1..{MAX_WRITE_REGISTERS} registers (got {len(payload)})")
        if any(not 0 <= v <= 0xFFFF for v in payload):
            raise ValueError(f"register values must be 0..65535 (got {payload})")
        await self.endpoint.write_registers(self.device_id, address, payload)
        if verify:
            echo = await self.endpoint.read_holding_registers(self.device_id, address, len(payload))
            if echo != payload:
                raise DeviceProtocolError(
                    f"modbus {self.endpoint.name} unit {self.device_id}: write verification failed at"
                    f" {address}: wrote {payload}, read back {echo}"
                )
