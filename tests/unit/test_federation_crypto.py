"""Key ring sealing (the replay guard has its own tests in test_replay.py)."""

from __future__ import annotations

import os

import pytest

from bessgw.federation.crypto import OVERHEAD_BYTES, KeyRing, key_id
from bessgw.federation.errors import DatagramError

OLD, NEW, OTHER = os.urandom(32), os.urandom(32), os.urandom(32)


def reason(call) -> str:
    with pytest.raises(DatagramError) as info:
        call()
    return info.value.reason


def test_round_trip_and_overhead() -> None:
    ring = KeyRing([OLD])
    sealed = ring.seal(b"hello")
    assert len(sealed) == len(b"hello") + OVERHEAD_BYTES
    assert b"hello" not in sealed
    assert ring.open(sealed) == b"hello"


def test_rotation_sends_with_primary_and_accepts_any_key_of_the_ring() -> None:
    old_only, rotating, new_only = KeyRing([OLD]), KeyRing([NEW, OLD]), KeyRing([NEW])
    assert rotating.open(old_only.seal(b"a")) == b"a"
    assert new_only.open(rotating.seal(b"b")) == b"b"  # sent with the primary (NEW)
    assert reason(lambda: old_only.open(rotating.seal(b"c"))) == "unknown_key"
    assert rotating.primary_id == key_id(NEW)


def test_wrong_key_tampering_and_junk_are_refused_with_their_reason() -> None:
    ring, other = KeyRing([OLD]), KeyRing([OTHER])
    sealed = bytearray(ring.seal(b"payload"))
    assert reason(lambda: other.open(bytes(sealed))) == "unknown_key"
    sealed[-1] ^= 1
    assert reason(lambda: ring.open(bytes(sealed))) == "auth"
    # a forger who copies our key id but not our key fails authentication
    forged = bytes(sealed[:5]) + other.seal(b"x")[5:]
    assert reason(lambda: ring.open(forged)) == "auth"
    assert reason(lambda: ring.open(b"\xb1\x01")) == "short"
    assert reason(lambda: ring.open(b"XX" + bytes(40))) == "format"


def test_wire_format_1_datagrams_are_refused_as_format() -> None:
    """Format 2 changed the envelope; a format-1 gateway's datagram must say so, not be misread."""
    ring = KeyRing([OLD])
    sealed = bytearray(ring.seal(b"payload"))
    sealed[0] = 0xB1
    assert reason(lambda: ring.open(bytes(sealed))) == "format"


def test_key_ring_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing([b"short"])
    with pytest.raises(ValueError, match="at least one"):
        KeyRing([])
