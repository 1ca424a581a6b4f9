"""Scuttlebutt state: replicas converge to the owner whatever the delivery order, loss and splitting."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bessgw.federation.state import StateStore, split_items, split_parts
from bessgw.federation.wire import DeltaPart, pack

keys = st.sampled_from([f"unit/u{i}" for i in range(6)] + ["gw"])
writes = st.lists(st.tuples(keys, st.one_of(st.none(), st.integers(0, 1000).map(lambda n: {"soc": n}))),
                  max_size=40)


def snapshot(store: StateStore, owner: str) -> dict[str, object]:
    return {key: value for key, _, value in store.items(owner) if value is not None}


def full_sync(source: StateStore, replica: StateStore, names: list[str]) -> None:
    """One anti-entropy exchange: replica's digest -> source's deltas, split small."""
    for group in split_parts(source.deltas_for(replica.digest(names)), 120):
        for part in group:
            replica.apply_delta(part)


@given(writes, st.randoms(use_true_random=False), st.floats(0, 0.9))
@settings(max_examples=150, deadline=None)
def test_replica_converges_through_lossy_gossip_and_one_repair(ops, rnd: random.Random, loss: float) -> None:
    owner, relay, replica = StateStore("a", 7), StateStore("b", 1), StateStore("c", 1)
    sent = []
    for key, value in ops:
        entry = owner.set(key, value)
        if entry is not None:
            sent.append(entry)
    rnd.shuffle(sent)
    for entry in sent:  # gossip: lossy, reordered, via a relay too
        if rnd.random() >= loss:
            replica.apply_entry(entry)
        if rnd.random() >= loss:
            relay.apply_entry(entry)
    full_sync(owner, relay, ["a"])  # the relay repairs from the owner,
    full_sync(relay, replica, ["a"])  # the replica only ever talks to the relay
    assert snapshot(replica, "a") == snapshot(owner, "a")
    mark = replica.owners["a"].watermark if "a" in replica.owners else 0
    assert mark == owner.mine.watermark
    # once converged, digests agree and nothing more is exchanged
    if mark:
        assert [d for d in replica.digest(["a"]) if d.owner == "a"] == owner.digest([])
    assert owner.deltas_for(replica.digest(["a"])) == []


@given(writes, st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_lost_parts_never_advance_the_watermark_past_a_gap(ops, rnd: random.Random) -> None:
    owner, replica = StateStore("a", 7), StateStore("c", 1)
    for key, value in ops:
        owner.set(key, value)
    groups = split_parts(owner.deltas_for(replica.digest(["a"])), 100)
    kept = [part for group in groups for part in group if rnd.random() < 0.5]
    rnd.shuffle(kept)
    for part in kept:
        replica.apply_delta(part)
    # whatever the watermark claims, the replica holds every current key at or below it
    mark = replica.owners["a"].watermark if "a" in replica.owners else 0
    for key, version, value in owner.items("a"):
        if version <= mark:
            assert dict((k, v) for k, _, v in replica.items("a")).get(key, "missing") == value
    full_sync(owner, replica, ["a"])
    assert snapshot(replica, "a") == snapshot(owner, "a")


def test_split_parts_respects_the_budget_and_chains() -> None:
    owner = StateStore("a", 7)
    for index in range(200):
        owner.set(f"unit/u{index}", {"soc": index, "name": "x" * 20})
    groups = split_parts(owner.deltas_for(StateStore("b", 1).digest(["a"])), 1000)
    assert len(groups) > 5
    chain = 0
    for group in groups:
        assert len(pack([p.to_wire() for p in group])) <= 1000
        for part in group:
            assert part.base == chain
            chain = part.entries[-1][1] if part.entries else part.upto
    assert groups[-1][-1].upto == owner.mine.watermark


def test_newer_generation_replaces_the_old_one_entirely() -> None:
    replica = StateStore("c", 1)
    old = StateStore("a", 100)
    old.set("unit/gone", {"soc": 1})
    old.set("unit/kept", {"soc": 2})
    full_sync(old, replica, ["a"])
    restarted = StateStore("a", 200)  # the gateway restarted without unit/gone
    restarted.set("unit/kept", {"soc": 3})
    full_sync(restarted, replica, ["a"])
    assert snapshot(replica, "a") == {"unit/kept": {"soc": 3}}
    # an old-generation straggler (a slow relay) can no longer win
    replica.apply_delta(DeltaPart("a", 100, 0, 2, (("unit/gone", 1, {"soc": 1}),)))
    assert snapshot(replica, "a") == {"unit/kept": {"soc": 3}}


def test_tombstones_replicate_and_own_keys_are_never_overwritten() -> None:
    owner, replica = StateStore("a", 7), StateStore("c", 1)
    owner.set("unit/u1", {"soc": 1})
    full_sync(owner, replica, ["a"])
    replica.apply_entry(owner.delete("unit/u1"))
    assert snapshot(replica, "a") == {}
    assert owner.set("unit/u1", {"soc": 1}) is not None  # re-adding after a delete is a new version
    assert owner.set("unit/u1", {"soc": 1}) is None  # unchanged: nothing to send
    forged = DeltaPart("a", 7, 0, 99, (("unit/u1", 99, {"soc": 666}),))
    owner.apply_delta(forged)
    assert snapshot(owner, "a") == {"unit/u1": {"soc": 1}}


def test_owners_the_membership_does_not_accept_are_ignored() -> None:
    replica = StateStore("c", 1, accept=lambda owner: owner != "left")
    owner = StateStore("left", 5)
    owner.set("unit/u1", {"soc": 1})
    full_sync(owner, replica, ["left"])
    assert "left" not in replica.owners


def test_behind_lists_what_we_lack() -> None:
    ahead, behind = StateStore("a", 7), StateStore("c", 1)
    ahead.set("k", {"v": 1})
    missing = behind.behind(ahead.digest([]))
    assert [(d.owner, d.watermark) for d in missing] == [("a", 0)]
    assert ahead.behind(behind.digest(["a"])) == []


def test_split_items_keeps_every_item_once() -> None:
    items = list(range(100))
    groups = split_items(items, 50, lambda item: 7)
    assert [i for g in groups for i in g] == items
    assert all(len(g) * 7 <= 50 for g in groups)
