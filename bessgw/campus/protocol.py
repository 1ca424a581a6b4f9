"""The share protocol as pure state machines: no I/O, no clock of their own (times are passed in).

Keys under the campus prefix ``P`` (all JSON records of :mod:`bessgw.campus.records`)::

    P/setpoint            the campus setpoint (no lease: it outlives every gateway)
    P/allocator           who allocates, on that gateway's lease      ("absent -> put with my lease")
    P/allocation          the allocator's last committed step (serialises every share-writing txn)
    P/gateways/<id>       gateway presence, on the gateway's lease     (its share may move once this is gone)
    P/shares/<id>         the gateway's share, on the *gateway's* lease (it vanishes with the gateway)
    P/applied/<id>        the gateway's acknowledgement, on the gateway's lease
    P.commands/<id>       campus command ids committed (idempotency), on a retention lease: beside the
                          prefix, not under it, so a day of commands does not grow the allocator's read

**Allocator side** (:func:`allocator_step`): read the whole prefix linearizably, split the setpoint over
the gateways present, and write the next step of the transition (:mod:`bessgw.campus.allocation`:
decreases first; increases only once every current share is acknowledged) in one txn guarded on the
allocator key's mod revision (still me), the setpoint's mod revision (still that setpoint), the allocation
key's mod revision (no other step committed since the read: without it, two steps computed from different
reads — say one before a gateway rejoined and one after — could each be safe alone and over-deliver
together; the property test found exactly that), and for each written gateway its presence key's create
revision (still that lease) and its share's mod revision. A share of a gateway whose presence key is gone
is never given away before the key is gone: until then it is in the read.

**Gateway side** (:class:`GatewaySide`): act on the newest share bound to the current lease until the
fencing deadline (:mod:`bessgw.campus.fencing`), or its expiry; stop at once on a deletion, a corrupt
value, or a lost lease; acknowledge the revision it acts on. A share that asks for *more* than the gateway
acts on is not trusted on its word: it is acted on only once a linearizable read of the prefix shows that
the campus setpoint explains it (:func:`share_explained`: a setpoint is in force, the share was computed
from it or an earlier one, and the shares of every gateway together stay within it). Anyone holding etcd
credentials, or an allocator with a bug, could otherwise make a gateway deliver more than the campus
setpoint; such a share is refused (counted once, not acknowledged) and checked again whenever the prefix
changes, until it is explained — a benign race with a newer setpoint resolves so — or the allocator's next
step overwrites it. Less power never waits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bessgw.campus.allocation import (
    UNKNOWN,
    CampusSplit,
    GatewayAvailability,
    TransitionStep,
    split_setpoint,
    transition,
)
from bessgw.campus.fencing import FenceClock
from bessgw.campus.records import AllocationRecord, AllocatorClaim, Applied, CampusSetpoint, Share
from bessgw.errors import CorruptRecordError
from bessgw.model import no_more_power


@dataclass(frozen=True)
class Keys:
    """The key layout under one campus prefix (``/bessgw/campus/`` by default)."""

    prefix: str

    @property
    def setpoint(self) -> str:
        return self.prefix + "setpoint"

    @property
    def allocator(self) -> str:
        return self.prefix + "allocator"

    @property
    def allocation(self) -> str:
        return self.prefix + "allocation"

    def command(self, command_id: str) -> str:
        """Outside the prefix on purpose (module docstring)."""
        return f"{self.prefix.rstrip('/')}.commands/{command_id}"

    def gateway(self, gateway_id: str) -> str:
        return f"{self.prefix}gateways/{gateway_id}"

    def share(self, gateway_id: str) -> str:
        return f"{self.prefix}shares/{gateway_id}"

    def applied(self, gateway_id: str) -> str:
        return f"{self.prefix}applied/{gateway_id}"

    def parse(self, key: str) -> tuple[str, str]:
        """``(kind, gateway or command id)`` of a key under the prefix; ``("", "")`` for anything else."""
        if not key.startswith(self.prefix):
            return "", ""
        rest = key[len(self.prefix):]
        if rest in ("setpoint", "allocator", "allocation"):
            return rest, ""
        kind, _, ident = rest.partition("/")
        if kind in ("gateways", "shares", "applied") and ident and "/" not in ident:
            return kind, ident
        return "", ""


@dataclass(frozen=True)
class KeyValue:
    """One key as read from the store (the store's types never leave the client)."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease_id: int


@dataclass(frozen=True)
class Guard:
    """Compare ``key``'s ``target`` (``"mod"`` or ``"create"`` revision; 0 = absent) ``== revision``."""

    key: str
    target: str
    revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease_id: int = 0


@dataclass(frozen=True)
class Txn:
    """All ``guards`` hold -> all ``puts`` happen, atomically at one revision; else nothing happens."""

    guards: tuple[Guard, ...]
    puts: tuple[Put, ...]


@dataclass(frozen=True)
class ShareEntry:
    share: Share | None  # None: the stored value is corrupt
    mod_revision: int
    lease_id: int


@dataclass(frozen=True)
class CampusState:
    """One linearizable read of the whole prefix, decoded; corrupt values are ``None`` and counted."""

    revision: int
    setpoint: CampusSetpoint | None = None
    setpoint_mod_revision: int = 0
    allocator_id: str | None = None
    allocator_mod_revision: int = 0
    allocator_lease_id: int = 0
    allocation: AllocationRecord | None = None
    allocation_mod_revision: int = 0
    #: gateway id -> (lease id, create revision of its presence key)
    gateways: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    shares: Mapping[str, ShareEntry] = field(default_factory=dict)
    #: gateway id -> (acknowledgement or None if corrupt, its lease id)
    applied: Mapping[str, tuple[Applied | None, int]] = field(default_factory=dict)
    corrupt_keys: tuple[str, ...] = ()

    def acknowledged(self, gateway_id: str) -> bool:
        """Whether the gateway acknowledged the share it holds (trivially, when it holds none)."""
        entry = self.shares.get(gateway_id)
        if entry is None:
            return True
        lease_id, _ = self.gateways.get(gateway_id, (0, 0))
        applied, applied_lease = self.applied.get(gateway_id, (None, 0))
        return applied is not None and applied_lease == lease_id and applied.share_revision >= entry.mod_revision


def decode_state(revision: int, kvs: Iterable[KeyValue], keys: Keys) -> CampusState:
    """Build a :class:`CampusState` from a prefix read. A corrupt setpoint counts as no setpoint (everything
    decreases to 0), a corrupt share as an unknown value (overwritten with 0 first), a corrupt
    acknowledgement as none; their keys are listed in ``corrupt_keys`` for the caller to count."""
    setpoint, setpoint_rev = None, 0
    allocator, allocator_rev, allocator_lease = None, 0, 0
    allocation, allocation_rev = None, 0
    gateways: dict[str, tuple[int, int]] = {}
    shares: dict[str, ShareEntry] = {}
    applied: dict[str, tuple[Applied | None, int]] = {}
    corrupt: list[str] = []
    for kv in kvs:
        kind, ident = keys.parse(kv.key)
        try:
            if kind == "setpoint":
                setpoint_rev = kv.mod_revision
                setpoint = CampusSetpoint.decode(kv.value, kv.key)
            elif kind == "allocator":
                allocator_rev, allocator_lease = kv.mod_revision, kv.lease_id
                allocator = AllocatorClaim.decode(kv.value, kv.key).gateway_id
            elif kind == "allocation":
                allocation_rev = kv.mod_revision
                allocation = AllocationRecord.decode(kv.value, kv.key)
            elif kind == "gateways":
                gateways[ident] = (kv.lease_id, kv.create_revision)  # the key's existence is what counts
            elif kind == "shares":
                shares[ident] = ShareEntry(None, kv.mod_revision, kv.lease_id)
                share = Share.decode(kv.value, kv.key)
                if share.gateway_id != ident:
                    raise CorruptRecordError(f"share of {share.gateway_id!r} under the key of {ident!r}", kv.key)
                shares[ident] = ShareEntry(share, kv.mod_revision, kv.lease_id)
            elif kind == "applied":
                applied[ident] = (None, kv.lease_id)
                ack = Applied.decode(kv.value, kv.key)
                applied[ident] = (ack if ack.gateway_id == ident else None, kv.lease_id)
        except CorruptRecordError:
            corrupt.append(kv.key)
    return CampusState(revision, setpoint, setpoint_rev, allocator, allocator_rev, allocator_lease, allocation,
                       allocation_rev, gateways, shares, applied, tuple(corrupt))


def election_txn(keys: Keys, claim: AllocatorClaim, lease_id: int) -> Txn:
    """Take the allocator role: the key is absent -> put it with my lease (it leaves with my lease)."""
    return Txn((Guard(keys.allocator, "create", 0),), (Put(keys.allocator, claim.encode(), lease_id),))


@dataclass(frozen=True)
class AllocatorStep:
    """One allocator decision: the transition step, the split it aims at, and the txn to commit (if any)."""

    step: TransitionStep
    split: CampusSplit
    txn: Txn | None


def effective_setpoint(state: CampusState, now_wall_s: float) -> tuple[float, float]:
    """What the campus should deliver now: the setpoint, or 0 when there is none or it expired."""
    setpoint = state.setpoint
    if setpoint is None or setpoint.expired(now_wall_s):
        return 0.0, 0.0
    return setpoint.p_kw, setpoint.q_kvar


Availability = Callable[[Sequence[str]], Sequence[GatewayAvailability]]


def allocator_step(state: CampusState, keys: Keys, availability: Availability, now_wall_s: float, *,
                   min_change_kw: float = 0.0, soc_balance_gain: float = 2.0,
                   wait_for_acknowledgements: bool = True) -> AllocatorStep:
    """The allocator's next move from ``state`` (module docstring). ``wait_for_acknowledgements=False``
    exists only so that tests can show the invariant breaks without it."""
    present = sorted(state.gateways)
    p_kw, q_kvar = effective_setpoint(state, now_wall_s)
    split = split_setpoint(p_kw, q_kvar, availability(present), soc_balance_gain)
    current: dict[str, tuple[float, float]] = {}
    for gateway, entry in state.shares.items():
        if gateway not in state.gateways:
            continue
        current[gateway] = (UNKNOWN, UNKNOWN) if entry.share is None else (entry.share.p_kw, entry.share.q_kvar)
    acknowledged = all(state.acknowledged(gateway) for gateway in present) or not wait_for_acknowledgements
    step = transition(current, split.shares, acknowledged, min_change_kw)
    if not step.writes:
        return AllocatorStep(step, split, None)
    setpoint = state.setpoint if p_kw or q_kvar else None
    guards = [Guard(keys.allocator, "mod", state.allocator_mod_revision),
              Guard(keys.setpoint, "mod", state.setpoint_mod_revision),
              Guard(keys.allocation, "mod", state.allocation_mod_revision)]
    record = AllocationRecord(
        allocator_id=state.allocator_id or "", setpoint_revision=state.setpoint_mod_revision if setpoint else 0,
        phase=step.phase, target_p_kw=p_kw, shortfall_p_kw=split.shortfall_p_kw,
        shortfall_q_kvar=split.shortfall_q_kvar,
    )
    puts = [Put(keys.allocation, record.encode())]
    for gateway, (share_p, share_q) in sorted(step.writes.items()):
        lease_id, created = state.gateways[gateway]
        entry = state.shares.get(gateway)
        guards += [Guard(keys.gateway(gateway), "create", created),
                   Guard(keys.share(gateway), "mod", entry.mod_revision if entry is not None else 0)]
        share = Share(
            gateway_id=gateway, p_kw=share_p, q_kvar=share_q,
            setpoint_revision=state.setpoint_mod_revision if setpoint is not None else 0,
            command_id=setpoint.command_id if setpoint is not None else "",
            expires_at=setpoint.expires_at if setpoint is not None else None,
            traceparent=setpoint.traceparent if setpoint is not None else "",
        )
        puts.append(Put(keys.share(gateway), share.encode(), lease_id))
    return AllocatorStep(step, split, Txn(tuple(guards), tuple(puts)))


#: slack when the shares' sum is compared with the setpoint (floating-point sums of the allocator's split)
_SUM_SLACK_KW = 1e-3


def asks_for_more(acted: Share | None, share: Share | None) -> bool:
    """Whether acting on ``share`` instead of ``acted`` could mean more |P| or |Q| (or the other side)."""
    if share is None:
        return False
    before_p, before_q = (acted.p_kw, acted.q_kvar) if acted is not None else (0.0, 0.0)
    return not no_more_power(before_p, before_q, share.p_kw, share.q_kvar)


def share_explained(state: CampusState, gateway_id: str, share: Share, mod_revision: int,
                    now_wall_s: float) -> str:
    """Why ``share`` (our share key at ``mod_revision``) is not explained by the campus state; "" if it is.

    ``state`` is a linearizable read at a revision at least ``mod_revision``. Explained: the key still holds
    that version; a setpoint is in force (not expired) and the share names it or an earlier one (a share
    naming a later revision than the setpoint's was written by no allocator); every share is on the
    setpoint's side; and every gateway's share together stays within the setpoint, in P and in Q.
    """
    entry = state.shares.get(gateway_id)
    if entry is None or entry.mod_revision != mod_revision:
        return "superseded"
    setpoint = state.setpoint
    if setpoint is None or setpoint.expired(now_wall_s):
        return "no campus setpoint in force"
    if share.setpoint_revision > state.setpoint_mod_revision:
        return (f"it names setpoint revision {share.setpoint_revision}, later than the setpoint in force "
                f"(revision {state.setpoint_mod_revision})")
    total_p = total_q = 0.0
    for gateway, other in state.shares.items():
        if other.share is None:
            return f"the share of {gateway} is corrupt"
        if other.share.p_kw * setpoint.p_kw < 0.0 or other.share.q_kvar * setpoint.q_kvar < 0.0:
            return f"the share of {gateway} is on the other side of the setpoint"
        total_p += abs(other.share.p_kw)
        total_q += abs(other.share.q_kvar)
    if total_p > abs(setpoint.p_kw) + _SUM_SLACK_KW or total_q > abs(setpoint.q_kvar) + _SUM_SLACK_KW:
        return (f"the shares add up to {total_p:.3f} kW / {total_q:.3f} kvar, the setpoint is "
                f"{setpoint.p_kw:.3f} kW / {setpoint.q_kvar:.3f} kvar")
    return ""


class GatewaySide:
    """What one gateway acts on (module docstring). Times: ``now_s`` monotonic, ``now_wall_s`` Unix."""

    def __init__(self, gateway_id: str, fence: FenceClock) -> None:
        self.gateway_id = gateway_id
        self.fence = fence
        self.lease_id = 0
        self.share: Share | None = None
        #: mod revision of the share key version we act on (or refused, or saw deleted)
        self.share_revision = 0
        self.acknowledged_revision = 0
        self.corrupt_count = 0
        #: a share asking for more than we act on, and its mod revision: acted on once :meth:`verify` agrees
        self.pending: tuple[Share, int] | None = None
        self.refused_revision = 0  #: the last share revision :meth:`verify` refused (counted once)
        self.refused_count = 0  #: share versions refused at least once
        self.last_refusal = ""  #: why (for the log)

    def new_lease(self, lease_id: int, granted_sent_at_s: float) -> None:
        """A new lease: whatever was bound to the old one is gone; the grant counts as a keepalive."""
        self.lease_id = lease_id
        self.share = None
        self.pending = None
        self.fence.lost()
        self.fence.keepalive_ok(granted_sent_at_s)

    def lease_lost(self) -> None:
        self.lease_id = 0
        self.share = None
        self.pending = None
        self.fence.lost()

    def share_seen(self, value: bytes | None, mod_revision: int, lease_id: int) -> bool:
        """The share key at ``mod_revision`` (``value=None``: deleted). Returns whether the share changed.

        A share asking for more than the one acted on is only noted (:attr:`pending`): it is acted on once
        :meth:`verify` found it explained by the campus setpoint. Anything else takes effect at once.
        """
        if mod_revision <= self.share_revision:
            return False  # older than what we act on
        if self.pending is not None and mod_revision <= self.pending[1]:
            return False  # being verified already (or refused so far)
        if value is not None and (self.lease_id == 0 or lease_id != self.lease_id):
            return False  # bound to a lease that is not ours (any more): never act on it
        share = None
        if value is not None:
            try:
                share = Share.decode(value, f"shares/{self.gateway_id}")
                if share.gateway_id != self.gateway_id:
                    raise CorruptRecordError(f"share of {share.gateway_id!r}", f"shares/{self.gateway_id}")
            except CorruptRecordError:
                self.corrupt_count += 1
                share = None
        if share is not None and asks_for_more(self.share, share):
            self.pending = (share, mod_revision)
            return False
        self.pending = None  # a newer version that asks for no more supersedes one being verified
        return self._act_on(share, mod_revision)

    def verify(self, state: CampusState, now_wall_s: float) -> bool:
        """Act on the pending share if ``state`` (a linearizable read) explains it; else it stays pending.

        Returns whether the share acted on changed. A read older than the pending version decides nothing.
        A refused share is counted once and checked again at the next read (the caller reads again when the
        prefix changes): a share written just before a newer, lower setpoint is explained again once the
        allocator has moved the other shares down; a hostile one stays refused until it is overwritten.
        """
        if self.pending is None or state.revision < self.pending[1]:
            return False
        share, mod_revision = self.pending
        why = share_explained(state, self.gateway_id, share, mod_revision, now_wall_s)
        if why == "superseded":
            self.pending = None  # the key moved on: its newer version comes by the watch or the fencing read
            return False
        if why:
            if self.refused_revision != mod_revision:
                self.refused_revision = mod_revision
                self.refused_count += 1
                self.last_refusal = why
            return False
        self.pending = None
        return self._act_on(share, mod_revision)

    def refused(self) -> bool:
        """Whether the pending share was refused at its last check (it is checked again on changes)."""
        return self.pending is not None and self.refused_revision == self.pending[1]

    def _act_on(self, share: Share | None, mod_revision: int) -> bool:
        before = self.share
        self.share_revision = mod_revision
        self.share = share
        return self.share != before

    def share_absent(self, read_revision: int) -> bool:
        """A linearizable read at ``read_revision`` found no share key: the share is gone."""
        return self.share_seen(None, read_revision, 0) if read_revision > self.share_revision else False

    def commanded(self, now_s: float, now_wall_s: float) -> Share | None:
        """The share to act on now, or ``None`` (fence passed, expired, none)."""
        share = self.share
        if share is None or not self.fence.valid(now_s) or share.expired(now_wall_s):
            return None
        return share

    def pending_acknowledgement(self, now_s: float, now_wall_s: float) -> Applied | None:
        """The acknowledgement to write, if the share revision we act on is newer than the last one written."""
        if self.lease_id == 0 or self.share_revision <= self.acknowledged_revision:
            return None
        share = self.commanded(now_s, now_wall_s)
        return Applied(self.gateway_id, self.share_revision, share.p_kw if share is not None else 0.0)

    def acknowledged(self, share_revision: int) -> None:
        self.acknowledged_revision = max(self.acknowledged_revision, share_revision)

    def deadline(self) -> float:
        return self.fence.deadline() if self.share is not None else -math.inf
