"""Property test of the share protocol: the campus never commands more than its setpoint.

A simulated clock and network drive the real protocol code (:mod:`bessgw.campus.protocol`: allocator step,
gateway side, fencing clock). etcd is modelled as what it guarantees: one linearizable store with
revisions, guarded txns and leases that expire ``TTL`` after the last renewal that reached it, deleting
their keys. The network delays, loses and partitions messages; gateways crash, restart and pause. A
"leader cut" models the measured etcd 3.4 behaviour: the gateway stays attached to an old leader that is
cut off from the majority, which answers its keepalives without renewing anything for up to 1.5 election
timeouts and serves no linearizable operation, while the majority elects a new leader within 1-2 election
timeouts, which (as etcd's lessor does on promotion) restarts every lease at the full TTL. Until then the
cluster has no leader: no request commits for any gateway and no lease expires (only a leader's lessor
revokes, and a revocation is a Raft proposal the cut-off old leader cannot commit). Gateways poll
with linearizable reads (the real service also watches; the watch only makes things faster, safety never
depends on it).

The checked invariant, at every instant: all gateways that command power for the campus command it with
one sign, and the sum of ``|P|`` is at most the largest ``|setpoint|`` that any of them (or the store)
currently stands on. With a steady setpoint that is exactly ``Σ ≤ |setpoint|``; while a setpoint is being
lowered, gateways still on the old one are bounded by the old one (no device can lower its power before
it hears of the change).

Two deliberately broken variants show the checker can fail: increases written before decreases are
acknowledged, and gateways that ignore their fencing deadline.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bessgw.campus.allocation import GatewayAvailability
from bessgw.campus.fencing import FenceClock
from bessgw.campus.protocol import (
    GatewaySide,
    Keys,
    KeyValue,
    Put,
    Txn,
    allocator_step,
    decode_state,
    election_txn,
)
from bessgw.campus.records import AllocatorClaim, Applied, CampusSetpoint, Presence, Share

TTL_S = 5.0
ELECTION_S = 1.0
HOLD_S = 3.0
STALE_WINDOW_S = 1.5
KEYS = Keys("/c/")


class Violation(AssertionError):
    pass


@dataclass
class Store:
    """etcd as a linearizable store with leases (the model)."""

    kv: dict[str, KeyValue] = field(default_factory=dict)
    revision: int = 1
    leases: dict[int, float] = field(default_factory=dict)  # lease id -> expiry time
    lease_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    setpoints: dict[int, float] = field(default_factory=lambda: {0: 0.0})  # revision -> p_kw
    #: between a leader cut and the new leader's election the cluster has no leader: nothing commits and no
    #: lease expires (only a leader's lessor revokes, through Raft), until promotion restarts every lease
    leaderless: bool = False

    def expire(self, now: float) -> None:
        if self.leaderless:
            return
        for lease_id, expiry in list(self.leases.items()):
            if expiry <= now:
                del self.leases[lease_id]
                for key in [k for k, v in self.kv.items() if v.lease_id == lease_id]:
                    self.revision += 1
                    del self.kv[key]

    def grant(self, now: float) -> int:
        lease_id = next(self.lease_ids)
        self.leases[lease_id] = now + TTL_S
        return lease_id

    def keepalive(self, lease_id: int, now: float) -> float:
        if lease_id not in self.leases:
            return 0.0
        self.leases[lease_id] = now + TTL_S
        return TTL_S

    def read(self, prefix: str) -> tuple[int, list[KeyValue]]:
        return self.revision, [v for k, v in sorted(self.kv.items()) if k.startswith(prefix)]

    def txn(self, txn: Txn) -> bool:
        for guard in txn.guards:
            entry = self.kv.get(guard.key)
            actual = 0 if entry is None else (entry.mod_revision if guard.target == "mod" else entry.create_revision)
            if actual != guard.revision:
                return False
        if any(put.lease_id and put.lease_id not in self.leases for put in txn.puts):
            return False  # etcd refuses the whole txn: lease not found
        self.revision += 1
        for put in txn.puts:
            old = self.kv.get(put.key)
            created = old.create_revision if old is not None else self.revision
            self.kv[put.key] = KeyValue(put.key, put.value, self.revision, created, put.lease_id)
            if put.key == KEYS.setpoint:
                self.setpoints[self.revision] = CampusSetpoint.decode(put.value).p_kw
        return True

    def delete(self, key: str) -> None:
        if key in self.kv:
            self.revision += 1
            del self.kv[key]

    def setpoint_now(self) -> float:
        entry = self.kv.get(KEYS.setpoint)
        return 0.0 if entry is None else self.setpoints[entry.mod_revision]


@dataclass
class Gateway:
    gateway_id: str
    side: GatewaySide
    discharge_kw: float
    charge_kw: float
    alive: bool = True
    paused: bool = False
    partitioned_since: float | None = None
    stale_leader: bool = False
    incarnation: int = 0
    lease_pending: bool = False


class TrustingSide(GatewaySide):
    """A gateway side that acts on every share it is given, unchecked (what GatewaySide did before it
    checked a share asking for more against the campus setpoint): the checker must catch it."""

    def verify(self, state, now_wall_s: float) -> bool:
        if self.pending is None:
            return False
        share, mod_revision = self.pending
        self.pending = None
        return self._act_on(share, mod_revision)


class Simulation:
    """One history: random delays and losses from ``seed``, faults and setpoints from the schedule."""

    def __init__(self, seed: int, gateways: int, loss: float, max_delay_s: float, *,
                 wait_for_acknowledgements: bool = True, fenced: bool = True, checked: bool = True) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.max_delay_s = max_delay_s
        self.wait = wait_for_acknowledgements
        self.fenced = fenced
        self.checked = checked
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.store = Store()
        self.gateways = {
            f"gw{i}": Gateway(f"gw{i}", self._side(f"gw{i}"), self.rng.uniform(20, 120), self.rng.uniform(20, 120))
            for i in range(gateways)
        }
        self.max_sum_seen = 0.0
        for gateway in self.gateways.values():
            self.at(self.rng.uniform(0, 0.5), lambda g=gateway: self.start(g))

    def _side(self, gateway_id: str) -> GatewaySide:
        side = GatewaySide if self.checked else TrustingSide
        return side(gateway_id, FenceClock(TTL_S, ELECTION_S, HOLD_S))

    # -- event loop and network
    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, (when, next(self.seq), action))

    def run(self, until_s: float) -> None:
        while self.events and self.events[0][0] <= until_s:
            self.now, _, action = heapq.heappop(self.events)
            self.store.expire(self.now)
            action()
            self.check()

    def request(self, gateway: Gateway, operation: Callable[[], object], reply: Callable[[object], None],
                keepalive_lease: int = 0) -> None:
        """Send ``operation`` to the store; ``reply`` runs at the gateway if the answer gets back."""
        incarnation = gateway.incarnation
        if self.rng.random() < self.loss:
            return
        if gateway.partitioned_since is not None:
            stale = gateway.stale_leader and self.now - gateway.partitioned_since < STALE_WINDOW_S
            if keepalive_lease and stale:  # a cut-off old leader answers without renewing anything
                self.at(self.now + self.rng.uniform(0, self.max_delay_s),
                        lambda: self.deliver(gateway, incarnation, reply, TTL_S))
            return
        if self.store.leaderless:  # no leader yet: the request times out, for every gateway alike
            return

        def arrive() -> None:
            result = operation()
            if self.rng.random() >= self.loss:
                self.at(self.now + self.rng.uniform(0, self.max_delay_s),
                        lambda: self.deliver(gateway, incarnation, reply, result))

        self.at(self.now + self.rng.uniform(0, self.max_delay_s), arrive)

    def deliver(self, gateway: Gateway, incarnation: int, reply: Callable[[object], None], result: object) -> None:
        if gateway.incarnation != incarnation or not gateway.alive or gateway.paused:
            return
        if gateway.partitioned_since is not None and not isinstance(result, float):
            return
        reply(result)

    # -- one gateway's loops
    def start(self, gateway: Gateway) -> None:
        self.grant(gateway)
        self.every(gateway, TTL_S / 3, self.keepalive)
        self.every(gateway, 0.3, self.poll)
        self.every(gateway, 0.25, self.allocate)

    def every(self, gateway: Gateway, period: float, action: Callable[[Gateway], None]) -> None:
        incarnation = gateway.incarnation

        def tick() -> None:
            if gateway.incarnation != incarnation:
                return
            if gateway.alive and not gateway.paused:
                action(gateway)
            self.at(self.now + period * self.rng.uniform(0.9, 1.1), tick)

        self.at(self.now + period * self.rng.uniform(0, 1), tick)

    def grant(self, gateway: Gateway) -> None:
        if gateway.lease_pending:
            return
        gateway.lease_pending = True
        sent = self.now

        def granted(lease_id: object) -> None:
            gateway.lease_pending = False
            gateway.side.new_lease(int(lease_id), sent)
            presence = Presence(gateway.gateway_id, 1.0).encode()
            self.request(gateway, lambda: self.store.txn(Txn((), (Put(KEYS.gateway(gateway.gateway_id), presence,
                                                                         int(lease_id)),))), lambda ok: None)

        self.request(gateway, lambda: self.store.grant(self.now), granted)
        incarnation = gateway.incarnation
        self.at(self.now + 1.0, lambda: self._grant_timeout(gateway, incarnation))

    def _grant_timeout(self, gateway: Gateway, incarnation: int) -> None:
        if gateway.incarnation == incarnation:
            gateway.lease_pending = False

    def keepalive(self, gateway: Gateway) -> None:
        side = gateway.side
        if side.lease_id == 0:
            self.grant(gateway)
            return
        sent, lease_id = self.now, side.lease_id

        def answered(ttl: object) -> None:
            if side.lease_id != lease_id:
                return
            if float(ttl) > 0:
                side.fence.keepalive_ok(sent)
            else:
                side.lease_lost()
                self.grant(gateway)

        self.request(gateway, lambda: self.store.keepalive(lease_id, self.now), answered, keepalive_lease=lease_id)

    def poll(self, gateway: Gateway) -> None:
        side, sent = gateway.side, self.now
        key = KEYS.share(gateway.gateway_id)

        def answered(result: object) -> None:
            revision, kvs = result  # type: ignore[misc]
            side.fence.linearizable_ok(sent)
            if kvs:
                side.share_seen(kvs[0].value, kvs[0].mod_revision, kvs[0].lease_id)
            else:
                side.share_absent(revision)
            if side.pending is not None:  # a share asking for more: acted on once a read explains it
                self.verify(gateway)
            self.acknowledge(gateway)

        self.request(gateway, lambda: self.store.read(key), answered)

    def verify(self, gateway: Gateway) -> None:
        side = gateway.side

        def answered(result: object) -> None:
            revision, kvs = result  # type: ignore[misc]
            side.verify(decode_state(revision, kvs, KEYS), 0.0)
            self.acknowledge(gateway)

        self.request(gateway, lambda: self.store.read(KEYS.prefix), answered)

    def acknowledge(self, gateway: Gateway) -> None:
        side = gateway.side
        ack = side.pending_acknowledgement(self.now, 0.0)
        if ack is None:
            return
        lease_id, sent = side.lease_id, self.now
        txn = Txn((), (Put(KEYS.applied(gateway.gateway_id), ack.encode(), lease_id),))

        def answered(ok: object) -> None:
            if ok:
                side.acknowledged(ack.share_revision)
                side.fence.linearizable_ok(sent)

        self.request(gateway, lambda: self.store.txn(txn), answered)

    def allocate(self, gateway: Gateway) -> None:
        side = gateway.side
        if side.lease_id == 0:
            return
        lease_id = side.lease_id

        def answered(result: object) -> None:
            revision, kvs = result  # type: ignore[misc]
            state = decode_state(revision, kvs, KEYS)
            if state.allocator_id is None:
                claim = AllocatorClaim(gateway.gateway_id, 1.0)
                self.request(gateway, lambda: self.store.txn(election_txn(KEYS, claim, lease_id)), lambda ok: None)
                return
            if state.allocator_id != gateway.gateway_id or state.allocator_lease_id != lease_id:
                return
            step = allocator_step(state, KEYS, self.availability, 0.0, wait_for_acknowledgements=self.wait)
            if step.txn is not None:
                self.request(gateway, lambda: self.store.txn(step.txn), lambda ok: None)

        self.request(gateway, lambda: self.store.read(KEYS.prefix), answered)

    def availability(self, gateway_ids):
        return [GatewayAvailability(g, self.gateways[g].charge_kw, self.gateways[g].discharge_kw, 50.0)
                for g in gateway_ids]

    # -- faults and commands
    def set_setpoint(self, p_kw: float | None) -> None:
        if p_kw is None:
            self.store.delete(KEYS.setpoint)
            return
        record = CampusSetpoint(p_kw, 0.0, f"c{self.store.revision}", "test", "", "op", 1.0, None)
        self.store.txn(Txn((), (Put(KEYS.setpoint, record.encode()),)))

    def fault(self, kind: str, gateway: Gateway, duration_s: float) -> None:
        if kind in ("partition", "leader_cut"):
            gateway.partitioned_since, gateway.stale_leader = self.now, kind == "leader_cut"
            self.at(self.now + duration_s, lambda: setattr(gateway, "partitioned_since", None))
            if kind == "leader_cut":
                self.store.leaderless = True
                self.at(self.now + ELECTION_S * self.rng.uniform(1.0, 2.0), self.promote_new_leader)
        elif kind == "pause":
            gateway.paused = True
            self.at(self.now + duration_s, lambda: setattr(gateway, "paused", False))
        elif kind == "crash":
            gateway.alive = False
            self.at(self.now + duration_s, lambda: self.restart(gateway))
        elif kind == "capacity":
            gateway.discharge_kw = self.rng.uniform(0, 120)
            gateway.charge_kw = self.rng.uniform(0, 120)
        elif kind == "hostile":  # someone with etcd credentials (or a broken allocator) writes a share
            self.hostile_share(gateway, duration_s)

    def hostile_share(self, gateway: Gateway, factor: float) -> None:
        """A well-formed share of ``factor`` x the setpoint for ``gateway``, on its lease, naming the setpoint
        in force: only the gateway side's check against the setpoint stands between it and the devices."""
        setpoint = self.store.kv.get(KEYS.setpoint)
        presence = self.store.kv.get(KEYS.gateway(gateway.gateway_id))
        if setpoint is None or presence is None:
            return
        p_kw = self.store.setpoints[setpoint.mod_revision] * max(factor, 1.5)
        share = Share(gateway.gateway_id, p_kw, 0.0, setpoint.mod_revision, "hostile", None)
        self.store.txn(Txn((), (Put(KEYS.share(gateway.gateway_id), share.encode(), presence.lease_id),)))

    def promote_new_leader(self) -> None:
        """etcd's lessor on promotion: every lease expires TTL (+ an extension, left out here) from now."""
        self.store.leaderless = False
        for lease_id in self.store.leases:
            self.store.leases[lease_id] = self.now + TTL_S

    def restart(self, gateway: Gateway) -> None:
        gateway.incarnation += 1
        gateway.alive, gateway.lease_pending = True, False
        gateway.side = self._side(gateway.gateway_id)
        self.start(gateway)

    # -- the invariant
    def commanded(self, gateway: Gateway) -> tuple[float, int]:
        """What the gateway's units are commanded for the campus now (a crashed or paused gateway's last
        command stands until its fencing deadline: the device watchdog and the pre-write check)."""
        side = gateway.side
        share = side.share if not self.fenced else side.commanded(self.now, 0.0)
        if share is None:
            return 0.0, 0
        return share.p_kw, share.setpoint_revision

    def check(self) -> None:
        powers = [self.commanded(g) for g in self.gateways.values()]
        active = [(p, rev) for p, rev in powers if p != 0.0]
        if not active:
            return
        if len({p > 0 for p, _ in active}) > 1:
            raise Violation(f"t={self.now:.3f}: gateways command opposite signs: {active}")
        bound = max([abs(self.store.setpoint_now())] + [abs(self.store.setpoints[rev]) for _, rev in active])
        total = sum(abs(p) for p, _ in active)
        self.max_sum_seen = max(self.max_sum_seen, total)
        if total > bound * (1 + 1e-9) + 1e-6:
            raise Violation(f"t={self.now:.3f}: campus commands {total:.3f} kW > |setpoint| {bound:.3f} kW: {active}")


schedule_item = st.tuples(
    st.floats(0.5, 40.0),
    st.sampled_from(["partition", "leader_cut", "pause", "crash", "capacity", "setpoint", "hostile"]),
    st.integers(0, 3),
    st.floats(0.2, 16.0),
    st.one_of(st.none(), st.floats(-400, 400)),
)


def run_history(seed: int, gateways: int, loss: float, max_delay_s: float, schedule, **variant) -> Simulation:
    sim = Simulation(seed, gateways, loss, max_delay_s, **variant)
    sim.at(1.0, lambda: sim.set_setpoint(150.0))
    for when, kind, index, duration, p_kw in schedule:
        gateway = sim.gateways[f"gw{index % gateways}"]
        if kind == "setpoint":
            sim.at(when, lambda p=p_kw: sim.set_setpoint(p))
        else:
            sim.at(when, lambda k=kind, g=gateway, d=duration: sim.fault(k, g, d))
    sim.run(50.0)
    return sim


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    gateways=st.integers(2, 4),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    max_delay_s=st.sampled_from([0.002, 0.05, 0.4]),
    schedule=st.lists(schedule_item, max_size=12),
)
def test_the_campus_never_commands_more_than_its_setpoint(seed, gateways, loss, max_delay_s, schedule) -> None:
    sim = run_history(seed, gateways, loss, max_delay_s, schedule)
    assert sim.store.revision > 5  # the history did something


def test_a_steady_campus_delivers_its_setpoint() -> None:
    """Liveness, so that the safety property is not won by doing nothing."""
    sim = run_history(7, 3, 0.0, 0.01, [])
    total = sum(abs(sim.commanded(g)[0]) for g in sim.gateways.values())
    capacity = sum(g.discharge_kw for g in sim.gateways.values())
    assert abs(total - min(150.0, capacity)) < 1e-6


def _first_violation(**variant) -> str:
    schedule = [(8.0, "capacity", 0, 1.0, None), (12.0, "capacity", 1, 1.0, None), (16.0, "leader_cut", 2, 12.0, None),
                (20.0, "capacity", 0, 1.0, None), (24.0, "setpoint", 0, 1.0, 300.0), (30.0, "crash", 1, 6.0, None),
                (33.0, "capacity", 2, 1.0, None)]
    for seed in range(40):
        try:
            run_history(seed, 3, 0.05, 0.4, schedule, **variant)
        except Violation as err:
            return str(err)
    return ""


def test_the_checker_catches_increases_before_decreases_are_acknowledged() -> None:
    assert _first_violation(wait_for_acknowledgements=False)
    assert not _first_violation()


def test_the_checker_catches_a_gateway_that_ignores_its_fencing_deadline() -> None:
    assert _first_violation(fenced=False)


def test_a_hostile_share_is_caught_by_the_checker_and_refused_by_the_gateway_side() -> None:
    schedule = [(6.0 + 3.0 * i, "hostile", i, 2.0 + i, None) for i in range(6)]
    caught = ""
    for seed in range(10):
        try:
            run_history(seed, 3, 0.05, 0.05, schedule, checked=False)
        except Violation as err:
            caught = str(err)
            break
    assert caught  # a gateway side that trusts every share over-delivers
    for seed in range(10):
        sim = run_history(seed, 3, 0.05, 0.05, schedule)  # the same histories, checked: no violation
        assert sum(gateway.side.refused_count for gateway in sim.gateways.values()) >= 1


def test_allocated_shares_are_acknowledged_records() -> None:
    sim = run_history(3, 2, 0.0, 0.01, [])
    acks = [v for k, v in sim.store.kv.items() if k.startswith(KEYS.prefix + "applied/")]
    assert acks and all(Applied.decode(v.value).share_revision > 0 for v in acks)
