"""One Modbus TCP endpoint (host:port): the connection, its timeouts, reconnection and circuit breaker.

Every unit id behind the endpoint shares this one connection (Modbus TCP gateways and many controllers
accept only one or two clients). Framing and transaction matching are :mod:`.protocol`'s and
:mod:`.framing`'s; everything around them is here:

* the connection is opened lazily by a request, no sooner than a jittered exponential backoff allows
  after a failure — so a dead container costs its unit a fast :class:`DeviceUnavailableError`, not a
  connect timeout per poll;
* every request is bounded by ``request_timeout_s``. After a timeout the connection is dropped if it has
  answered nothing since the request was sent (it is dead or wedged); if it answered other requests
  meanwhile, only this device is slow, its late answer is recognised by its transaction id and dropped,
  and the other units behind the endpoint keep their connection;
* a :class:`CircuitBreaker` fails requests fast after repeated failures;
* bytes that break the protocol (garbage, a bad length, an unknown transaction id, a PDU that does not
  decode) are counted as ``undecodable``, fail the request and drop the connection;
* exception responses and protocol errors become :mod:`bessgw.errors` types here and nowhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from bessgw.backoff import Backoff
from bessgw.compat import timeout
from bessgw.config import ModbusSettings
from bessgw.errors import DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError
from bessgw.plugin.roles import Logger
from bessgw.southbound.modbus import framing
from bessgw.southbound.modbus.breaker import CircuitBreaker
from bessgw.southbound.modbus.framing import ExceptionResponse, FrameError
from bessgw.southbound.modbus.protocol import AnswerTimeout, ConnectionClosedError, ModbusClientProtocol
from bessgw.timing import DurationHistogram

T = TypeVar("T")

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
    undecodable: int = 0  #: protocol violations: garbage, bad lengths, unknown transaction ids, bad PDUs
    failures: int = 0  #: requests that failed on the connection (closed, refused, protocol error)
    late_answers: int = 0  #: answers that came after their request had timed out (dropped by transaction id)


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
        self._protocol: ModbusClientProtocol | None = None
        self._connect_lock = asyncio.Lock()
        self._next_connect_at = 0.0
        self._down_reason = ""  # logged once per outage

    # ------------------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.open

    async def _ensure_connected(self) -> ModbusClientProtocol:
        protocol = self._protocol
        if protocol is not None and protocol.open:
            return protocol
        async with self._connect_lock:
            protocol = self._protocol
            if protocol is not None and protocol.open:
                return protocol
            self._drop(protocol)
            wait_s = self._next_connect_at - time.monotonic()
            if wait_s > 0:
                raise DeviceUnavailableError(
                    f"modbus {self.name}: not connected, next attempt in {wait_s:.1f} s"
                )
            loop = asyncio.get_running_loop()
            factory = partial(ModbusClientProtocol, self.settings.max_in_flight, self._on_undecodable, self._on_late)
            try:
                async with timeout(self.settings.connect_timeout_s):
                    _transport, protocol = await loop.create_connection(factory, self.host, self.port)
            except (TimeoutError, OSError) as err:
                self.log.debug("modbus_connect_error", endpoint=self.name, error=repr(err))
                self.stats.connect_failures += 1
                delay = self.backoff.next_delay()
                self._next_connect_at = time.monotonic() + delay
                self._mark_down(f"cannot connect to {self.name}")
                raise DeviceUnavailableError(
                    f"modbus {self.name}: connection refused or timed out (retry in {delay:.1f} s)"
                ) from err
            self.stats.connects += 1
            self.backoff.reset()
            self._protocol = protocol
            if self._down_reason:
                self.log.info("modbus_endpoint_up", endpoint=self.name, was=self._down_reason)
                self._down_reason = ""
            return protocol

    def _on_undecodable(self, err: FrameError) -> None:
        self.stats.undecodable += 1
        self._mark_down(f"undecodable response: {err}")

    def _on_late(self) -> None:
        self.stats.late_answers += 1

    def _mark_down(self, reason: str) -> None:
        if not self._down_reason:
            self.log.warning("modbus_endpoint_down", endpoint=self.name, reason=reason)
            self._down_reason = reason

    def _drop(self, protocol: ModbusClientProtocol | None) -> None:
        """Forget ``protocol``'s connection (if it is still ours); the next request reconnects."""
        if protocol is None:
            return
        if protocol is self._protocol:
            self._protocol = None
            self.stats.disconnects += 1
        protocol.close()

    async def close(self) -> None:
        self._drop(self._protocol)

    # -------------------------------------------------------------------------------- requests

    async def _call(
        self, what: tuple[str, int, int], device_id: int, build: Callable[[int], bytes], decode: Callable[[bytes], T]
    ) -> T:
        """Send one request through breaker, connection and timeout; return the decoded answer.

        ``what`` is (verb, address, count), formatted only into an error's message.
        """
        if not self.breaker.allow():
            self.stats.breaker_rejections += 1
            raise DeviceUnavailableError(
                f"modbus {self.name}: circuit breaker open after {self.breaker.consecutive_failures}"
                f" failures (retry in {self.breaker.retry_in_s():.1f} s)"
            )
        protocol = self._protocol
        if protocol is None or protocol.closed is not None:  # (re)connect; else no coroutine spent on it
            try:
                protocol = await self._ensure_connected()
            except DeviceUnavailableError:
                self.breaker.cancel_trial()  # connecting is paced by the backoff, not counted by the breaker
                raise
        self.stats.requests += 1
        sent_at = time.monotonic()
        try:
            pdu = await protocol.request(device_id, build, self.settings.request_timeout_s)
            result = decode(pdu)
        except ExceptionResponse as err:
            verb, address, count = what
            self.breaker.record_success()  # the device answered: the link is fine
            self.stats.exception_responses += 1
            raise DeviceProtocolError(
                f"modbus {self.name} unit {device_id}: {verb} {address}+{count} answered exception code {err.code}"
                f" ({EXCEPTION_NAMES.get(err.code, 'unknown exception')})",
                code=err.code,
            ) from err
        except AnswerTimeout as err:
            self.stats.timeouts += 1
            self.breaker.record_failure()
            if not err.connection_alive:
                self._drop(protocol)  # nothing came back at all: the connection is dead or wedged
            verb, address, count = what
            raise DeviceTimeoutError(
                f"modbus {self.name} unit {device_id}: no answer to {verb} {address}+{count} within"
                f" {self.settings.request_timeout_s:g} s"
            ) from err
        except (FrameError, ConnectionClosedError, OSError) as err:
            if isinstance(err, FrameError):
                protocol.violation(err)  # counted once, closes the connection (no-op if it did already)
                reason = f"undecodable response ({err})"
            elif isinstance(err, ConnectionClosedError):
                reason = str(err)
                self._mark_down(reason)
            else:
                reason = f"{type(err).__name__}: {err}"
                self._mark_down(reason)
            self.stats.failures += 1
            self.breaker.record_failure()
            self._drop(protocol)
            verb, address, count = what
            raise DeviceUnavailableError(
                f"modbus {self.name} unit {device_id}: {verb} {address}+{count} failed: {reason}"
            ) from err
        finally:
            self.latency.observe(time.monotonic() - sent_at)
        self.breaker.record_success()
        return result

    async def read_holding_registers(self, device_id: int, address: int, count: int) -> list[int]:
        """Read ``count`` holding registers (function 3); the answer's length is checked."""
        registers = await self._call(
            ("read", address, count),
            device_id,
            partial(framing.read_request, unit_id=device_id, address=address, count=count),
            partial(framing.read_response, count=count),
        )
        self.stats.reads += 1
        self.stats.registers_read += count
        return registers

    async def write_registers(self, device_id: int, address: int, values: Sequence[int]) -> None:
        """Write holding registers with function 16; the answer must echo address and count."""
        payload = [int(v) for v in values]
        await self._call(
            ("write", address, len(payload)),
            device_id,
            partial(framing.write_request, unit_id=device_id, address=address, values=payload),
            partial(framing.write_response, address=address, count=len(payload)),
        )
        self.stats.writes += 1
