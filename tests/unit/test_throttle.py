"""LogThrottle: the one clock of every rate-limited summary line (malformed requests, dropped datagrams, ...)."""

from __future__ import annotations

from bessgw.throttle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_event_is_reported_at_once_then_one_summary_per_interval() -> None:
    clock = Clock()
    throttle = LogThrottle(10.0, clock)
    assert throttle.count() == 1
    assert [throttle.count() for _ in range(5)] == [0] * 5  # within the interval: counted, not reported
    clock.now += 10.0
    assert throttle.count(2) == 7  # the five since the last line and these two
    assert throttle.total == 8 and throttle.unlogged == 0


def test_events_left_unreported_are_reported_by_a_later_call_even_without_new_ones() -> None:
    clock = Clock()
    throttle = LogThrottle(10.0, clock)
    assert throttle.count() == 1
    assert throttle.count(3) == 0
    assert throttle.count(0) == 0  # not due yet
    clock.now += 11.0
    assert throttle.count(0) == 3
    assert throttle.count(0) == 0  # nothing left, and no line due for nothing


def test_due_takes_the_lines_time_and_an_interval_of_zero_is_always_due() -> None:
    clock = Clock()
    throttle = LogThrottle(5.0, clock)
    assert throttle.due() and not throttle.due()
    clock.now += 5.0
    assert throttle.due()
    always = LogThrottle(0.0, clock)
    assert always.due() and always.due()
