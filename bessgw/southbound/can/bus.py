"""One CAN bus: open/reopen with backoff, one reader thread, dispatch by arbitration id, heartbeats.

Why a reader *thread* with batching rather than ``can.Notifier`` + ``AsyncBufferedReader``: the Notifier
hands every frame to the event loop with its own ``call_soon_threadsafe`` (one self-pipe write and one
loop wake-up per frame), and ``AsyncBufferedReader`` adds a queue hop and an ``await`` per frame. The
reader here blocks in the library's ``recv`` (works with every python-can interface, including those
without a file descriptor such as ``pcan`` or ``kvaser``), then drains whatever else is already
waiting without blocking and hands the whole batch over in one call. Under a saturated bus a batch
holds tens of frames, so the per-frame cost left is one dict lookup and the driver's decode. A
semaphore bounds the batches in flight: when the loop cannot keep up, frames wait in the interface's
own queue (where hardware counts overruns) instead of piling up in the loop.

Two things keep a saturated bus cheap (a 1 Mbit/s bus carries ~8,000 frames/s):

* **A gather window.** When frames arrive faster than one hand-over per ``batch_window_s``, the reader
  waits out the rest of the window before handing the batch over, so the loop is woken once per window
  instead of once per handful of frames. A quiet bus pays nothing: the first frame after a pause is
  handed over at once. The window bounds the extra latency of every frame, events included.
* **Latest-wins for periodic telemetry.** A driver subscribes a cyclic telemetry frame with
  ``latest_only=True``: within one batch only the last frame of each such id reaches it (the earlier
  ones were superseded on the bus before anybody could read them), counted in ``frames_coalesced``.
  Every other subscription (alarms, faults, events: the default) gets every frame. Order is kept:
  before a frame is delivered to an every-frame handler, the pending latest frames that preceded it
  on the bus are delivered first, so no handler sees an event ahead of the telemetry sent before it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import can

from bessgw.backoff import Backoff
from bessgw.config import CanSettings
from bessgw.errors import DeviceError, DeviceUnavailableError
from bessgw.plugin.can import CanFrame, FrameHandler, HeartbeatFactory
from bessgw.plugin.roles import Logger
from bessgw.throttle import LogThrottle

#: frames handed to the loop in one call at most (keeps each loop turn short under a flood)
BATCH_MAX = 256
#: batches queued for the loop at most before the reader waits
BATCHES_IN_FLIGHT = 8
#: how often the reader thread looks up from a blocking ``recv`` to notice a close
RECV_POLL_S = 0.1
#: SocketCAN error class bit for bus-off in an error frame's id (linux/can/error.h CAN_ERR_BUSOFF)
CAN_ERR_BUSOFF = 0x40
#: repeated error logs are summarised at most this often
ERROR_LOG_INTERVAL_S = 10.0

BusFactory = Callable[..., can.BusABC]


@dataclass
class CanBusStats:
    """Counters of one bus, for logs, metrics and tests."""

    opens: int = 0
    open_failures: int = 0
    frames_rx: int = 0
    frames_unrouted: int = 0
    #: frames of latest-only subscriptions superseded by a later frame of the same id in the same batch
    frames_coalesced: int = 0
    batches: int = 0
    error_frames: int = 0
    bus_off: int = 0
    handler_errors: int = 0
    frames_tx: int = 0
    tx_errors: int = 0
    heartbeats_tx: int = 0
    commands_delayed: int = 0


@dataclass(frozen=True)
class _Route:
    """Who gets the frames of one arbitration id: every frame, or only the latest of each batch."""

    every: tuple[FrameHandler, ...] = ()
    latest: tuple[FrameHandler, ...] = ()


@dataclass
class _Heartbeat:
    factory: HeartbeatFactory
    lease_until: float  # time.monotonic()
    counter: int = 0


@dataclass
class _Session:
    """One opening of the bus; ends when the reader fails or a bus-off arrives."""

    bus: can.BusABC
    stop: threading.Event = field(default_factory=threading.Event)
    failure: asyncio.Future[str] | None = None
    frames: int = 0


class CanBus:
    """Owns one python-can bus (one interface + channel) for every unit on it."""

    def __init__(
        self,
        interface: str,
        channel: str,
        bitrate: int | None,
        settings: CanSettings,
        log: Logger,
        bus_factory: BusFactory | None = None,
    ) -> None:
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.settings = settings
        self.log = log
        self.name = f"{interface}:{channel}"
        self.stats = CanBusStats()
        self.handlers: dict[int, _Route] = {}
        self.heartbeats: dict[int, _Heartbeat] = {}
        self.opened = asyncio.Event()  # set while the bus is open
        self._bus_factory = bus_factory or can.Bus
        self._session: _Session | None = None
        self._inflight = threading.Semaphore(BATCHES_IN_FLIGHT)
        self._tx = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"can-tx-{channel}")
        self._opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"can-open-{channel}")
        self._error_log = LogThrottle(ERROR_LOG_INTERVAL_S)
        self._pending: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------------------ for links

    @property
    def available(self) -> bool:
        return self._session is not None

    def subscribe(self, arbitration_id: int, handler: FrameHandler, latest_only: bool = False) -> None:
        """Route frames of ``arbitration_id`` to ``handler``: every one, or the latest of each batch."""
        route = self.handlers.get(arbitration_id, _Route())
        if latest_only:
            route = _Route(route.every, (*route.latest, handler))
        else:
            route = _Route((*route.every, handler), route.latest)
        self.handlers[arbitration_id] = route

    def unsubscribe(self, handler: FrameHandler) -> None:
        for arbitration_id, route in list(self.handlers.items()):
            remaining = _Route(tuple(h for h in route.every if h != handler),
                               tuple(h for h in route.latest if h != handler))
            if remaining.every or remaining.latest:
                self.handlers[arbitration_id] = remaining
            else:
                del self.handlers[arbitration_id]

    async def write(self, frames: list[CanFrame]) -> None:
        """Send ``frames`` in order on the writer thread; wraps library errors in ``DeviceError``."""
        session = self._session
        if session is None:
            raise DeviceUnavailableError(f"CAN bus {self.name} is not open")
        messages = [
            can.Message(arbitration_id=f.arbitration_id, data=f.data, is_extended_id=f.is_extended_id)
            for f in frames
        ]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._tx, _send_all, session.bus, messages)
        except RuntimeError as err:  # the writer was shut down: the bus is being closed
            raise DeviceUnavailableError(f"CAN bus {self.name} is closing") from err
        except (can.CanError, OSError, ValueError) as err:
            self.stats.tx_errors += 1
            raise DeviceError(f"CAN bus {self.name}: send failed: {err}") from err
        self.stats.frames_tx += len(messages)

    # ------------------------------------------------------------------------------ supervision

    async def run(self) -> None:
        """Keep the bus open until cancelled: open, read, and reopen with backoff when it fails."""
        backoff = Backoff(self.settings.reopen_min_s, self.settings.reopen_max_s)
        loop = asyncio.get_running_loop()
        down_logged = False
        while True:
            opening = self._opener.submit(self._open)
            try:
                bus = await asyncio.wrap_future(opening)
            except asyncio.CancelledError:
                opening.add_done_callback(_shutdown_if_opened)  # cancelled mid-open: do not leak the bus
                raise
            except Exception as err:  # the device boundary: a driver library may raise anything on open
                self.stats.open_failures += 1
                if not down_logged:
                    down_logged = True
                    self.log.warning("can_bus_open_failed", bus=self.name, error=f"{type(err).__name__}: {err}")
                await asyncio.sleep(backoff.next_delay())
                continue
            self.stats.opens += 1
            if down_logged or self.stats.opens > 1:
                self.log.info("can_bus_reopened", bus=self.name, opens=self.stats.opens)
            down_logged = False
            session = _Session(bus=bus, failure=loop.create_future())
            reason = await self._serve(session, loop)
            if session.frames:
                backoff.reset()
            self.log.warning("can_bus_down", bus=self.name, reason=reason)
            down_logged = True
            await asyncio.sleep(backoff.next_delay())

    async def _serve(self, session: _Session, loop: asyncio.AbstractEventLoop) -> str:
        """Run one session until its reader reports a failure; always closes the bus."""
        assert session.failure is not None
        reader = threading.Thread(target=self._read_loop, args=(session, loop),
                                  name=f"can-rx-{self.channel}", daemon=True)
        self._session = session
        self.opened.set()
        reader.start()
        heartbeat = asyncio.ensure_future(self._heartbeat_loop(session))
        try:
            return await session.failure
        finally:
            self._session = None
            self.opened.clear()
            heartbeat.cancel()
            session.stop.set()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._shutdown(session, reader)

    async def _shutdown(self, session: _Session, reader: threading.Thread) -> None:
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(None, _close_bus, session.bus, reader)
        try:
            await asyncio.wait_for(asyncio.shield(closing), RECV_POLL_S * 20)
        except asyncio.TimeoutError:
            self.log.warning("can_bus_close_slow", bus=self.name)

    def _open(self) -> can.BusABC:
        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel}
        if self.bitrate is not None:
            kwargs["bitrate"] = self.bitrate
        if self.interface == "virtual":
            kwargs["receive_own_messages"] = False
        return self._bus_factory(**kwargs)

    def close(self) -> None:
        """Release the writer thread (the ``run`` task, which closes the bus itself, is cancelled first)."""
        self._tx.shutdown(wait=False, cancel_futures=True)
        self._opener.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------ reading

    def _read_loop(self, session: _Session, loop: asyncio.AbstractEventLoop) -> None:
        """Reader thread: block in ``recv``, drain what else is queued, hand the batch to the loop.

        On a busy bus (the previous hand-over less than ``batch_window_s`` ago) the reader sleeps for
        the rest of the window and drains again, so hand-overs, loop wake-ups and the per-batch costs
        are paid once per window whatever the frame rate.
        """
        bus, stop = session.bus, session.stop
        recv = bus.recv
        window_s = self.settings.batch_window_s
        last_handover = 0.0
        try:
            while not stop.is_set():
                message = recv(RECV_POLL_S)
                if message is None:
                    continue
                batch = [message]
                _drain(recv, batch)
                if window_s > 0 and len(batch) < BATCH_MAX:
                    idle_s = time.monotonic() - last_handover
                    if idle_s < window_s:
                        stop.wait(window_s - idle_s)  # gather more of a busy bus (also ends at a close)
                        _drain(recv, batch)
                while not self._inflight.acquire(timeout=RECV_POLL_S):
                    if stop.is_set():
                        return
                try:
                    loop.call_soon_threadsafe(self._dispatch, session, batch)
                except RuntimeError:  # loop closed while shutting down
                    self._inflight.release()
                    return
                last_handover = time.monotonic()
        except Exception as err:  # library errors of any interface: the session ends, the bus reopens
            if not stop.is_set():
                try:
                    loop.call_soon_threadsafe(self._fail, session, f"receive failed: {type(err).__name__}: {err}")
                except RuntimeError:
                    pass

    def _fail(self, session: _Session, reason: str) -> None:
        if session.failure is not None and not session.failure.done():
            session.failure.set_result(reason)

    def _dispatch(self, session: _Session, batch: list[can.Message]) -> None:
        """Hand each frame to the handlers subscribed to its id (runs in the loop: the hot path).

        Latest-only handlers get, per id, the last frame of the batch; a frame for every-frame
        handlers first flushes the pending latest frames that came before it, so order holds.
        """
        self._inflight.release()
        routes = self.handlers
        stats = self.stats
        stats.batches += 1
        stats.frames_rx += len(batch)
        session.frames += len(batch)
        pending: dict[int, can.Message] = {}
        for message in batch:
            if message.is_error_frame:
                self._on_error_frame(session, message)
                continue
            arbitration_id = message.arbitration_id
            route = routes.get(arbitration_id)
            if route is None or message.is_remote_frame:
                stats.frames_unrouted += 1
                continue
            if route.every:
                if pending:
                    self._deliver_latest(pending)
                    pending = {}
                self._deliver(message, route.every)
            if route.latest:
                if arbitration_id in pending:
                    stats.frames_coalesced += 1
                    del pending[arbitration_id]  # re-insert: flush order follows the bus order
                pending[arbitration_id] = message
        if pending:
            self._deliver_latest(pending)

    def _deliver_latest(self, pending: dict[int, can.Message]) -> None:
        routes = self.handlers
        for arbitration_id, message in pending.items():
            route = routes.get(arbitration_id)
            if route is not None:  # a handler of this batch may have unsubscribed it
                self._deliver(message, route.latest)

    def _deliver(self, message: can.Message, handlers: tuple[FrameHandler, ...]) -> None:
        frame = CanFrame(message.arbitration_id, bytes(message.data), message.timestamp, message.is_extended_id)
        for handler in handlers:
            try:
                handler(frame)
            except Exception as err:  # a driver bug drops the frame, never the reader
                self.stats.handler_errors += 1
                self._log_error("can_handler_failed", arbitration_id=hex(message.arbitration_id),
                                error=f"{type(err).__name__}: {err}")

    def _on_error_frame(self, session: _Session, message: can.Message) -> None:
        self.stats.error_frames += 1
        if message.arbitration_id & CAN_ERR_BUSOFF:
            self.stats.bus_off += 1
            self.log.warning("can_bus_off", bus=self.name, bus_off=self.stats.bus_off)
            self._fail(session, "bus-off")
            return
        self._log_error("can_error_frame", error_class=hex(message.arbitration_id),
                        data=bytes(message.data).hex())

    def _log_error(self, event: str, **fields: Any) -> None:
        """Log the first error, then at most one summary per interval (a storm must not flood logs)."""
        reported = self._error_log.count()
        if reported:
            self.log.warning(event, bus=self.name, since_last_log=reported, error_frames=self.stats.error_frames,
                             handler_errors=self.stats.handler_errors, **fields)

    # ---------------------------------------------------------------------------- heartbeats

    def beat_now(self, beat: _Heartbeat) -> None:
        """Send one heartbeat right away (a node just armed); the periodic schedule goes on as it was."""
        if self._session is None:
            return
        frame = beat.factory(beat.counter)
        beat.counter = (beat.counter + 1) & 0xFFFFFFFF
        task = asyncio.ensure_future(self._send_beats([frame]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_beats(self, frames: list[CanFrame]) -> None:
        try:
            await self.write(frames)
            self.stats.heartbeats_tx += len(frames)
        except DeviceError as err:  # the reader notices a dead bus; keep the beat going meanwhile
            self._log_error("can_heartbeat_failed", error=str(err))

    async def _heartbeat_loop(self, session: _Session) -> None:
        """Send every armed heartbeat each period on an absolute schedule (no drift under load)."""
        interval = self.settings.heartbeat_interval_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            now = time.monotonic()
            frames = []
            for beat in list(self.heartbeats.values()):
                if beat.lease_until >= now:
                    frames.append(beat.factory(beat.counter))
                    beat.counter = (beat.counter + 1) & 0xFFFFFFFF
            if frames:
                await self._send_beats(frames)
            next_at += interval
            now = loop.time()
            if next_at < now:  # overran: skip missed beats instead of bursting them
                next_at = now + interval - ((now - next_at) % interval)
            await asyncio.sleep(next_at - now)


def _drain(recv: Callable[[float], can.Message | None], batch: list[can.Message]) -> None:
    """Append what the interface already holds to ``batch`` without blocking (up to ``BATCH_MAX``)."""
    while len(batch) < BATCH_MAX:
        message = recv(0)
        if message is None:
            return
        batch.append(message)


def _send_all(bus: can.BusABC, messages: list[can.Message]) -> None:
    for message in messages:
        bus.send(message, timeout=0.1)


def _shutdown_if_opened(opening: Future[can.BusABC]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().shutdown()


def _close_bus(bus: can.BusABC, reader: threading.Thread) -> None:
    reader.join(RECV_POLL_S * 10)
    try:
        bus.shutdown()
    except Exception:  # closing a failed bus may fail again; nothing left to do with it
        pass
