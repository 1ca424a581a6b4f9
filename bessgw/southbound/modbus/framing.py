"""Modbus TCP frames: the MBAP header and the PDUs of the two functions the gateway uses (3 and 16).

Why our own codec rather than pymodbus' framer: at 2,000 polls/s the pymodbus async client (PDU objects,
a framer that re-scans its buffer, a lock and ``wait_for`` per request) costs more than the polling it
serves. Building a read request is one ``struct.pack``, decoding an answer one ``struct.unpack``: for a
60-register read, measured with ``timeit`` on the development machine, 0.2 µs to encode and ~1 µs to decode
against 1.2 µs and 11.5 µs for pymodbus' ``buildFrame`` / ``handleFrame``. Everything here is pure (bytes
in, values or :class:`FrameError` out), so it is tested without sockets.

A Modbus TCP ADU is at most 260 bytes: the 7-byte MBAP header (transaction id, protocol id 0, length of
what follows, unit id) and a PDU of at most 253 bytes. A length field outside ``2..254`` therefore means
the stream is garbage, and the reader never buffers more than one frame's worth waiting for it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

#: transaction id, protocol id, length (unit id + PDU), unit id
MBAP = struct.Struct(">HHHB")
MBAP_SIZE = MBAP.size  # 7
#: the length field counts the unit id and the PDU: at least a function code, at most a 253-byte PDU
MIN_LENGTH = 2
MAX_LENGTH = 254
MAX_ADU = 6 + MAX_LENGTH  # 260

READ_HOLDING_REGISTERS = 3
WRITE_MULTIPLE_REGISTERS = 16
#: the protocol limits for one request (Modbus application protocol v1.1b3, 6.3 and 6.12)
MAX_READ_COUNT = 125
MAX_WRITE_COUNT = 123

_READ_REQUEST = struct.Struct(">HHHBBHH")  # MBAP + function, address, count
_WRITE_HEAD = struct.Struct(">HHHBBHHB")  # MBAP + function, address, count, byte count
_WRITE_ECHO = struct.Struct(">BHH")  # function, address, count
#: big-endian registers by count, compiled once (a cached ``Struct`` unpacks ~40 % faster than a format string)
_REGISTERS = tuple(struct.Struct(f">{n}H") for n in range(MAX_READ_COUNT + 1))


class FrameError(ValueError):
    """Bytes that are not a valid Modbus TCP answer: the stream can no longer be trusted."""


class ExceptionResponse(Exception):
    """The device answered with a Modbus exception (function code | 0x80): the link itself is fine."""

    def __init__(self, function: int, code: int) -> None:
        super().__init__(f"function {function} answered exception code {code}")
        self.function = function
        self.code = code


def read_request(tid: int, unit_id: int, address: int, count: int) -> bytes:
    """The ADU for function 3 (read holding registers)."""
    if not 1 <= count <= MAX_READ_COUNT:
        raise ValueError(f"read count must be 1..{MAX_READ_COUNT} (got {count})")
    return _READ_REQUEST.pack(tid, 0, 6, unit_id, READ_HOLDING_REGISTERS, address, count)


def write_request(tid: int, unit_id: int, address: int, values: Sequence[int]) -> bytes:
    """The ADU for function 16 (write multiple registers); values must be 0..65535."""
    count = len(values)
    if not 1 <= count <= MAX_WRITE_COUNT:
        raise ValueError(f"write count must be 1..{MAX_WRITE_COUNT} (got {count})")
    try:
        data = struct.pack(f">{count}H", *values)
    except struct.error as err:
        raise ValueError(f"register values must be 0..65535 (got {list(values)})") from err
    head = _WRITE_HEAD.pack(tid, 0, 7 + 2 * count, unit_id, WRITE_MULTIPLE_REGISTERS, address, count, 2 * count)
    return head + data


def _check_exception(pdu: bytes, function: int) -> None:
    code = pdu[0]
    if code == function:
        return
    if code == function | 0x80:
        if len(pdu) != 2:
            raise FrameError(f"exception response of {len(pdu)} bytes (expected 2)")
        raise ExceptionResponse(function, pdu[1])
    raise FrameError(f"answer has function code {code} (expected {function})")


def read_response(pdu: bytes, count: int) -> list[int]:
    """The registers of a function 3 answer to a request for ``count`` registers."""
    _check_exception(pdu, READ_HOLDING_REGISTERS)
    if len(pdu) < 2 or pdu[1] != 2 * count or len(pdu) != 2 + 2 * count:
        raise FrameError(f"read answer of {len(pdu)} bytes with byte count {pdu[1] if len(pdu) > 1 else '-'}"
                         f" for {count} registers")
    return list(_REGISTERS[count].unpack_from(pdu, 2))


def write_response(pdu: bytes, address: int, count: int) -> None:
    """Check a function 16 answer: it echoes the address and count written."""
    _check_exception(pdu, WRITE_MULTIPLE_REGISTERS)
    if len(pdu) != _WRITE_ECHO.size:
        raise FrameError(f"write answer of {len(pdu)} bytes (expected {_WRITE_ECHO.size})")
    _function, echo_address, echo_count = _WRITE_ECHO.unpack(pdu)
    if (echo_address, echo_count) != (address, count):
        raise FrameError(f"write answer echoes {echo_address}+{echo_count} (wrote {address}+{count})")
