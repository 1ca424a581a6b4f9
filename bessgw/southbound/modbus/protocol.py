"""One Modbus TCP connection as a lean asyncio ``Protocol``: requests out, answers matched by transaction id.

Why not pymodbus' async client: it serialises every request behind a lock, builds PDU objects, re-scans
its framer buffer and awaits ``asyncio.wait_for`` (which up to Python 3.11 can swallow a cancellation);
at 2,000 polls/s that is most of the gateway's Python time. Here a request is one ``transport.write``,
one future and a place in a deadline queue; an answer is one header unpack and a dict lookup.

What the connection guarantees (everything above it, breaker and reconnection, is the endpoint's):

* several unit ids and several requests share the connection; each answer goes to the request with its
  transaction id, and at most ``max_in_flight`` requests wait for answers at once (more wait for a slot,
  within their own timeout) — a device that cannot take pipelined requests is run with ``1``;
* every request ends by its deadline with :class:`AnswerTimeout`, which says whether the connection
  answered anything else meanwhile (then only this request is slow; its late answer is recognised by its
  transaction id and dropped) or nothing (then the connection itself is presumed dead);
* bytes that break the protocol — a bad MBAP header, a length field outside 2..254, an answer to a
  transaction nobody sent, the wrong unit id — fail every waiting request with :class:`FrameError` and
  close the connection at once: the stream can no longer be trusted. The read buffer never holds more than
  one incomplete frame (< 260 bytes) between reads, whatever the peer sends;
* a closed connection fails every waiting request at once with :class:`ConnectionClosedError`, instead
  of leaving them to their timeouts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from bessgw.southbound.modbus.framing import MAX_LENGTH, MBAP, MBAP_SIZE, MIN_LENGTH, FrameError

#: answers to given-up transactions remembered, so a late answer is told from a protocol violation
ABANDONED_REMEMBERED = 256


class ConnectionClosedError(ConnectionError):
    """The connection closed (by the device, or by us after a violation) while a request waited."""


class AnswerTimeout(TimeoutError):
    """No answer by the request's deadline."""

    def __init__(self, connection_alive: bool) -> None:
        super().__init__("no answer before the deadline")
        #: whether the connection answered another request while this one waited
        self.connection_alive = connection_alive


def _expire(future: asyncio.Future[bytes], protocol: ModbusClientProtocol, answers_before: int) -> None:
    if not future.done():
        future.set_exception(AnswerTimeout(protocol.answers > answers_before))


def _expire_wait(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(AnswerTimeout(True))


class ModbusClientProtocol(asyncio.Protocol):
    """The client side of one Modbus TCP connection (see the module docstring for its guarantees)."""

    def __init__(
        self,
        max_in_flight: int = 1,
        on_violation: Callable[[FrameError], None] | None = None,
        on_late: Callable[[], None] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.max_in_flight = max_in_flight
        self.on_violation = on_violation
        self.on_late = on_late
        self.transport: asyncio.Transport | None = None
        self.closed: BaseException | None = None  #: why the connection ended, once it has
        self.answers = 0  #: answers matched to a waiting request
        self.late_answers = 0  #: answers to requests that had already timed out or been cancelled
        self._pending: dict[int, tuple[int, asyncio.Future[bytes]]] = {}  # tid -> (unit id, future)
        self._abandoned: dict[int, None] = {}  # insertion-ordered set, bounded
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._buffer = bytearray()
        self._tid = 0
        #: (deadline, future, answers when sent) in send order, behind one timer (see :meth:`_arm`)
        self._deadlines: deque[tuple[float, asyncio.Future[bytes], int]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "connection closed by the device" if exc is None else f"connection lost: {exc}"
        self._close(ConnectionClosedError(reason))
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closed is not None:
            return
        buffer = self._buffer
        if not buffer and len(data) >= MBAP_SIZE:  # the usual case: exactly one whole answer
            tid, protocol_id, length, unit_id = MBAP.unpack_from(data)
            if protocol_id == 0 and MIN_LENGTH <= length <= MAX_LENGTH and len(data) == 6 + length:
                self._answer(tid, unit_id, data[MBAP_SIZE:])
                return
        buffer += data
        size = len(buffer)
        offset = 0
        while size - offset >= MBAP_SIZE:
            tid, protocol_id, length, unit_id = MBAP.unpack_from(buffer, offset)
            if protocol_id != 0 or not MIN_LENGTH <= length <= MAX_LENGTH:
                self.violation(FrameError(f"not a Modbus TCP header (protocol id {protocol_id}, length {length})"))
                return
            end = offset + 6 + length
            if end > size:
                break  # a partial frame: wait for the rest (it is at most 259 bytes)
            pdu = bytes(buffer[offset + MBAP_SIZE:end])
            offset = end
            self._answer(tid, unit_id, pdu)
            if self.closed is not None:
                return
        if offset:
            del buffer[:offset]

    # ---------------------------------------------------------------------------------- requests

    @property
    def open(self) -> bool:
        return self.transport is not None and self.closed is None

    @property
    def in_flight(self) -> int:
        """Requests sent and waiting for their answers."""
        return len(self._pending)

    @property
    def waiting_for_slot(self) -> int:
        """Requests not sent yet because ``max_in_flight`` are out."""
        return sum(not waiter.done() for waiter in self._slot_waiters)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete answer held until the rest arrives (never more than one frame's)."""
        return len(self._buffer)

    async def request(self, unit_id: int, build: Callable[[int], bytes], timeout_s: float) -> bytes:
        """Send ``build(transaction id)`` and return the answer's PDU.

        Raises :class:`AnswerTimeout`, :class:`ConnectionClosedError` or :class:`FrameError`; a cancelled
        caller's transaction is abandoned (its late answer is dropped).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if len(self._pending) >= self.max_in_flight:
            await self._wait_for_slot(loop, deadline)
        if self.closed is not None or self.transport is None:
            raise self.closed or ConnectionClosedError("not connected")
        tid = self._next_tid()
        frame = build(tid)  # may raise ValueError: nothing is registered yet
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending[tid] = (unit_id, future)
        timer = self._arm(loop, deadline, future)
        try:
            self.transport.write(frame)
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if self._pending.pop(tid, None) is not None:  # never answered: timed out, cancelled, failed
                self._abandon(tid)
            if self._slot_waiters:
                self._wake_one()

    def violation(self, err: FrameError) -> None:
        """The peer broke the protocol: count it, fail every waiting request with ``err``, close now."""
        if self.closed is not None:
            return
        if self.on_violation is not None:
            self.on_violation(err)
        self._close(err)

    def close(self) -> None:
        """Close the connection; waiting requests fail with :class:`ConnectionClosedError`."""
        self._close(ConnectionClosedError("connection closed by the gateway"))

    # ---------------------------------------------------------------------------------- internals

    def _answer(self, tid: int, unit_id: int, pdu: bytes) -> None:
        entry = self._pending.pop(tid, None)
        if entry is None:
            if tid in self._abandoned:
                del self._abandoned[tid]
                self.late_answers += 1
                if self.on_late is not None:
                    self.on_late()
                return
            self.violation(FrameError(f"answer with transaction id {tid}, which no request is waiting for"))
            return
        wanted_unit, future = entry
        if wanted_unit and unit_id != wanted_unit:
            err = FrameError(f"answer from unit id {unit_id} to a request for unit id {wanted_unit}")
            if not future.done():
                future.set_exception(err)
            self.violation(err)
            return
        self.answers += 1
        if not future.done():
            future.set_result(pdu)

    def _arm(
        self, loop: asyncio.AbstractEventLoop, deadline: float, future: asyncio.Future[bytes]
    ) -> asyncio.TimerHandle | None:
        """Make ``future`` fail with :class:`AnswerTimeout` at ``deadline``.

        Requests on a connection share one timeout, so their deadlines come in send order: they queue
        behind one timer that fires at the oldest deadline, instead of one timer per request (a timer
        per request was a tenth of the poll path's Python time). A request whose deadline is earlier
        than the last queued one (it waited for an in-flight slot) gets a timer of its own, returned.
        """
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():  # answered ones at the head: forget them now
            deadlines.popleft()
        if deadlines and deadline < deadlines[-1][0]:
            return loop.call_at(deadline, _expire, future, self, self.answers)
        deadlines.append((deadline, future, self.answers))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire_due, loop)
        return None

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        deadlines = self._deadlines
        now = loop.time()
        while deadlines:
            deadline, future, answers_before = deadlines[0]
            if not future.done():
                if deadline > now:
                    self._timer = loop.call_at(deadline, self._expire_due, loop)
                    return
                future.set_exception(AnswerTimeout(self.answers > answers_before))
            deadlines.popleft()

    def _next_tid(self) -> int:
        tid = self._tid
        while True:
            tid = tid + 1 if tid < 0xFFFF else 1
            if tid not in self._pending and tid not in self._abandoned:
                self._tid = tid
                return tid

    def _abandon(self, tid: int) -> None:
        abandoned = self._abandoned
        abandoned[tid] = None
        if len(abandoned) > ABANDONED_REMEMBERED:
            del abandoned[next(iter(abandoned))]

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        while len(self._pending) >= self.max_in_flight and self.closed is None:
            waiter: asyncio.Future[None] = loop.create_future()
            self._slot_waiters.append(waiter)
            timer = loop.call_at(deadline, _expire_wait, waiter)
            try:
                await waiter
            except BaseException:  # timed out or cancelled: leave the queue, pass on a slot we were given
                if waiter in self._slot_waiters:
                    self._slot_waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake_one()
                raise
            finally:
                timer.cancel()

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close(self, exc: BaseException) -> None:
        if self.closed is not None:
            return
        self.closed = exc
        pending, self._pending = self._pending, {}
        for _unit, future in pending.values():
            if not future.done():
                future.set_exception(exc)
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # it sees ``closed`` and raises it
        self._buffer.clear()
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            if isinstance(exc, FrameError):
                self.transport.abort()  # nothing more from this stream is worth reading
            else:
                self.transport.close()
