"""The fencing clock: the earlier of the linearizable hold and the keepalive bound, on the monotonic clock."""

from __future__ import annotations

import math

import pytest

from bessgw.campus.fencing import FenceClock, may_write


def clock() -> FenceClock:
    return FenceClock(ttl_s=5.0, election_timeout_s=1.0, hold_s=3.0)


def test_nothing_vouches_before_the_first_answers() -> None:
    fence = clock()
    assert fence.deadline() == -math.inf
    assert not fence.valid(0.0)
    fence.keepalive_ok(10.0)
    assert not fence.valid(10.0), "a keepalive alone is not enough: the stale-leader window"
    fence.linearizable_ok(10.0)
    assert fence.valid(10.0)


def test_keepalive_bound_is_ttl_minus_two_election_timeouts() -> None:
    fence = clock()
    fence.keepalive_ok(100.0)
    fence.linearizable_ok(100.5)
    assert fence.deadline() == pytest.approx(103.0)  # 100 + 5 - 2 x 1, earlier than 100.5 + 3
    fence.linearizable_ok(101.5)
    assert fence.deadline() == pytest.approx(103.0)
    fence.keepalive_ok(101.6)
    assert fence.deadline() == pytest.approx(104.5)  # now the hold is the earlier one


def test_linearizable_hold_bounds_a_gateway_whose_keepalives_still_get_answers() -> None:
    """A cut-off old leader answers keepalives; linearizable operations fail there: the hold stops us."""
    fence = clock()
    fence.linearizable_ok(0.0)
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        fence.keepalive_ok(t)
    assert fence.deadline() == pytest.approx(3.0)
    assert fence.valid(2.99) and not fence.valid(3.0)


def test_clocks_never_go_back_and_loss_revokes_at_once() -> None:
    fence = clock()
    fence.linearizable_ok(50.0)
    fence.keepalive_ok(50.0)
    fence.linearizable_ok(10.0)  # a late answer to an old request
    fence.keepalive_ok(10.0)
    assert fence.deadline() == pytest.approx(53.0)
    fence.lost()
    assert not fence.valid(50.0)


def test_hold_must_be_shorter_than_the_ttl() -> None:
    with pytest.raises(ValueError):
        FenceClock(ttl_s=5.0, election_timeout_s=1.0, hold_s=5.0)


def test_decreases_are_always_allowed() -> None:
    expired = 0.0
    assert may_write(0.0, 500.0, expired, now_s=10.0)
    assert may_write(300.0, 500.0, expired, now_s=10.0)
    assert may_write(-300.0, -500.0, expired, now_s=10.0)
    assert not may_write(600.0, 500.0, expired, now_s=10.0)
    assert not may_write(-100.0, 500.0, expired, now_s=10.0), "a sign change is not a decrease"
    assert may_write(600.0, 500.0, deadline_s=11.0, now_s=10.0)
