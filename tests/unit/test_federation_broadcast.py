"""The dissemination queue: bounded retransmission, replacement by subject, confirmation groups."""

from __future__ import annotations

import random

from bessgw.federation.broadcast import BroadcastQueue
from bessgw.federation.membership import Membership
from bessgw.federation.wire import MemberUpdate, Status


def drain(queue: BroadcastQueue, members: int, budget_bytes: int = 10_000) -> list[object]:
    """Everything the queue still sends, in order, until it is empty (bounded)."""
    out: list[object] = []
    for _ in range(1000):
        batch = queue.take(budget_bytes, members)
        if not batch:
            break
        out.extend(batch)
    return out


def test_retransmit_limit_grows_with_log10_of_the_campus() -> None:
    queue = BroadcastQueue(retransmit_mult=4)
    assert [queue.limit(n) for n in (1, 9, 10, 99, 100, 999)] == [4, 4, 8, 8, 12, 12]


def test_each_update_is_sent_exactly_its_budget_then_forgotten() -> None:
    queue = BroadcastQueue(retransmit_mult=3)
    for name in ("a", "b", "c"):
        queue.add(name, name.upper(), 10)
    sent = drain(queue, members=50, budget_bytes=25)  # two items per datagram
    limit = queue.limit(50)
    assert limit == 6
    assert sorted(sent) == sorted(["A", "B", "C"] * limit)
    assert len(queue) == 0


def test_least_sent_goes_first_so_fresh_news_is_not_starved() -> None:
    queue = BroadcastQueue(retransmit_mult=4)
    queue.add("old", "OLD", 10)
    queue.take(15, 9)  # OLD sent once
    queue.add("new", "NEW", 10)
    assert queue.take(15, 9) == ["NEW"]


def test_a_newer_update_about_the_same_subject_replaces_the_older() -> None:
    queue = BroadcastQueue(retransmit_mult=2)
    queue.add("a", "A", 10)
    queue.add("a", "A2", 10)
    assert drain(queue, 9) == ["A2", "A2"]


def test_a_group_is_cleared_at_once_and_its_other_subjects_survive_each_other() -> None:
    queue = BroadcastQueue(retransmit_mult=1)
    queue.add(("m", "x", "p1"), "S1", 10, group=("m", "x"))
    queue.add(("m", "x", "p2"), "S2", 10, group=("m", "x"))
    queue.add("other", "O", 10)
    assert len(queue) == 3
    queue.drop_group(("m", "x"))
    assert drain(queue, 9) == ["O"]


def table(peers: int) -> Membership:
    m = Membership("me", "127.0.0.1", 1000, probe_interval_s=1.0, suspicion_mult=5, suspicion_max_mult=6,
                   awareness_max=8, suspicion_confirmations=3, retransmit_mult=4, dead_reap_s=60, clock=lambda: 100.0,
                   rng=random.Random(1))
    for index in range(peers):
        m.apply(MemberUpdate(f"p{index}", "127.0.0.1", 2000 + index, 0, Status.ALIVE))
    drain(m.queue, peers + 1)
    return m


def suspect(node: str, by: str, inc: int = 0) -> MemberUpdate:
    return MemberUpdate(node, "127.0.0.1", 2000, inc, Status.SUSPECT, by)


def test_an_older_confirmation_is_not_lost_to_a_newer_one_before_it_is_sent() -> None:
    m = table(20)
    m.apply(suspect("p0", "p1"))  # the first suspicion
    m.apply(suspect("p0", "p2"))  # confirmations, queued before anything was sent
    m.apply(suspect("p0", "p3"))
    sent = drain(m.queue, len(m.members))
    confirmers = {u.by for u in sent if u.node == "p0" and u.status == Status.SUSPECT}
    assert confirmers == {"p1", "p2", "p3"}
    limit = m.queue.limit(len(m.members))
    assert all(sum(1 for u in sent if u.by == by) == limit for by in confirmers)  # each its full budget


def test_confirmations_beyond_the_expected_count_are_not_relayed() -> None:
    m = table(20)  # expected confirmations: 3
    m.apply(suspect("p0", "p1"))
    for by in ("p2", "p3", "p4", "p5", "p6"):
        m.apply(suspect("p0", by))
    confirmers = {u.by for u in drain(m.queue, len(m.members)) if u.node == "p0"}
    assert confirmers == {"p1", "p2", "p3", "p4"}  # the first suspecter and three confirmations


def test_a_refutation_drops_the_moot_confirmations() -> None:
    m = table(20)
    m.apply(suspect("p0", "p1"))
    m.apply(suspect("p0", "p2"))
    m.apply(MemberUpdate("p0", "127.0.0.1", 2000, 1, Status.ALIVE))  # p0 refutes at incarnation 1
    about_p0 = [u for u in drain(m.queue, len(m.members)) if u.node == "p0"]
    assert {(u.status, u.incarnation) for u in about_p0} == {(Status.ALIVE, 1)}


def test_a_death_supersedes_queued_suspicions() -> None:
    m = table(20)
    m.apply(suspect("p0", "p1"))
    m.apply(suspect("p0", "p2"))
    m.apply(MemberUpdate("p0", "127.0.0.1", 2000, 0, Status.DEAD, "p3"))
    about_p0 = [u for u in drain(m.queue, len(m.members)) if u.node == "p0"]
    assert {u.status for u in about_p0} == {Status.DEAD}
