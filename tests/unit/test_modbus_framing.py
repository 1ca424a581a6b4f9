"""The Modbus TCP codec, byte for byte: requests as the spec lays them out, answers checked strictly.

pymodbus (the reference the gateway replaced on its hot path) encodes the same requests and decodes the
same answers; where both can run, the bytes are compared with it.
"""

from __future__ import annotations

import re
import struct

import pytest
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, WriteMultipleRegistersRequest

from bessgw.southbound.modbus import framing
from bessgw.southbound.modbus.framing import ExceptionResponse, FrameError


def test_a_read_request_is_the_adu_pymodbus_builds():
    ours = framing.read_request(0x1234, 7, 1000, 60)
    assert ours == bytes.fromhex("1234 0000 0006 07 03 03e8 003c".replace(" ", ""))
    reference = FramerSocket(DecodePDU(False)).buildFrame(
        ReadHoldingRegistersRequest(address=1000, count=60, dev_id=7, transaction_id=0x1234))
    assert ours == reference


def test_a_write_request_is_the_adu_pymodbus_builds():
    ours = framing.write_request(9, 1, 200, [1, 0xFFFF, 513])
    assert ours == bytes.fromhex("0009 0000 000d 01 10 00c8 0003 06 0001 ffff 0201".replace(" ", ""))
    reference = FramerSocket(DecodePDU(False)).buildFrame(
        WriteMultipleRegistersRequest(address=200, registers=[1, 0xFFFF, 513], dev_id=1, transaction_id=9))
    assert ours == reference


@pytest.mark.parametrize("count", [0, 126])
def test_a_read_outside_the_protocol_limit_is_refused(count: int):
    with pytest.raises(ValueError, match=r"read count must be 1\.\.125"):
        framing.read_request(1, 1, 0, count)


@pytest.mark.parametrize("values", [[], [0] * 124, [70000], [-1]])
def test_a_write_outside_the_protocol_limits_is_refused(values: list[int]):
    with pytest.raises(ValueError):
        framing.write_request(1, 1, 0, values)


def test_a_read_answer_gives_its_registers():
    pdu = bytes([3, 6]) + struct.pack(">3H", 0, 0x8000, 0xFFFF)
    assert framing.read_response(pdu, 3) == [0, 0x8000, 0xFFFF]
    full = bytes([3, 250]) + struct.pack(">125H", *range(125))
    assert framing.read_response(full, 125) == list(range(125))


@pytest.mark.parametrize(
    ("pdu", "message"),
    [
        (bytes([3, 4, 0, 1]), "byte count 4 for 2 registers"),  # truncated data
        (bytes([3]), "byte count -"),  # no byte count at all
        (bytes([3, 2, 0, 1]), "byte count 2 for 2 registers"),  # fewer registers than asked
        (bytes([3, 4, 0, 1, 0, 2, 0]), "7 bytes"),  # a stray byte after the data
        (bytes([4, 4, 0, 1, 0, 2]), "function code 4 (expected 3)"),
        (bytes([0x63, 2, 0, 1]), "function code 99 (expected 3)"),
        (bytes([0x83]), "exception response of 1 bytes"),
    ],
)
def test_a_malformed_read_answer_is_a_frame_error(pdu: bytes, message: str):
    with pytest.raises(FrameError, match=re.escape(message)):
        framing.read_response(pdu, 2)


def test_an_exception_answer_carries_its_code():
    with pytest.raises(ExceptionResponse) as caught:
        framing.read_response(bytes([0x83, 2]), 2)
    assert caught.value.code == 2 and caught.value.function == 3
    with pytest.raises(ExceptionResponse) as caught:
        framing.write_response(bytes([0x90, 4]), 10, 1)
    assert caught.value.code == 4 and caught.value.function == 16


def test_a_write_answer_must_echo_address_and_count():
    framing.write_response(bytes.fromhex("1000c80003"), 200, 3)
    with pytest.raises(FrameError, match="echoes 200\\+2"):
        framing.write_response(bytes.fromhex("1000c80002"), 200, 3)
    with pytest.raises(FrameError, match="3 bytes"):
        framing.write_response(bytes.fromhex("1000c8"), 200, 3)
