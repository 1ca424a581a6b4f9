"""What a Modbus vendor driver sees of its link (implemented by ``bessgw.southbound.modbus``).

Placeholder contract: the Modbus issue fills in coalesced block reads and register codecs.
"""

from __future__ import annotations

from typing import Protocol, Sequence


class RegisterLink(Protocol):
    """One Modbus device (a unit id behind a TCP endpoint); core owns connection and timeouts."""

    async def read_holding_registers(self, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers starting at ``address``; raises ``DeviceError``."""
        ...

    async def write_registers(self, address: int, values: Sequence[int]) -> None:
        """Write holding registers; raises ``DeviceError``."""
        ...
