"""Key ring sealing and the replay guard."""

from __future__ import annotations

import os

import pytest

from bessgw.federation.crypto import OVERHEAD_BYTES, KeyRing, key_id
from bessgw.federation.errors import DatagramError
from bessgw.federation.replay import ReplayGuard, boot_stamp, boot_time

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


def test_key_ring_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing([b"short"])
    with pytest.raises(ValueError, match="at least one"):
        KeyRing([])


BOOT = boot_stamp(1_800_000_000.0)
NOW = boot_time(BOOT) + 100.0  # the sender has been up for 100 s


def test_replay_guard_accepts_each_sequence_once_even_reordered() -> None:
    guard = ReplayGuard(window_s=60)
    now, ms = NOW, 100
    for seq in (1, 3, 2, 10, 5):
        guard.check("a", BOOT, seq, ms, now)
    for seq in (1, 2, 3, 5, 10):
        assert reason(lambda seq=seq: guard.check("a", BOOT, seq, ms, now)) == "replay"
    guard.check("a", BOOT, 200, ms, now)
    assert reason(lambda: guard.check("a", BOOT, 100, ms, now)) == "replay"  # below the 64-wide window
    guard.check("b", BOOT, 1, ms, now)  # senders are independent


def test_replay_guard_restart_and_clock_window() -> None:
    guard = ReplayGuard(window_s=60)
    guard.check("a", BOOT, 50, 100, NOW)
    guard.check("a", BOOT + 5, 1, 99, NOW)  # the sender restarted: a new boot starts a new window
    assert reason(lambda: guard.check("a", BOOT, 51, 100, NOW)) == "replay"  # the old boot is over
    assert reason(lambda: guard.check("a", BOOT + 5, 2, 99 - 61, NOW)) == "stale"
    assert reason(lambda: guard.check("a", BOOT + 5, 2, 99 + 61, NOW)) == "stale"


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(window_s=60, max_senders=3)
    for index in range(10):
        guard.check(f"s{index}", BOOT, 1, 100, NOW)
    assert len(guard._senders) == 3
