"""The Modbus TCP connection against peers that misbehave on the wire, and against pymodbus' real server.

Each "device" here is a raw asyncio server on 127.0.0.1 that answers exactly as a test needs: in
pieces, with garbage, with a huge length field, with the wrong transaction or unit id, closing mid-frame,
out of order, or late. The endpoint must turn every one into a prompt, named ``DeviceError`` (never a
hang to the timeout, a traceback or a growing buffer) and keep serving the well-behaved requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable

import pytest

from bessgw.config import ModbusSettings
from bessgw.errors import DeviceTimeoutError, DeviceUnavailableError
from bessgw.southbound.modbus.endpoint import ModbusEndpoint
from bessgw.testing import RecordingLog, wait_until
from tests.plugins.vendor_a.harness import simulator

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

#: a request timeout long enough that a request left to time out shows up as the test's own timeout
SLOW = ModbusSettings(request_timeout_s=30.0, connect_timeout_s=2.0, reconnect_min_s=0.05, reconnect_max_s=0.1)

Request = tuple[int, int, int, int]  # transaction id, unit id, address, count
Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def answer(tid: int, unit_id: int, registers: list[int], *, protocol_id: int = 0) -> bytes:
    """A well-formed function 3 answer (MBAP + PDU)."""
    pdu = bytes([3, 2 * len(registers)]) + struct.pack(f">{len(registers)}H", *registers)
    return struct.pack(">HHHB", tid, protocol_id, len(pdu) + 1, unit_id) + pdu


class RawDevice:
    """A Modbus TCP "device" that parses requests properly and answers through ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawDevice:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                tid, _pid, length, unit_id = struct.unpack(">HHHB", await reader.readexactly(7))
                body = await reader.readexactly(length - 1)
                request = (tid, unit_id, *struct.unpack(">HH", body[1:5]))
                self.requests.append(request)
                asyncio.get_running_loop().create_task(self._answer(request, writer))
        writer.close()

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await self.handler(request, writer)
            await writer.drain()


def endpoint_for(device: RawDevice, settings: ModbusSettings = SLOW) -> ModbusEndpoint:
    return ModbusEndpoint("127.0.0.1", device.port, settings, RecordingLog())


def run(coro: Awaitable[None], caplog: pytest.LogCaptureFixture, timeout_s: float = 10.0) -> None:
    """Run bounded, and fail on any traceback asyncio or a library logged meanwhile."""

    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout_s)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(bounded())
    assert not [r for r in caplog.records if r.exc_info or "exception was never retrieved" in r.getMessage()]


def test_an_answer_in_pieces_is_reassembled(caplog):
    """Half an answer, then (once the gateway holds it) the rest: one correct result, nothing lost."""
    release = asyncio.Event()

    async def in_pieces(request: Request, writer: asyncio.StreamWriter) -> None:
        tid, unit_id, _address, count = request
        frame = answer(tid, unit_id, list(range(count)))
        writer.write(frame[:5])  # not even a whole header
        await release.wait()
        writer.write(frame[5:])

    async def scenario() -> None:
        async with RawDevice(in_pieces) as device:
            endpoint = endpoint_for(device)
            try:
                read = asyncio.create_task(endpoint.read_holding_registers(1, 100, 10))
                await wait_until(lambda: endpoint._protocol is not None and endpoint._protocol.buffered == 5, 5.0)
                release.set()
                assert await read == list(range(10))
                assert endpoint._protocol.buffered == 0 and endpoint.stats.undecodable == 0
            finally:
                await endpoint.close()

    run(scenario(), caplog)


def test_several_answers_in_one_segment_each_reach_their_request(caplog):
    """Answers for several requests arriving together (and out of order) are split and matched by id."""
    held: list[Request] = []
    writers: list[asyncio.StreamWriter] = []

    async def all_at_once(request: Request, writer: asyncio.StreamWriter) -> None:
        held.append(request)
        writers.append(writer)
        if len(held) == 3:  # one write with the three answers, in reverse order
            writer.write(b"".join(answer(tid, unit, [unit] * count) for tid, unit, _a, count in reversed(held)))

    async def scenario() -> None:
        async with RawDevice(all_at_once) as device:
            endpoint = endpoint_for(device, SLOW.model_copy(update={"max_in_flight": 3}))
            try:
                values = await asyncio.gather(*(endpoint.read_holding_registers(unit, 0, 2) for unit in (1, 2, 3)))
                assert values == [[1, 1], [2, 2], [3, 3]]
                assert endpoint.stats.connects == 1
            finally:
                await endpoint.close()

    run(scenario(), caplog)


@pytest.mark.parametrize(
    ("bad_frame", "why"),
    [
        (lambda tid, unit: answer(tid, unit, [1, 2], protocol_id=7), "protocol id 7"),
        (lambda tid, unit: struct.pack(">HHHB", tid, 0, 0xFFFF, unit) + b"\xde\xad" * 64, "length 65535"),
        (lambda tid, unit: struct.pack(">HHHB", tid, 0, 1, unit) + b"\x03", "length 1"),
        (lambda tid, unit: answer(tid + 1, unit, [1, 2]), "no request is waiting for"),
        (lambda tid, unit: answer(tid, unit + 1, [1, 2]), "to a request for unit id"),
        (lambda tid, unit: answer(tid, unit, [1]), "byte count 2 for 2 registers"),
    ],
    ids=["protocol-id", "huge-length", "short-length", "wrong-transaction-id", "wrong-unit-id", "short-answer"],
)
def test_an_answer_that_breaks_the_protocol_fails_at_once_and_drops_the_connection(caplog, bad_frame, why):
    """Not a timeout (the request timeout is 30 s), not a traceback: a counted, named failure, and the
    next request gets a fresh connection."""
    answers = iter([bad_frame, lambda tid, unit: answer(tid, unit, [7, 8])])

    async def once_bad(request: Request, writer: asyncio.StreamWriter) -> None:
        tid, unit_id, _address, _count = request
        writer.write(next(answers)(tid, unit_id))
        if why == "length 65535":  # keep streaming junk: the gateway must stop reading, not buffer it
            for _ in range(64):
                writer.write(b"\xff" * 4096)
                await writer.drain()

    async def scenario() -> None:
        async with RawDevice(once_bad) as device:
            endpoint = endpoint_for(device)
            try:
                with pytest.raises(DeviceUnavailableError, match="undecodable response") as caught:
                    await endpoint.read_holding_registers(1, 100, 2)
                assert why in str(caught.value)
                assert endpoint.stats.undecodable == 1 and endpoint.stats.timeouts == 0
                assert not endpoint.connected
                assert await endpoint.read_holding_registers(1, 100, 2) == [7, 8]
                assert endpoint.stats.connects == 2 and device.connections == 2
                assert endpoint.log.named("modbus_endpoint_down")
            finally:
                await endpoint.close()

    run(scenario(), caplog)


def test_a_peer_closing_mid_frame_fails_the_request_at_once(caplog):
    closes = 0

    async def close_mid_frame(request: Request, writer: asyncio.StreamWriter) -> None:
        nonlocal closes
        tid, unit_id, _address, count = request
        frame = answer(tid, unit_id, [5] * count)
        if closes == 0:
            closes += 1
            writer.write(frame[:9])
            await writer.drain()
            writer.close()
        else:
            writer.write(frame)

    async def scenario() -> None:
        async with RawDevice(close_mid_frame) as device:
            endpoint = endpoint_for(device)
            try:
                with pytest.raises(DeviceUnavailableError, match="connection closed by the device"):
                    await endpoint.read_holding_registers(1, 100, 3)
                assert endpoint.stats.failures == 1 and endpoint.stats.timeouts == 0
                assert await endpoint.read_holding_registers(1, 100, 3) == [5, 5, 5]
                assert endpoint.stats.connects == 2
            finally:
                await endpoint.close()

    run(scenario(), caplog)


def test_in_flight_requests_are_bounded(caplog):
    """With max_in_flight 2, a device that holds its answers sees 2 requests, never more; the rest wait
    (within their timeout) and go out as answers free the slots."""
    release = asyncio.Event()

    async def hold_until_released(request: Request, writer: asyncio.StreamWriter) -> None:
        tid, unit_id, _address, count = request
        await release.wait()
        writer.write(answer(tid, unit_id, [unit_id] * count))

    async def scenario() -> None:
        async with RawDevice(hold_until_released) as device:
            endpoint = endpoint_for(device, SLOW.model_copy(update={"max_in_flight": 2}))
            try:
                reads = [asyncio.create_task(endpoint.read_holding_registers(unit, 0, 1)) for unit in range(1, 7)]
                await wait_until(lambda: len(device.requests) == 2, 5.0)
                protocol = endpoint._protocol
                await wait_until(lambda: protocol.waiting_for_slot == 4, 5.0)
                assert len(device.requests) == 2 and protocol.in_flight == 2
                release.set()
                assert await asyncio.gather(*reads) == [[unit] for unit in range(1, 7)]
                assert len(device.requests) == 6 and protocol.in_flight == 0 and protocol.waiting_for_slot == 0
            finally:
                await endpoint.close()

    run(scenario(), caplog)


def test_a_slow_unit_id_times_out_alone_and_its_late_answer_is_dropped(caplog):
    """Two unit ids behind one (pipelining) Modbus gateway; unit 2 stops answering in time. Its request
    times out, unit 1 keeps being answered on the same connection meanwhile, and unit 2's late answer is
    recognised by its transaction id and dropped — not read as unit 1's."""
    late = asyncio.Event()

    async def unit_2_is_late(request: Request, writer: asyncio.StreamWriter) -> None:
        tid, unit_id, _address, count = request
        if unit_id == 2:
            await late.wait()
        writer.write(answer(tid, unit_id, [unit_id] * count))

    async def scenario() -> None:
        # long enough that unit 1's first answer surely comes before unit 2's deadline, even on a loaded machine
        settings = SLOW.model_copy(update={"request_timeout_s": 1.0, "max_in_flight": 4})
        async with RawDevice(unit_2_is_late) as device:
            endpoint = endpoint_for(device, settings)
            try:
                slow = asyncio.create_task(endpoint.read_holding_registers(2, 0, 2))
                answered = 0
                while not slow.done():  # bounded by the 1 s request timeout of ``slow``
                    assert await endpoint.read_holding_registers(1, 0, 2) == [1, 1]
                    answered += 1
                with pytest.raises(DeviceTimeoutError, match=r"unit 2: no answer to read 0\+2 within 1 s"):
                    await slow
                assert answered >= 1 and endpoint.connected and endpoint.stats.disconnects == 0
                late.set()
                await wait_until(lambda: endpoint.stats.late_answers == 1, 5.0)
                assert await endpoint.read_holding_registers(1, 0, 2) == [1, 1]
                assert endpoint.stats.connects == 1 and endpoint.stats.undecodable == 0
            finally:
                await endpoint.close()

    run(scenario(), caplog)


def test_a_silent_connection_is_dropped_after_a_timeout(caplog):
    """Nothing answered at all: the connection is presumed dead and reopened for the next request."""
    answered = 0

    async def first_never(request: Request, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        tid, unit_id, _address, count = request
        answered += 1
        if answered > 1:
            writer.write(answer(tid, unit_id, [3] * count))

    async def scenario() -> None:
        async with RawDevice(first_never) as device:
            endpoint = endpoint_for(device, SLOW.model_copy(update={"request_timeout_s": 0.3}))
            try:
                with pytest.raises(DeviceTimeoutError):
                    await endpoint.read_holding_registers(1, 0, 1)
                assert not endpoint.connected and endpoint.stats.disconnects == 1
                assert await endpoint.read_holding_registers(1, 0, 1) == [3]
                assert endpoint.stats.connects == 2
            finally:
                await endpoint.close()

    run(scenario(), caplog)


def test_concurrent_requests_to_a_pymodbus_server_are_serialised_by_default(caplog):
    """pymodbus' own server (like many devices) answers only the first of several requests that arrive
    together; with the default max_in_flight of 1 every concurrent request still gets its answer."""

    async def scenario() -> None:
        async with simulator(1) as sim:
            endpoint = ModbusEndpoint("127.0.0.1", sim.ports[0], SLOW.model_copy(update={"request_timeout_s": 2.0}),
                                      RecordingLog())
            try:
                reads = await asyncio.gather(*(endpoint.read_holding_registers(1, 100, 4) for _ in range(8)))
                assert len(reads) == 8 and all(len(r) == 4 for r in reads)
                await endpoint.write_registers(1, 240, [0])  # the fault block: a write that echoes
                assert endpoint.stats.timeouts == 0 and endpoint.stats.connects == 1
            finally:
                await endpoint.close()

    run(scenario(), caplog, timeout_s=20.0)
