"""The replay guard: receiver binding, per-(sender, boot) windows, restarts on either side."""

from __future__ import annotations

import pytest

from bessgw.federation.errors import DatagramError, UnboundDatagram
from bessgw.federation.replay import ReplayGuard
from bessgw.federation.wire import Header

B_BOOT, A_BOOT = 5_000_000, 4_000_000


def reason(call) -> str:
    with pytest.raises(DatagramError) as info:
        call()
    return info.value.reason


def to_b(seq: int, boot: int = A_BOOT, sender: str = "a", to: str = "b", to_boot: int = B_BOOT) -> Header:
    return Header(sender, boot, seq, to, to_boot)


def test_each_sequence_is_accepted_once_even_reordered() -> None:
    guard = ReplayGuard("b", B_BOOT)
    for seq in (1, 3, 2, 10, 5):
        guard.check(to_b(seq))
    for seq in (1, 2, 3, 5, 10):
        assert reason(lambda seq=seq: guard.check(to_b(seq))) == "replay"
    guard.check(to_b(200))
    assert reason(lambda: guard.check(to_b(100))) == "replay"  # below the 64-wide window
    guard.check(to_b(1, sender="c"))  # senders are independent
    assert guard.boot_of("a") == A_BOOT and guard.boot_of("nobody") == 0


def test_a_datagram_for_another_gateway_is_refused_even_if_never_seen() -> None:
    guard = ReplayGuard("b", B_BOOT)
    assert reason(lambda: guard.check(to_b(1, to="c"))) == "recipient"
    # the same boot number on another gateway (two started in the same tenth of a second) changes nothing
    assert reason(lambda: guard.check(to_b(2, to="c", to_boot=B_BOOT))) == "recipient"
    guard.check(to_b(3))  # and the refusals left no state behind that would hurt genuine traffic


def test_after_a_restart_of_the_receiver_nothing_of_its_earlier_life_is_accepted() -> None:
    before = ReplayGuard("b", B_BOOT)
    captured = [to_b(seq) for seq in range(1, 45)]
    for header in captured:
        before.check(header)
    after = ReplayGuard("b", B_BOOT + 1)  # kill -9, restart: no memory, a new boot
    for header in captured:
        with pytest.raises(UnboundDatagram) as info:
            after.check(header)
        assert info.value.reason == "epoch"
    assert len(after) == 0, "refused datagrams teach the guard nothing"
    after.check(to_b(1, to_boot=B_BOOT + 1))  # the sender, told our new boot, gets through at once


def test_a_first_contact_is_unbound_and_refused() -> None:
    guard = ReplayGuard("b", B_BOOT)
    for header in (Header("a", A_BOOT, 1, "", 0), Header("a", A_BOOT, 2, "b", 0)):
        with pytest.raises(UnboundDatagram) as info:
            guard.check(header)
        assert info.value.reason == "first_contact"
    assert len(guard) == 0


def test_a_restarted_sender_starts_a_new_window_and_its_earlier_life_is_over() -> None:
    guard = ReplayGuard("b", B_BOOT)
    old = [to_b(seq) for seq in (50, 51)]
    guard.check(old[0])
    guard.check(to_b(1, boot=A_BOOT + 7))  # a new life: a new window, from seq 1
    guard.check(to_b(2, boot=A_BOOT + 7))
    # a datagram of the earlier life, bound to our current boot but held back: over now, seen or not
    assert reason(lambda: guard.check(old[1])) == "replay"
    assert reason(lambda: guard.check(old[0])) == "replay"


def test_a_new_sender_boot_learned_from_gossip_ends_the_earlier_life_too() -> None:
    guard = ReplayGuard("b", B_BOOT)
    guard.check(to_b(10))
    # the membership says a restarted before it wrote to us: its earlier life's unseen seqs are refused
    assert reason(lambda: guard.check(to_b(11), known_boot=A_BOOT + 1)) == "replay"
    guard.check(to_b(1, boot=A_BOOT + 1), known_boot=A_BOOT + 1)


def test_memory_is_bounded_and_a_boot_is_never_zero() -> None:
    guard = ReplayGuard("b", B_BOOT, max_senders=3)
    for index in range(10):
        guard.check(to_b(1, sender=f"s{index}"))
    assert len(guard) == 3
    with pytest.raises(ValueError, match="positive"):
        ReplayGuard("b", 0)
