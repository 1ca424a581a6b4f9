"""What a CAN vendor driver sees of its bus (implemented by ``bessgw.southbound.can``).

Core owns the bus: it opens it by interface name (``virtual``, ``socketcan``, ``pcan``, ``kvaser`` ...),
reads it in one reader per bus, hands each received frame to the units that subscribed to its
arbitration id, reopens the bus with backoff when it fails, rate-limits command frames per node and sends
the heartbeat frames on their period. A driver therefore never sees a python-can type, only
:class:`CanFrame` and this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CanFrame:
    """A received or sent CAN frame, free of python-can types.

    :ivar arbitration_id: 11-bit (standard) or 29-bit (extended) identifier.
    :ivar data: the payload, 0..8 bytes (classic CAN); its length is the DLC.
    :ivar timestamp: receive time in epoch seconds (as ``time.time()``), 0 for frames to send.
    :ivar is_extended_id: whether ``arbitration_id`` is a 29-bit identifier.
    """

    arbitration_id: int
    data: bytes
    timestamp: float = 0.0
    is_extended_id: bool = False


#: called with each received frame, in the event loop; must be cheap (decode, store) and never block
FrameHandler = Callable[[CanFrame], None]
#: builds the heartbeat frame from a counter (0, 1, 2 ... wrapping at 2**32) that core increments per send
HeartbeatFactory = Callable[[int], CanFrame]


class CanLink(Protocol):
    """One BMS node on one CAN bus, as seen by that unit's driver.

    :ivar node_id: the node id from config (``units[i].can.node_id``), for building arbitration ids.
    :ivar frame_timeout_s: ``units[i].can.frame_timeout_s``: silence longer than this means the node is
        lost (``None``: only the unit's stale/bad ages apply).
    """

    node_id: int
    frame_timeout_s: float | None

    @property
    def available(self) -> bool:
        """Whether the bus is open right now (sends fail with ``DeviceUnavailableError`` otherwise)."""
        ...

    def subscribe(self, arbitration_ids: Iterable[int], handler: FrameHandler, *,
                  latest_only: bool = False) -> None:
        """Call ``handler`` for every received frame whose arbitration id is one of ``arbitration_ids``.

        Dispatch is a dictionary lookup, so a bus with many nodes costs the same per frame as one. An
        exception in ``handler`` is counted and logged by core, and the frame dropped; the reader goes on.
        Subscriptions survive bus reopening.

        ``latest_only=True`` is for cyclic telemetry whose newest value is all that matters: core hands
        frames over in batches (one per ``[southbound.can] batch_window_s`` on a busy bus) and calls
        ``handler`` only with the last frame of each such id in a batch, so a saturated bus costs one
        decode per id per batch instead of one per frame. Never use it for alarm, fault or event frames:
        with the default (``False``) every frame arrives, in bus order, and a latest-only frame sent
        before it is delivered before it.
        """
        ...

    def unsubscribe(self) -> None:
        """Forget every subscription of this link (the driver closes)."""
        ...

    async def send(self, frame: CanFrame) -> None:
        """Send a command frame, waiting for the node's command rate limit (``command_rate_hz``).

        Raises ``DeviceUnavailableError`` while the bus is down, ``DeviceTimeoutError`` when the frame
        could not be sent within ``send_timeout_s`` and ``DeviceError`` for other bus errors.
        """
        ...

    def arm_heartbeat(self, factory: HeartbeatFactory, lease_s: float) -> None:
        """Have core send ``factory(n)`` every ``[southbound.can] heartbeat_interval_s`` for ``lease_s``.

        Core sends heartbeats from a timer of its own, outside the command rate limit and ahead of
        commands, so they keep their period whatever the bus load. The lease makes the heartbeat honest:
        a driver renews it from :meth:`VendorDriver.heartbeat`, so when the unit's task stops (hung,
        refused, removed) the heartbeat stops too and the device-side watchdog does its job.
        """
        ...

    def disarm_heartbeat(self) -> None:
        """Stop sending this node's heartbeat now."""
        ...
