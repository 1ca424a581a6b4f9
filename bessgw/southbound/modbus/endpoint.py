"""One Modbus TCP endpoint (host:port): the connection, its timeouts, reconnection and circuit breaker.

Every unit id behind the endpoint shares this one connection (Modbus TCP gateways and many controllers
accept only one or two clients). pymodbus does the framing; everything around it is ours:

* pymodbus' own reconnection is off (``reconnect_delay=0``, ``retries=0``): a dropped connection is
  noticed on the next request and re-established here, lazily, no sooner than a jittered exponential
  backoff allows — so a dead container costs its unit a fast :class:`DeviceUnavailableError`, not a
  connect timeout per poll;
* every request is bounded by ``request_timeout_s``; after a timeout the connection is dropped, because
  a late answer would otherwise be read as the answer to the next request;
* a :class:`CircuitBreaker` fails requests fast after repeated timeouts;
* pymodbus exceptions and exception responses become :mod:`bessgw.errors` types here and nowhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from bessgw.backoff import Backoff
from bessgw.compat import timeout
from bessgw.config import ModbusSettings
from bessgw.errors import DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError
from bessgw.plugin.roles import Logger
from bessgw.southbound.modbus.breaker import CircuitBreaker
from bessgw.timing import DurationHistogram

#: Modbus exception codes, for messages an engineer can act on
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def _guard_decoding(client: AsyncModbusTcpClient, on_error: Callable[[Exception], None]) -> None:
    """Turn pymodbus failing to decode a response into a failed request instead of a traceback.

    pymodbus decodes inside ``data_received``; a response it cannot decode (garbage, a function code it
    does not know) raises there, asyncio logs "Fatal error: protocol.data_received() call failed" with
    a traceback and the request waits for its timeout. Here the bytes are dropped, the waiting request
    fails at once with a ``ModbusIOException`` (mapped to ``DeviceUnavailableError`` and a reconnect,
    since the stream's framing can no longer be trusted), and ``on_error`` counts it.
    """
    manager = client.ctx
    decode = manager.callback_data

    def callback_data(data: bytes, addr: tuple | None = None) -> int:
        try:
            return decode(data, addr=addr)
        except Exception as err:  # device bytes pymodbus cannot decode: the device boundary
            future = manager.response_future
            if not future.done():
                future.set_exception(ModbusIOException(f"undecodable response ({type(err).__name__}: {err})"))
            on_error(err)
            return len(data)

    manager.callback_data = callback_data  # type: ignore[method-assign]


def _cancel_requests(task: asyncio.Task[Any] | None) -> int:
    """How many cancellations of ``task`` are pending (0 where Python < 3.11 cannot tell)."""
    cancelling = getattr(task, "cancelling", None)
    return cancelling() if cancelling is not None else 0


def _honour_swallowed_cancel(task: asyncio.Task[Any] | None, before: int) -> None:
    """Re-raise a cancellation that pymodbus swallowed.

    pymodbus awaits ``asyncio.wait_for``, which (up to Python 3.11) returns the result instead of
    raising when the answer and a cancellation arrive in the same loop iteration: the cancellation is
    lost and the unit task would run on after shutdown cancelled it. The task still counts the request,
    so compare and raise.
    """
    if _cancel_requests(task) > before:
        raise asyncio.CancelledError("cancelled while pymodbus was completing a call")


@dataclass
class EndpointStats:
    """Counters for tests, metrics and the benchmark."""

    requests: int = 0
    reads: int = 0
    writes: int = 0
    registers_read: int = 0
    timeouts: int = 0
    exception_responses: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    breaker_rejections: int = 0
    undecodable: int = 0  #: responses pymodbus could not frame or decode (garbage on the wire)
    failures: int = 0  #: requests that failed on the connection (closed, refused, protocol error)


class ModbusEndpoint:
    """The shared connection to one ``host:port``."""

    def __init__(self, host: str, port: int, settings: ModbusSettings, log: Logger) -> None:
        self.host = host
        self.port = port
        self.settings = settings
        self.log = log
        self.name = f"{host}:{port}"
        self.stats = EndpointStats()
        self.latency = DurationHistogram()  #: of every request sent, answered or not
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_open_s)
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self.users = 0  # units holding a link to this endpoint
        self._client: AsyncModbusTcpClient | None = None
        self._connect_lock = asyncio.Lock()
        self._next_connect_at = 0.0
        self._down_reason = ""  # logged once per outage
        #: the timeout of every request waiting for an answer -> the client it was sent on
        self._inflight: dict[Any, AsyncModbusTcpClient] = {}
        self._cut: set[Any] = set()  # timeouts fired early because their connection closed

    # ------------------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is not None and client.connected:
            return client
        async with self._connect_lock:
            client = self._client
            if client is not None and client.connected:
                return client
            self._drop()
            wait_s = self._next_connect_at - time.monotonic()
            if wait_s > 0:
                raise DeviceUnavailableError(
                    f"modbus {self.name}: not connected, next attempt in {wait_s:.1f} s"
                )
            holder: list[AsyncModbusTcpClient] = []
            client = AsyncModbusTcpClient(
                self.host,
                port=self.port,
                # no pymodbus timer: ours bound every connect and request, and without one pymodbus'
                # asyncio.wait_for is a plain await (one timer less per request, no lost cancellation)
                timeout=None,  # type: ignore[arg-type]
                retries=0,
                reconnect_delay=0,
                reconnect_delay_max=0,
                trace_connect=lambda up: self._on_connection_change(up, holder[0] if holder else None),
            )
            holder.append(client)
            _guard_decoding(client, self._on_undecodable)
            ok = False
            task = asyncio.current_task()
            cancels_before = _cancel_requests(task)
            try:
                async with timeout(self.settings.connect_timeout_s):
                    ok = await client.connect()
                _honour_swallowed_cancel(task, cancels_before)
            except TimeoutError:
                ok = False
            except (OSError, ModbusException) as err:
                self.log.debug("modbus_connect_error", endpoint=self.name, error=repr(err))
                ok = False
            except BaseException:  # cancelled: close what was opened, then go
                ok = False
                raise
            finally:
                if not ok:
                    client.close()
            if not ok:
                self.stats.connect_failures += 1
                delay = self.backoff.next_delay()
                self._next_connect_at = time.monotonic() + delay
                self._mark_down(f"cannot connect to {self.name}")
                raise DeviceUnavailableError(
                    f"modbus {self.name}: connection refused or timed out (retry in {delay:.1f} s)"
                )
            self.stats.connects += 1
            self.backoff.reset()
            self._client = client
            if self._down_reason:
                self.log.info("modbus_endpoint_up", endpoint=self.name, was=self._down_reason)
                self._down_reason = ""
            return client

    def _on_connection_change(self, connected: bool, client: AsyncModbusTcpClient | None) -> None:
        """pymodbus noticed a connection open or close. On close, end the requests waiting on that
        connection now (pymodbus would leave them waiting for their timeout): the unit goes stale at once."""
        if connected or not self._inflight:
            return
        now = asyncio.get_running_loop().time()
        for deadline, used in self._inflight.items():
            if used is client and deadline not in self._cut:
                self._cut.add(deadline)
                deadline.reschedule(now)

    def _on_undecodable(self, err: Exception) -> None:
        self.stats.undecodable += 1
        self._mark_down(f"undecodable response: {err}")

    def _mark_down(self, reason: str) -> None:
        if not self._down_reason:
            self.log.warning("modbus_endpoint_down", endpoint=self.name, reason=reason)
            self._down_reason = reason

    def _drop(self) -> None:
        """Forget the connection; the next request reconnects (subject to the backoff)."""
        client, self._client = self._client, None
        if client is not None:
            self.stats.disconnects += 1
            client.close()

    async def close(self) -> None:
        self._drop()

    # -------------------------------------------------------------------------------- requests

    async def _call(
        self, what: str, device_id: int, request: Callable[[AsyncModbusTcpClient], Awaitable[Any]]
    ) -> Any:
        """Send one request through breaker, connection and timeout; return the pymodbus response."""
        if not self.breaker.allow():
            self.stats.breaker_rejections += 1
            raise DeviceUnavailableError(
                f"modbus {self.name}: circuit breaker open after {self.breaker.consecutive_failures}"
                f" failures (retry in {self.breaker.retry_in_s():.1f} s)"
            )
        try:
            client = await self._ensure_connected()
        except DeviceUnavailableError:
            self.breaker.cancel_trial()  # connecting is paced by the backoff, not counted by the breaker
            raise
        self.stats.requests += 1
        deadline = None
        task = asyncio.current_task()
        cancels_before = _cancel_requests(task)
        sent_at = time.monotonic()
        try:
            async with timeout(self.settings.request_timeout_s) as deadline:
                self._inflight[deadline] = client
                response = await request(client)
        except TimeoutError as err:
            if deadline in self._cut:
                self.breaker.record_failure()
                self._drop()
                self._mark_down("connection closed by the device")
                raise DeviceUnavailableError(
                    f"modbus {self.name} unit {device_id}: connection closed during {what}"
                ) from err
            self.stats.timeouts += 1
            self.breaker.record_failure()
            self._drop()  # a late answer must not be taken for the next request's
            raise DeviceTimeoutError(
                f"modbus {self.name} unit {device_id}: no answer to {what} within"
                f" {self.settings.request_timeout_s:g} s"
            ) from err
        except (ModbusException, OSError) as err:
            self.stats.failures += 1
            self.breaker.record_failure()
            self._drop()
            self._mark_down(f"{type(err).__name__}: {err}")
            raise DeviceUnavailableError(
                f"modbus {self.name} unit {device_id}: {what} failed: {err}"
            ) from err
        finally:
            self.latency.observe(time.monotonic() - sent_at)
            self._inflight.pop(deadline, None)
            self._cut.discard(deadline)
        _honour_swallowed_cancel(task, cancels_before)
        self.breaker.record_success()
        if response.isError():
            code = getattr(response, "exception_code", None)
            self.stats.exception_responses += 1
            name = EXCEPTION_NAMES.get(code, "unknown exception") if code is not None else "error response"
            raise DeviceProtocolError(
                f"modbus {self.name} unit {device_id}: {what} answered exception code {code} ({name})",
                code=code,
            )
        return response

    async def read_holding_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers; the answer's length is checked."""
        what = f"read {address}+{count}"
        response = await self._call(
            what, device_id, lambda c: c.read_holding_registers(address, count=count, device_id=device_id)
        )
        self.stats.reads += 1
        registers = list(getattr(response, "registers", ()) or ())
        if len(registers) != count:
            raise DeviceProtocolError(
                f"modbus {self.name} unit {device_id}: {what} returned {len(registers)} registers"
            )
        self.stats.registers_read += count
        return registers

    async def write_registers(self, device_id: int, address: int, values: Sequence[int]) -> None:
        """Write holding registers with function 16."""
        payload = [int(v) for v in values]
        await self._call(
            f"write {address}+{len(payload)}",
            device_id,
            lambda c: c.write_registers(address, payload, device_id=device_id),
        )
        self.stats.writes += 1
