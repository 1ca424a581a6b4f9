"""The fencing clock: until when a gateway may act on its share (pure, monotonic clock injected).

A share is bound to the gateway's etcd lease. etcd deletes the share key when the lease expires, and only
then may the allocator give that power to another gateway. The gateway must therefore have stopped acting
on the share *before* etcd can delete the key, measured on its own clock. A keepalive timer alone is not
safe: after a network cut a cut-off old etcd leader keeps answering keepalives for one to two seconds
without renewing anything, and the new leader extends each lease by one election timeout only (measured:
another client took a share over 44 ms before the old owner's own "last keepalive + TTL").

So the deadline is the earlier of two clocks (and every time is the *send* time of the request, which is
never later than the moment etcd acted on it):

- ``last successful linearizable operation + hold`` (``hold < TTL``): a linearizable read or a txn can only
  succeed through the Raft majority, so a gateway cut off from it stops after ``hold``;
- ``last answered keepalive + TTL - 2 x election timeout``: margin for the stale-leader window above.

Decreasing ``|P|`` is always allowed: only acting on (keeping or raising) power needs the fence. The device
layer checks :meth:`FenceClock.valid` immediately before every write, so a gateway paused for longer than
its deadline (SIGSTOP, a long GC) does not wake up and write an old share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class FenceClock:
    """Tracks the two clocks of one lease. All times are ``time.monotonic()`` seconds.

    :param ttl_s: the lease TTL granted by etcd.
    :param election_timeout_s: the etcd cluster's election timeout.
    :param hold_s: how long a successful linearizable operation vouches for us (``0 < hold_s < ttl_s``).
    """

    ttl_s: float
    election_timeout_s: float
    hold_s: float
    last_linearizable_s: float = -math.inf
    last_keepalive_s: float = -math.inf

    def __post_init__(self) -> None:
        if not 0 < self.hold_s < self.ttl_s:
            raise ValueError(f"hold_s must be in (0, ttl_s={self.ttl_s}) (got {self.hold_s})")
        if self.ttl_s - 2 * self.election_timeout_s <= 0:
            raise ValueError("ttl_s must exceed 2 x election_timeout_s (config requires 3 x)")

    def linearizable_ok(self, sent_at_s: float) -> None:
        """A linearizable read or txn sent at ``sent_at_s`` succeeded (clocks only move forward)."""
        self.last_linearizable_s = max(self.last_linearizable_s, sent_at_s)

    def keepalive_ok(self, sent_at_s: float) -> None:
        """A keepalive (or the lease grant) sent at ``sent_at_s`` was answered with a TTL > 0."""
        self.last_keepalive_s = max(self.last_keepalive_s, sent_at_s)

    def lost(self) -> None:
        """The lease is gone (keepalive answered TTL 0, revoked, or replaced): nothing vouches for us."""
        self.last_linearizable_s = -math.inf
        self.last_keepalive_s = -math.inf

    def deadline(self) -> float:
        """Monotonic time after which the gateway must not act on its share (``-inf``: not now)."""
        return min(
            self.last_linearizable_s + self.hold_s,
            self.last_keepalive_s + self.ttl_s - 2.0 * self.election_timeout_s,
        )

    def valid(self, now_s: float) -> bool:
        """Whether the share may still be acted on at ``now_s``."""
        return now_s < self.deadline()

    def time_left(self, now_s: float) -> float:
        return max(0.0, self.deadline() - now_s)


def may_write(p_kw: float, previous_p_kw: float, deadline_s: float, now_s: float) -> bool:
    """Whether a device write of ``p_kw`` for the campus is allowed at ``now_s``.

    A write that does not increase ``|P|`` and keeps its sign (or goes to 0) is always allowed: it can only
    reduce what the campus delivers. Anything else needs ``now_s < deadline_s``.
    """
    if p_kw == 0.0:
        return True
    if abs(p_kw) <= abs(previous_p_kw) and (p_kw > 0) == (previous_p_kw > 0):
        return True
    return now_s < deadline_s
