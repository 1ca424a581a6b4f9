"""A transparent wrapper around a driver that counts its calls and notices overlapping ones.

The kit puts it between the supervisor and the plugin's driver, so a conformance test can tell that the
heartbeat really runs, that a reconnect really identified the unit again, and that the driver never saw
two calls at once (the promise :class:`~bessgw.plugin.VendorDriver` makes to plugin authors).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bessgw.plugin import Capability, Setpoint, Telemetry, VendorDriver


class RecordingDriver(VendorDriver):
    """Delegates every driver method to ``inner``; counts calls and the most calls ever in flight."""

    def __init__(self, inner: VendorDriver) -> None:
        super().__init__(inner.context)
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        #: (method, method) pairs seen overlapping, e.g. ("read", "write_setpoint")
        self.overlaps: list[tuple[str, str]] = []
        self._running: list[str] = []

    async def _delegate(self, name: str, *args: Any) -> Any:
        self.calls[name] += 1
        self.overlaps.extend((other, name) for other in self._running)
        self._running.append(name)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await getattr(self.inner, name)(*args)
        finally:
            self.in_flight -= 1
            self._running.remove(name)

    async def identify(self) -> Capability:
        return await self._delegate("identify")

    async def read(self) -> Telemetry:
        return await self._delegate("read")

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        await self._delegate("write_setpoint", setpoint)

    async def heartbeat(self) -> None:
        await self._delegate("heartbeat")

    async def set_running(self, running: bool) -> None:
        await self._delegate("set_running", running)

    async def reset_fault(self) -> None:
        await self._delegate("reset_fault")

    def current_offer(self) -> Capability | None:
        return self.inner.current_offer()

    async def close(self) -> None:
        await self._delegate("close")
