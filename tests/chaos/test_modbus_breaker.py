"""The per-endpoint circuit breaker, on a fake clock: opens, fails fast, lets one trial through, closes."""

from __future__ import annotations

import pytest

from bessgw.southbound.modbus.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.chaos


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_fails_fast_until_open_s_passed():
    clock = Clock()
    breaker = CircuitBreaker(failures=3, open_s=10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    breaker.record_success()  # not consecutive any more
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.trips == 1
    assert not breaker.allow() and breaker.retry_in_s() == pytest.approx(10.0)
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_trial_through():
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_s=5.0, clock=clock)
    breaker.record_failure()
    clock.now += 5.0
    assert breaker.allow()
    assert not breaker.allow()  # the trial is out
    breaker.record_failure()  # trial failed: open again for a full period, same trip
    assert breaker.state is BreakerState.OPEN and breaker.trips == 1
    clock.now += 5.0
    assert breaker.allow()
    breaker.cancel_trial()  # it never went out (no connection): another may try
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()
