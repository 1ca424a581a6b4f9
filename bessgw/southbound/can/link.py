"""The :class:`bessgw.plugin.CanLink` a driver gets: one node on a shared :class:`CanBus`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from bessgw.compat import timeout
from bessgw.errors import DeviceTimeoutError
from bessgw.plugin.can import CanFrame, FrameHandler, HeartbeatFactory
from bessgw.southbound.can.bus import CanBus, _Heartbeat


class TokenBucket:
    """At most ``burst`` frames back to back, then ``rate_hz`` on average.

    A BMS's command input is a small mailbox processed on its own cycle: frames sent faster than it
    reads them overwrite each other, so core paces commands per node instead of trusting the driver.
    """

    def __init__(self, rate_hz: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_hz = rate_hz
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()
        self.lock = asyncio.Lock()  # FIFO: commands to one node leave in the order they were sent

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_hz)
        self.stamp = now

    async def take(self) -> bool:
        """Wait for a token (call with :attr:`lock` held); returns whether it had to wait."""
        waited = False
        while True:
            self._refill()
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return waited
            waited = True
            await asyncio.sleep((1.0 - self.tokens) / self.rate_hz)


class NodeLink:
    """One unit's view of its bus: subscriptions, rate-limited sends, its leased heartbeat."""

    def __init__(
        self,
        bus: CanBus,
        node_id: int,
        frame_timeout_s: float | None,
        bucket: TokenBucket,
        send_timeout_s: float,
    ) -> None:
        self.bus = bus
        self.node_id = node_id
        self.frame_timeout_s = frame_timeout_s
        self.bucket = bucket
        self.send_timeout_s = send_timeout_s
        self._handlers: list[FrameHandler] = []

    @property
    def available(self) -> bool:
        return self.bus.available

    def subscribe(self, arbitration_ids: Iterable[int], handler: FrameHandler, *,
                  latest_only: bool = False) -> None:
        for arbitration_id in arbitration_ids:
            self.bus.subscribe(arbitration_id, handler, latest_only)
        if handler not in self._handlers:
            self._handlers.append(handler)

    def unsubscribe(self) -> None:
        for handler in self._handlers:
            self.bus.unsubscribe(handler)
        self._handlers.clear()

    async def send(self, frame: CanFrame) -> None:
        try:
            async with timeout(self.send_timeout_s), self.bucket.lock:
                if await self.bucket.take():
                    self.bus.stats.commands_delayed += 1
                await self.bus.write([frame])
        except (TimeoutError, asyncio.TimeoutError) as err:
            raise DeviceTimeoutError(
                f"CAN bus {self.bus.name}: command to node {self.node_id} not sent within"
                f" {self.send_timeout_s:g} s (rate limit {self.bucket.rate_hz:g}/s)"
            ) from err

    def arm_heartbeat(self, factory: HeartbeatFactory, lease_s: float) -> None:
        now = time.monotonic()
        beat = self.bus.heartbeats.get(self.node_id)
        if beat is None or beat.factory != factory:
            beat = self.bus.heartbeats[self.node_id] = _Heartbeat(factory, now + lease_s)
            self.bus.beat_now(beat)  # a fresh heartbeat goes out at once, ahead of any first command
        else:
            lapsed = beat.lease_until < now
            beat.lease_until = now + lease_s
            if lapsed:
                self.bus.beat_now(beat)

    def disarm_heartbeat(self) -> None:
        self.bus.heartbeats.pop(self.node_id, None)

    def close(self) -> None:
        self.unsubscribe()
        self.disarm_heartbeat()

