"""What a CAN vendor driver sees of its bus (implemented by ``bessgw.southbound.can``).

Placeholder contract: the CAN issue fills in frame dispatch, rate limiting and the heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol


@dataclass(frozen=True, slots=True)
class CanFrame:
    """A received or sent CAN frame, free of python-can types."""

    arbitration_id: int
    data: bytes
    timestamp: float = 0.0
    is_extended_id: bool = False


class CanLink(Protocol):
    """One CAN bus as seen by one unit's driver."""

    def subscribe(self, match: Callable[[int], bool], handler: Callable[[CanFrame], None]) -> None:
        """Call ``handler`` for every received frame whose arbitration id ``match``es."""
        ...

    async def send(self, frame: CanFrame) -> None:
        """Send a frame (rate-limited per node by core); raises ``DeviceError``."""
        ...
