"""A circuit breaker per Modbus endpoint.

After ``failures`` consecutive failed requests (timeouts, dropped connections) the endpoint is presumed
dead: for ``open_s`` seconds requests fail at once instead of each waiting out its timeout, so a dead
container costs its unit task nothing and the link is not hammered. Then one trial request is let through
(half-open): success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures; decides whether the next request may go out."""

    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or open_s <= 0:
            raise ValueError("breaker needs failures >= 1 and open_s > 0")
        self.failure_threshold = failures
        self.open_s = open_s
        self.clock = clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.trips = 0
        self._trial_out = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at < self.open_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def retry_in_s(self) -> float:
        """Seconds until the breaker lets a trial through (0 when it would now)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.open_s - self.clock())

    def allow(self) -> bool:
        """Whether a request may be sent now; in half-open state only one trial at a time."""
        if self.opened_at is None:  # closed: the per-request fast path, no clock read
            return True
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def cancel_trial(self) -> None:
        """The allowed request never went out (e.g. no connection yet): let another one try."""
        self._trial_out = False

    def record_success(self) -> None:
        if not self.consecutive_failures and self.opened_at is None and not self._trial_out:
            return  # already clean: the usual case, once per answered request
        self.consecutive_failures = 0
        self.opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        trial_failed = self._trial_out
        self._trial_out = False
        if trial_failed or (self.opened_at is None and self.consecutive_failures >= self.failure_threshold):
            if self.opened_at is None:
                self.trips += 1
            self.opened_at = self.clock()
