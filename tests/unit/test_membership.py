"""SWIM/Lifeguard rules of the member table, driven with a fake clock."""

from __future__ import annotations

import math
import random

import pytest

from bessgw.federation.broadcast import BroadcastQueue
from bessgw.federation.membership import Membership, Suspicion
from bessgw.federation.wire import MemberUpdate, Status


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def table(clock: Clock, peers: int = 0) -> Membership:
    m = Membership("me", "127.0.0.1", 1000, probe_interval_s=1.0, suspicion_mult=4, suspicion_max_mult=6,
                   awareness_max=8, retransmit_mult=4, dead_reap_s=60, clock=clock, rng=random.Random(1))
    for index in range(peers):
        m.apply(alive(f"p{index}", 0))
    return m


def alive(node: str, inc: int, port: int = 2000) -> MemberUpdate:
    return MemberUpdate(node, "127.0.0.1", port, inc, Status.ALIVE)


def claim(node: str, inc: int, status: Status, by: str = "") -> MemberUpdate:
    return MemberUpdate(node, "127.0.0.1", 2000, inc, status, by)


def test_incarnation_orders_claims() -> None:
    clock = Clock()
    m = table(clock, 1)
    m.apply(claim("p0", 0, Status.SUSPECT, "x"))
    assert m.members["p0"].status == Status.SUSPECT
    m.apply(alive("p0", 0))  # same incarnation: suspicion wins
    assert m.members["p0"].status == Status.SUSPECT
    m.apply(alive("p0", 1))  # the member refuted
    assert m.members["p0"].status == Status.ALIVE
    m.apply(claim("p0", 0, Status.DEAD))  # stale death claim
    assert m.members["p0"].status == Status.ALIVE
    m.apply(claim("p0", 1, Status.DEAD))
    assert m.members["p0"].status == Status.DEAD
    m.apply(alive("p0", 1))
    assert m.members["p0"].status == Status.DEAD
    m.apply(alive("p0", 2, port=3000))  # rejoined, possibly elsewhere
    assert (m.members["p0"].status, m.members["p0"].port) == (Status.ALIVE, 3000)


def test_refutes_suspicion_and_death_about_itself() -> None:
    clock = Clock()
    m = table(clock)
    m.apply(claim("me", 0, Status.SUSPECT, "p1"))
    assert m.me.incarnation == 1 and m.me.status == Status.ALIVE
    assert m.awareness == 1  # Lifeguard: being suspected hints that we are the slow one
    m.apply(claim("me", 5, Status.DEAD))
    assert m.me.incarnation == 6
    queued = m.queue.take(10_000, 1)
    assert MemberUpdate("me", "127.0.0.1", 1000, 6, Status.ALIVE) in queued
    m.apply(claim("me", 3, Status.DEAD))  # older than us: nothing to refute
    assert m.me.incarnation == 6


def test_members_boots_only_grow_whatever_the_claim_says_about_status() -> None:
    """Boots address datagrams: the newest one heard in any claim is kept, and our own claims carry it."""
    clock = Clock()
    m = table(clock, 8)  # enough members that our confirmation is relayed (expected confirmations: 2)
    m.apply(MemberUpdate("p0", "127.0.0.1", 2000, 3, Status.ALIVE, "", 70))
    assert m.members["p0"].boot == 70
    m.apply(MemberUpdate("p0", "127.0.0.1", 2000, 0, Status.ALIVE, "", 90))  # restarted: inc 0, a newer boot
    assert (m.members["p0"].incarnation, m.members["p0"].boot) == (3, 90)  # status rules unchanged, boot learned
    m.apply(MemberUpdate("p0", "127.0.0.1", 2000, 4, Status.SUSPECT, "x", 70))  # someone's older knowledge
    assert m.members["p0"].boot == 90
    m.suspect("p0")  # our confirmation of the suspicion, as we gossip it
    ours = [u for u in m.queue.take(10_000, 1) if u.node == "p0" and u.by == "me"]
    assert [u.boot for u in ours] == [90]


def test_a_claim_about_an_earlier_life_of_ours_is_refuted_so_our_new_boot_spreads() -> None:
    clock = Clock()
    m = Membership("me", "127.0.0.1", 1000, probe_interval_s=1.0, suspicion_mult=4, suspicion_max_mult=6,
                   awareness_max=8, retransmit_mult=4, dead_reap_s=60, clock=clock, boot=200)
    m.queue.take(10_000, 1)
    # a peer's full list still has us alive at incarnation 0, at our address, but with our previous boot
    m.apply(MemberUpdate("me", "127.0.0.1", 1000, 0, Status.ALIVE, "", 100), from_sync=True)
    assert m.me.incarnation == 1
    assert MemberUpdate("me", "127.0.0.1", 1000, 1, Status.ALIVE, "", 200) in m.queue.take(10_000, 1)
    m.apply(MemberUpdate("me", "127.0.0.1", 1000, 1, Status.ALIVE, "", 200))  # our own claim: nothing to do
    assert m.me.incarnation == 1


def test_full_sync_death_only_makes_us_suspicious() -> None:
    clock = Clock()
    m = table(clock, 1)
    m.apply(claim("p0", 0, Status.DEAD), from_sync=True)
    assert m.members["p0"].status == Status.SUSPECT


def test_suspicion_expires_to_dead_and_confirmations_shorten_it() -> None:
    clock = Clock()
    lone, confirmed = table(clock, 8), table(clock, 8)
    lone.suspect("p0")
    confirmed.suspect("p0")
    for helper in ("p1", "p2"):  # expected confirmations: 2 (the default)
        confirmed.apply(claim("p0", 0, Status.SUSPECT, helper))
    minimum = 4 * 1.0 * 1.0  # mult * log10(9 members) -> 1 * interval
    clock.now += minimum + 0.01
    assert confirmed.tick()[0][0].new == Status.DEAD
    assert lone.tick()[0] == []  # a single suspecter waits up to max = 6 * min
    clock.now += 5 * minimum
    assert lone.tick()[0][0].new == Status.DEAD
    clock.now += 61
    assert lone.tick()[1] == ["p0"]  # reaped after dead_reap_s
    assert "p0" not in lone.members


@pytest.mark.parametrize(
    ("confirmations", "expected_s"),
    [(0, 60.0), (1, 60 - 50 * math.log(2) / math.log(4)), (2, 60 - 50 * math.log(3) / math.log(4)), (3, 10.0),
     (7, 10.0)],
)
def test_lifeguard_timeout_shrinks_logarithmically(confirmations: int, expected_s: float) -> None:
    s = Suspicion(0.0, 10.0, 60.0, 3, {"first"} | {f"c{i}" for i in range(confirmations)})
    assert s.deadline() == pytest.approx(expected_s)


def test_leave_is_final_and_not_refuted() -> None:
    clock = Clock()
    m = table(clock, 1)
    update = m.leave()
    assert update.status == Status.LEFT and update.incarnation == 1
    m.apply(claim("me", 1, Status.DEAD))
    assert m.me.status == Status.LEFT
    other = table(clock, 0)
    other.apply(alive("gone", 0))
    other.apply(MemberUpdate("gone", "127.0.0.1", 2000, 1, Status.LEFT))
    assert other.members["gone"].status == Status.LEFT
    other.apply(claim("gone", 1, Status.SUSPECT, "x"))
    assert other.members["gone"].status == Status.LEFT


def test_probe_order_visits_everyone_once_per_round() -> None:
    m = table(Clock(), 5)
    seen = [m.next_probe_target().node for _ in range(5)]
    assert sorted(seen) == [f"p{i}" for i in range(5)]


def test_awareness_is_bounded_and_scales_timing() -> None:
    m = table(Clock())
    for _ in range(20):
        m.adjust_awareness(+1)
    assert m.awareness == 8 and m.scaled(0.5) == pytest.approx(4.5)
    for _ in range(20):
        m.adjust_awareness(-1)
    assert m.awareness == 0


def test_broadcast_queue_retransmits_a_bounded_number_of_times() -> None:
    queue = BroadcastQueue(retransmit_mult=2)
    queue.add("a", "A", 10)
    queue.add("b", "B", 10)
    queue.add("a", "A2", 10)  # replaces the queued A
    limit = queue.limit(9)  # 2 * ceil(log10(10)) = 2
    sent = [queue.take(15, 9) for _ in range(2 * limit + 1)]
    flat = [item for batch in sent for item in batch]
    assert sorted(flat) == ["A2"] * limit + ["B"] * limit
    assert len(queue) == 0


@pytest.mark.parametrize(("helpers", "nacks", "expected"), [(3, 3, 0), (3, 2, 0), (3, 1, 0), (3, 0, 1), (0, 0, 1)])
def test_lost_nacks_do_not_inflate_local_health(helpers: int, nacks: int, expected: int) -> None:
    """A nack lost on a lossy network says nothing about us; silence from every helper does."""
    m = table(Clock(), 5)
    for _ in range(3):
        m.probe_failed(helpers, nacks)
    assert m.awareness == 3 * expected


def test_a_member_joining_mid_round_is_probed_within_the_current_round() -> None:
    m = table(Clock(), 20)
    first = m.next_probe_target()  # builds this round's order over p0..p19
    assert first is not None
    m.apply(alive("late", 0, port=3000))
    seen = [m.next_probe_target().node for _ in range(20)]  # the rest of the round, plus one
    assert "late" in seen[:20]


def test_a_member_back_from_the_dead_is_probed_within_the_current_round() -> None:
    m = table(Clock(), 20)
    m.apply(claim("p5", 0, Status.DEAD))
    m.next_probe_target()  # this round's order leaves the dead p5 out
    m.apply(alive("p5", 1))  # it restarted and refuted
    seen = [m.next_probe_target().node for _ in range(20)]
    assert "p5" in seen


def test_a_small_campus_still_waits_for_the_confirmations_it_can_get() -> None:
    """k is capped at members - 2 rather than dropped to 0: with three members the third must confirm."""
    clock = Clock()
    m = Membership("me", "127.0.0.1", 1000, probe_interval_s=1.0, suspicion_mult=1, suspicion_max_mult=6,
                   awareness_max=8, retransmit_mult=4, dead_reap_s=60, clock=clock, suspicion_confirmations=3)
    for peer in ("p0", "p1"):
        m.apply(alive(peer, 0))
    m.suspect("p0")
    assert m.members["p0"].suspicion.expected == 1
    clock.now += 1.01  # the minimum (1 * log10(3) -> 1 * 1 s) alone is not enough
    assert m.tick()[0] == []
    m.apply(claim("p0", 0, Status.SUSPECT, "p1"))  # p1 confirms: the minimum applies
    assert m.tick()[0][0].new == Status.DEAD
