"""A gossip node: SWIM membership + scuttlebutt state over one authenticated UDP socket.

The node owns the I/O and the timing; the rules live in :mod:`membership` and :mod:`state`. Loops (each
bounded by its interval, all in one task group): probe one member per ``probe_interval_s``; piggyback
queued updates to ``gossip_fanout`` members per ``gossip_interval_s``; push-pull (membership hash + state
digest hash, then only what differs) with one random member per ``push_pull_interval_s``; try one dead
member (or the seeds, when alone) per ``reconnect_interval_s`` so healed partitions and restarted
gateways merge without anyone acting; expire suspicions.

Receiving never blocks and never raises: a datagram that does not open, decode, validate or pass the
replay guard is counted under its reason (``drops``) and dropped, with a rate-limited warning.

Every datagram is bound to its receiver's current boot (:mod:`replay`). The node learns peers' boots from
the datagrams it accepts and from membership gossip; a datagram it could not accept because it was not
bound to its current boot is answered with a ``HELLO`` (at most one per sender per ``probe_timeout_s``),
upon which the sender repeats what mattered: a probe still waiting for its ack, or its join.

Every datagram is written in the wire version the receiver speaks (:mod:`versions`): a peer that told us
its range gets the highest common one, an unknown peer our minimum (release 0.2.0's version 2), an
incompatible peer nothing at all (it is not probed either); its state is not used. A datagram of a
version we do not speak is dropped as ``version`` after its preamble has told us who sent it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from bessgw.compat import TaskGroup, timeout
from bessgw.config import FederationSection
from bessgw.federation.boot import boot_stamp, next_boot
from bessgw.federation.crypto import OVERHEAD_BYTES, KeyRing, version_of
from bessgw.federation.errors import DatagramError, UnboundDatagram
from bessgw.federation.membership import Change, Member, Membership
from bessgw.federation.replay import ReplayGuard
from bessgw.federation.state import StateStore, split_items, split_parts
from bessgw.federation.transport import Addr, Faults, UdpTransport
from bessgw.federation.versions import PeerVersions
from bessgw.federation.wire import (
    OURS,
    PREAMBLE_VERSION,
    WIRE_KEY,
    DigestItem,
    Entry,
    Header,
    MemberUpdate,
    Message,
    MsgType,
    Status,
    VersionRange,
    body_of,
    decode_preamble,
    decode_versioned,
    encode,
    pack,
    packed_size,
)
from bessgw.throttle import LogThrottle

#: bytes kept free for the envelope and a message's own fields when filling a datagram with items: the
#: envelope names two gateways (up to 66 bytes each), three 9-byte numbers and (version 3) a 4-byte version
#: range, the fields take ~40 more
_ENVELOPE_RESERVE = 208
#: at most this many indirect probes relayed for others at once (a flood of PING_REQs cannot pile up tasks)
_MAX_RELAYS = 64
#: senders whose last HELLO time is remembered (the rate limit's memory bound)
_MAX_HELLO_SENDERS = 4096
#: the shortest pause between two gossip rounds that sent something (news within it shares a round)
_GOSSIP_FLOOR_S = 0.05


class GossipNode:
    """One campus member. Create, ``await start()`` (binds), then run ``run()`` as a task until cancelled."""

    def __init__(
        self,
        node_id: str,
        settings: FederationSection,
        *,
        keys: list[bytes] | None = None,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        faults: Faults | None = None,
        state_dir: Path | None = None,
        wire: VersionRange = OURS,
    ) -> None:
        self.id = node_id
        self.wire = wire  #: the wire versions we speak (tests pose as other releases with another range)
        self.settings = settings
        self.keyring = KeyRing(keys if keys is not None else settings.campus_keys())
        self.log = log if log is not None else structlog.get_logger("bessgw.federation").bind(node=node_id)
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        self.state_dir = state_dir  #: where the boot counter is kept (None: the clock alone numbers boots)
        self.boot = boot_stamp(wall())  #: provisional; ``start`` draws this life's number
        self.transport = UdpTransport(self._on_datagram, faults)
        self.replay = ReplayGuard(node_id, self.boot)
        self.drops: Counter[str] = Counter()
        self.versions = PeerVersions(wire, clock)  #: what each peer speaks, hence what we write to it
        self.sent_versions: Counter[int] = Counter()  #: datagrams sent per wire version
        self.handshakes = 0  #: first contacts answered with a HELLO (a joiner that knew only our address)
        self.changes: list[Callable[[Change], None]] = []  #: called for every membership status change
        self.on_state: list[Callable[[Entry], None]] = []  #: called for every state entry new to us
        self.membership: Membership | None = None
        self.state: StateStore | None = None
        self.addr: Addr | None = None
        self._seq = 0
        self._probe_seq = 0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._nacks: dict[int, int] = {}
        self._pinging: dict[str, tuple[int, Addr]] = {}  #: member -> (probe seq, addr) of a ping awaiting its ack
        self._hello_sent: OrderedDict[str, float] = OrderedDict()
        self._relays = 0
        self._confirming: set[str] = set()
        self._drop_log = LogThrottle(settings.bad_log_interval_s, clock)
        self._logged_drops: Counter[str] = Counter()
        self._tg: TaskGroup | None = None
        self.joined = asyncio.Event()
        self._news = asyncio.Event()  #: something new was queued: gossip it now rather than at the next tick
        self.leave_on_stop = False  #: on cancellation of ``run``, say goodbye before closing the socket

    @property
    def faults(self) -> Faults:
        return self.transport.faults

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> Addr:
        """Bind the socket and set up the tables; returns the address peers reach us at."""
        if self.addr is not None:
            return self.addr
        self.boot = next_boot(self.wall(), self.state_dir)
        self.replay = ReplayGuard(self.id, self.boot)
        bound = await self.transport.open(self.settings.bind_host, self.settings.bind_port)
        s = self.settings
        self.addr = (s.advertise_host or bound[0], s.advertise_port or bound[1])
        self.membership = Membership(
            self.id, self.addr[0], self.addr[1],
            probe_interval_s=s.probe_interval_s, suspicion_mult=s.suspicion_mult,
            suspicion_max_mult=s.suspicion_max_mult, awareness_max=s.awareness_max,
            suspicion_confirmations=s.suspicion_confirmations,
            retransmit_mult=s.retransmit_mult, dead_reap_s=s.dead_reap_s, clock=self.clock, rng=self.rng,
            boot=self.boot,
        )
        self.membership.queue.on_add = self._news.set
        self.state = StateStore(self.id, self.boot, accept=self._accepts_owner)
        self.set(WIRE_KEY, self.wire.to_value())  # our range, replicated even through release-0.2.0 peers
        self.log.info("federation_listening", addr=f"{self.addr[0]}:{self.addr[1]}", seeds=s.seeds, boot=self.boot)
        return self.addr

    async def run(self) -> None:
        """Gossip until cancelled; the socket is closed on the way out."""
        await self.start()
        try:
            async with TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._probe_loop(), name=f"{self.id}-probe")
                tg.create_task(self._gossip_loop(), name=f"{self.id}-gossip")
                tg.create_task(self._push_pull_loop(), name=f"{self.id}-push-pull")
                tg.create_task(self._reconnect_loop(), name=f"{self.id}-reconnect")
                tg.create_task(self._tick_loop(), name=f"{self.id}-tick")
        finally:
            self._tg = None
            if self.leave_on_stop:
                self.leave_now()  # synchronous sends: fine while we are being cancelled
            self.transport.close()

    async def leave(self, timeout_s: float = 1.0) -> None:
        """Graceful leave, then a short pause so the datagrams leave the host before the socket closes."""
        self.leave_now()
        await asyncio.sleep(min(timeout_s, self.settings.gossip_interval_s))

    def leave_now(self) -> None:
        """Tell a few members directly that we leave (they gossip it on); never blocks, idempotent."""
        if self.membership is None or self.membership.leaving or self.transport.closed:
            return
        m = self._members
        update = m.leave()
        for peer in m.random_peers(max(3, self.settings.gossip_fanout)):
            self._send(peer.node, peer.addr, Message(MsgType.LEAVE, members=(update,)), piggyback=False)

    # ------------------------------------------------------------------------------ local state

    def set(self, key: str, value: dict[str, Any] | None) -> bool:
        """Write (or with None, tombstone) one of our keys; True if it changed. Disseminated by gossip."""
        entry = self._state.set(key, value)
        if entry is None:
            return False
        self._queue_entry(entry)
        return True

    def _queue_entry(self, entry: Entry) -> None:
        self._members.queue.add(("entry", entry.owner, entry.key), entry, packed_size(entry.to_wire()))

    # ------------------------------------------------------------------------------ accessors

    @property
    def _members(self) -> Membership:
        if self.membership is None:
            raise RuntimeError("node not started")
        return self.membership

    @property
    def _state(self) -> StateStore:
        if self.state is None:
            raise RuntimeError("node not started")
        return self.state

    def _accepts_owner(self, owner: str) -> bool:
        member = self._members.members.get(owner)
        return member is not None and member.status != Status.LEFT and not self.incompatible(owner)

    def incompatible(self, node: str) -> bool:
        """Whether ``node``'s current life speaks no version we speak (never written to, state unused)."""
        return self.versions.incompatible(node, self.boot_of(node))

    def _learn_range(self, node: str, boot: int, speaks: VersionRange, source: Addr | None = None) -> None:
        address = f"{source[0]}:{source[1]}" if source is not None else ""
        if self.versions.learn(node, boot, speaks, address):
            self.log.warning("federation_peer_incompatible", member=node, speaks=str(speaks), ours=str(self.wire))
            if self.state is not None:
                self.state.drop(node)

    def member_hash(self) -> bytes:
        items = [[u.node, u.incarnation, int(u.status)] for u in self._members.full_list()]
        return hashlib.blake2b(pack(items), digest_size=16).digest()

    def _digest(self) -> list[DigestItem]:
        names = [m.node for m in self._members.members.values() if m.status != Status.LEFT]
        return self._state.digest(names)

    @property
    def budget(self) -> int:
        return self.settings.max_datagram_bytes - OVERHEAD_BYTES - _ENVELOPE_RESERVE

    def boot_of(self, node: str) -> int:
        """The newest boot of ``node`` we know, from its own datagrams or from gossip (0: unknown)."""
        if not node:
            return 0
        member = self._members.members.get(node)
        return max(self.replay.boot_of(node), member.boot if member is not None else 0)

    def _member_at(self, addr: Addr) -> Member | None:
        for member in self._members.members.values():
            if member.addr == addr and member.node != self.id:
                return member
        return None

    # ------------------------------------------------------------------------------ sending

    def _send(self, to: str, addr: Addr, msg: Message, piggyback: bool = True, to_boot: int | None = None) -> None:
        """Seal ``msg`` for member ``to`` (``""``: known only by address) at ``addr``, bound to its boot."""
        version = self.versions.version_for(to, self.boot_of(to)) if to else self.wire.min
        if version is None:
            return  # an incompatible peer: nothing we write would be understood (nor use up piggyback slots)
        if piggyback:
            msg = self._with_piggyback(msg)
        self._seq += 1
        self.sent_versions[version] += 1
        header = Header(self.id, self.boot, self._seq, to, self.boot_of(to) if to_boot is None else to_boot)
        self.transport.send(self.keyring.seal(encode(header, msg, version, self.wire), version), addr)

    def _with_piggyback(self, msg: Message) -> Message:
        m = self._members
        room = self.budget - packed_size(_body_estimate(msg))
        members: list[MemberUpdate] = []
        entries: list[Entry] = []
        n = len(m.members)
        for item in m.queue.take(room, n):
            (members if isinstance(item, MemberUpdate) else entries).append(item)
        if not members and not entries:
            return msg
        return Message(**{**_fields(msg), "members": msg.members + tuple(members),
                          "entries": msg.entries + tuple(entries)})

    # ------------------------------------------------------------------------------ loops

    async def _probe_loop(self) -> None:
        while True:
            started = self.clock()
            interval = self._members.scaled(self.settings.probe_interval_s)
            target = self._members.next_probe_target()
            if target is not None and not self.incompatible(target.node):
                await self._probe(target, interval)
            await asyncio.sleep(max(0.0, interval - (self.clock() - started)))

    async def _probe(self, target: Member, interval: float) -> bool:
        """Probe ``target`` (directly, then also through helpers); whether it answered within ``interval``."""
        m = self._members
        seq = self._next_probe_seq()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[seq] = future
        self._pinging[target.node] = (seq, target.addr)
        try:
            self._send(target.node, target.addr, Message(MsgType.PING, probe_seq=seq))
            timeout = m.scaled(self.settings.probe_timeout_s)
            if await _wait(future, timeout):
                m.adjust_awareness(-1)
                return True
            helpers = m.random_peers(self.settings.indirect_checks, exclude=(target.node,), statuses=(Status.ALIVE,))
            self._nacks[seq] = 0
            # a second direct ping along with the indirect ones (memberlist falls back to TCP here): on a
            # lossy link the direct path gets another chance, which cuts false suspicions — and the
            # suspicion and refutation traffic each one costs the whole campus — several times over
            self._send(target.node, target.addr, Message(MsgType.PING, probe_seq=seq), piggyback=False)
            for helper in helpers:
                self._send(helper.node, helper.addr, Message(MsgType.PING_REQ, probe_seq=seq, target=target.node,
                                                             addr=target.addr))
            rest = max(0.0, interval - timeout)
            acked = await _wait(future, rest / 2)
            if not acked:  # and a third, halfway: cheap (rarely sent), and each one divides the odds again
                self._send(target.node, target.addr, Message(MsgType.PING, probe_seq=seq), piggyback=False)
                acked = await _wait(future, rest / 2)
            if acked:
                m.adjust_awareness(-1)
                return True
            m.probe_failed(len(helpers), self._nacks.get(seq, 0))
            if target.status != Status.DEAD and target.node in m.members:
                self._report(m.suspect(target.node))
            return False
        finally:
            self._acks.pop(seq, None)
            self._nacks.pop(seq, None)
            self._forget_ping(target.node, seq)

    def _forget_ping(self, node: str, seq: int) -> None:
        if self._pinging.get(node, (None,))[0] == seq:
            del self._pinging[node]

    def _maybe_confirm(self, node: str) -> None:
        """Someone suspects ``node``: a few of us probe it out of turn, so that a dead node collects the
        independent confirmations Lifeguard's suspicion timer waits for within one probe interval instead of
        whenever round-robin order reaches it (and a live one is probed again, which only helps it refute).
        About ``2 * (expected + 1)`` members volunteer, whatever the campus size."""
        m = self._members
        if node in self._confirming or self._tg is None or node == self.id or self.incompatible(node):
            return
        expected = max(1, self.settings.suspicion_confirmations)
        if self.rng.random() >= min(1.0, 2 * (expected + 1) / max(1, m.alive_count() - 1)):
            return
        if self._spawn(self._confirm(node)):
            self._confirming.add(node)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` in the node's task group; False (and ``work`` closed, never left un-awaited) when the
        group is gone or shutting down — a datagram handled while the node stops must not start anything."""
        tg = self._tg
        try:
            if tg is not None:
                tg.create_task(work)
                return True
        except RuntimeError:  # the task group is shutting down
            pass
        work.close()
        return False

    async def _confirm(self, node: str) -> None:
        try:
            member = self._members.members.get(node)
            if member is not None and member.status in (Status.SUSPECT, Status.ALIVE):
                await self._probe(member, self._members.scaled(self.settings.probe_interval_s))
        finally:
            self._confirming.discard(node)

    async def _relay_probe(self, requester: str, requester_addr: Addr, orig_seq: int, target: str,
                           addr: Addr) -> None:
        seq = self._next_probe_seq()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[seq] = future
        self._pinging[target] = (seq, addr)
        try:
            self._send(target, addr, Message(MsgType.PING, probe_seq=seq))
            # answer inside the requester's window: nack before its probe interval runs out
            acked = await _wait(future, self.settings.probe_timeout_s * 0.8)
            self._send(requester, requester_addr, Message(MsgType.ACK if acked else MsgType.NACK, probe_seq=orig_seq))
        finally:
            self._acks.pop(seq, None)
            self._forget_ping(target, seq)
            self._relays -= 1

    async def _gossip_loop(self) -> None:
        """Every ``gossip_interval_s`` while anything is queued, and at once when news arrives.

        Waiting for the next tick cost every hop of an epidemic half an interval on average. Rounds that
        sent something stay ``_GOSSIP_FLOOR_S`` (at most a quarter interval) apart, so news arriving in a
        burst still shares datagrams. The number of transmissions per update is the queue's budget either
        way: only the timing changes.
        """
        interval = self.settings.gossip_interval_s
        floor = min(interval / 4, _GOSSIP_FLOOR_S)
        while True:
            try:
                async with timeout(interval - floor):
                    await self._news.wait()
            except asyncio.TimeoutError:
                pass
            self._news.clear()
            sent = False
            for peer in self._members.random_peers(self.settings.gossip_fanout) if len(self._members.queue) else ():
                if self.incompatible(peer.node):
                    continue  # nothing would be sent: keep the queued updates for the others
                msg = self._with_piggyback(Message(MsgType.GOSSIP))
                if not msg.members and not msg.entries:
                    break
                self._send(peer.node, peer.addr, msg, piggyback=False)
                sent = True
            await asyncio.sleep(floor if sent else 0)

    async def _push_pull_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.push_pull_interval_s * (0.5 + self.rng.random()))
            for peer in self._members.random_peers(1, statuses=(Status.ALIVE,)):
                self._sync(peer.node, peer.addr, join=False)

    async def _reconnect_loop(self) -> None:
        await self._join_seeds()
        while True:
            await asyncio.sleep(self.settings.reconnect_interval_s * (0.5 + self.rng.random()))
            m = self._members
            if not m.peers(Status.ALIVE, Status.SUSPECT):
                await self._join_seeds()
            for peer in m.random_peers(1, statuses=(Status.DEAD,)):
                self._sync(peer.node, peer.addr, join=True)

    async def _join_seeds(self) -> None:
        """Send a full sync to every seed (any one answering is enough: gossip does the rest).

        A seed we do not know as a member is written to unbound (first contact); it answers with a HELLO
        and we repeat the join bound to it (:meth:`_on_hello`).
        """
        loop = asyncio.get_running_loop()
        for seed in self.settings.seeds:
            host, _, port = seed.rpartition(":")
            host = host.strip("[]")
            try:
                async with timeout(2.0):
                    infos = await loop.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
            except (OSError, asyncio.TimeoutError) as err:
                self.log.warning("federation_seed_unresolvable", seed=seed, error=str(err))
                continue
            for info in infos[:1]:
                addr = (info[4][0], info[4][1])
                if addr != self.addr:
                    known = self._member_at(addr)
                    self._sync(known.node if known is not None else "", addr, join=True)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, self.settings.probe_interval_s / 4))
            changes, reaped = self._members.tick()
            self._report(changes)
            for name in reaped:
                self._state.drop(name)
            self._recheck_unconfirmed()

    def _recheck_unconfirmed(self) -> None:
        """Before an unconfirmed suspicion runs out here, probe the suspect ourselves, once.

        A suspicion nobody confirmed times out on its long timer; if the suspect's refutation never
        reached us (every copy lost), we alone would declare a live member dead. A last probe settles it:
        no answer adds our confirmation; an answer while we still hold it suspect means our view is stale,
        and a push-pull with it fetches its refutation (and tells it, should it not know it is suspected).
        """
        m = self._members
        if self._tg is None:
            return
        now = self.clock()
        margin = 1.5 * m.scaled(self.settings.probe_interval_s)
        for member in m.peers(Status.SUSPECT):
            suspicion = member.suspicion
            if suspicion is None or suspicion.rechecked or suspicion.confirmed():
                continue
            if suspicion.deadline() - now <= margin:
                suspicion.rechecked = self._spawn(self._recheck(member))

    async def _recheck(self, member: Member) -> None:
        incarnation = member.incarnation
        answered = await self._probe(member, self._members.scaled(self.settings.probe_interval_s))
        if answered and member.status == Status.SUSPECT and member.incarnation == incarnation:
            self._sync(member.node, member.addr, join=False)

    # ------------------------------------------------------------------------------ push-pull

    def _sync(self, to: str, addr: Addr, join: bool) -> None:
        m = self._members
        self._send(to, addr, Message(MsgType.SYNC, join=join, member_hash=self.member_hash(),
                                     state_hash=StateStore.digest_hash(self._digest()),
                                     members=(m.me.update(),)))

    def _send_members(self, to: str, addr: Addr, reply: bool) -> None:
        full = self._members.full_list()
        for index, part in enumerate(split_items(full, self.budget, lambda u: packed_size(u.to_wire()))):
            self._send(to, addr, Message(MsgType.MEMBERS, probe_seq=index, reply=reply, full_members=tuple(part)),
                       piggyback=False)

    def _send_digest(self, to: str, addr: Addr, digest: list[DigestItem], reply: bool) -> None:
        for part in split_items(digest, self.budget, lambda d: packed_size(d.to_wire())):
            if part:
                self._send(to, addr, Message(MsgType.DIGEST, reply=reply, digest=tuple(part)), piggyback=False)

    def _send_deltas(self, to: str, addr: Addr, digest: tuple[DigestItem, ...]) -> None:
        for group in split_parts(self._state.deltas_for(digest), self.budget):
            self._send(to, addr, Message(MsgType.DELTA, deltas=tuple(group)), piggyback=False)

    # ------------------------------------------------------------------------------ receiving

    def _on_datagram(self, data: bytes, source: Addr) -> None:
        try:
            header, msg = self._open(data, source)
            if header.sender == self.id:
                raise DatagramError("self", "a datagram claims to come from us (duplicate gateway id?)")
            if self.membership is None:
                raise DatagramError("not_started")
            try:
                self.replay.check(header, known_boot=self.boot_of(header.sender))
            except UnboundDatagram:
                self._hello(header, source)
                raise
            self._handle(header, msg, source)
        except UnboundDatagram as err:
            if err.reason == "first_contact":
                self.handshakes += 1  # a joiner that knows only our address: normal, not a drop
            else:
                self._drop(err.reason, err.detail, source)
        except DatagramError as err:
            self._drop(err.reason, err.detail, source)
        except Exception as err:  # a bug in our handling must not take the socket down
            self._drop("internal", f"{type(err).__name__}: {err}", source)
            self.log.error("federation_handler_error", error=str(err), exc_info=True)

    def _open(self, data: bytes, source: Addr) -> tuple[Header, Message]:
        """Open and decode a datagram in the version it names; learn the sender's range on the way."""
        plaintext = self.keyring.open(data)
        version = version_of(data) or 0
        if not self.wire.speaks(version):
            if version >= PREAMBLE_VERSION:
                header, speaks = decode_preamble(plaintext)
                if header.sender != self.id:
                    self._learn_range(header.sender, header.boot, speaks, source)
            raise DatagramError("version", f"wire version {version}, this gateway speaks {self.wire}")
        header, speaks, msg = decode_versioned(plaintext, version)
        if speaks is not None and header.sender != self.id:
            self._learn_range(header.sender, header.boot, speaks, source)
        return header, msg

    def _drop(self, reason: str, detail: str, source: Addr) -> None:
        self.drops[reason] += 1
        if self._drop_log.due():
            since = self.drops - self._logged_drops
            self._logged_drops = Counter(self.drops)
            self.log.warning("federation_datagram_dropped", reason=reason, detail=detail[:200],
                             source=f"{source[0]}:{source[1]}", dropped_since_last_log=dict(since))

    def _hello(self, header: Header, source: Addr) -> None:
        """Tell the sender of an unbound datagram our boot: once per sender per probe timeout, and only
        if it names the sender's newest life (an answer to a capture from its earlier life is wasted)."""
        sender = header.sender
        if header.boot < self.boot_of(sender):
            return
        now = self.clock()
        last = self._hello_sent.get(sender)
        if last is not None and now - last < self.settings.probe_timeout_s:
            return
        self._hello_sent[sender] = now
        self._hello_sent.move_to_end(sender)
        while len(self._hello_sent) > _MAX_HELLO_SENDERS:
            self._hello_sent.popitem(last=False)
        self._send(sender, source, Message(MsgType.HELLO), piggyback=False, to_boot=header.boot)

    def _on_hello(self, sender: str, source: Addr) -> None:
        """``sender`` could not accept something of ours; now that we know its boot, repeat what matters:
        the ping still waiting for its ack, or — if it is no live member of ours — our join."""
        pending = self._pinging.get(sender)
        if pending is not None:
            seq, addr = pending
            self._send(sender, addr, Message(MsgType.PING, probe_seq=seq))
        member = self._members.members.get(sender)
        if member is None or member.status not in (Status.ALIVE, Status.SUSPECT):
            self._sync(sender, source, join=True)

    def _handle(self, header: Header, msg: Message, source: Addr) -> None:
        m = self._members
        if msg.type == MsgType.HELLO:
            self._on_hello(header.sender, source)
            return
        for update in msg.members:
            changes = m.apply(update)
            self._report(changes)
            if update.status in (Status.SUSPECT, Status.DEAD):
                member = m.members.get(update.node)
                # a new suspicion, or a stale one (an older incarnation) about a member we think alive:
                # either way a hint worth checking ourselves, at our view's incarnation
                if member is not None and member.status in (Status.SUSPECT, Status.ALIVE) and (
                    changes or member.status == Status.ALIVE
                ):
                    self._maybe_confirm(update.node)
        for entry in msg.entries:
            if self._state.apply_entry(entry):
                self._queue_entry(entry)  # rumour: pass it on
                self._notify_state(entry)
        kind = msg.type
        if kind == MsgType.PING:
            # whom a ping is for is the envelope's ``to`` (the guard refused it if not us); a ``target``
            # in the body is redundant since format 2 and no longer sent
            if msg.target and msg.target != self.id:
                raise DatagramError("wrong_target", f"ping for {msg.target}")
            self._send(header.sender, source, Message(MsgType.ACK, probe_seq=msg.probe_seq))
        elif kind == MsgType.ACK:
            future = self._acks.get(msg.probe_seq)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == MsgType.NACK:
            if msg.probe_seq in self._nacks:
                self._nacks[msg.probe_seq] += 1
        elif kind == MsgType.PING_REQ:
            if msg.addr is None or not msg.target:
                raise DatagramError("invalid", "ping-req without target")
            if self._relays >= _MAX_RELAYS or self._tg is None:
                raise DatagramError("busy", "too many indirect probes in flight")
            if self._spawn(self._relay_probe(header.sender, source, msg.probe_seq, msg.target, msg.addr)):
                self._relays += 1
        elif kind == MsgType.SYNC:
            if msg.join or msg.member_hash != self.member_hash():
                self._send_members(header.sender, source, reply=False)
            digest = self._digest()
            if msg.join or msg.state_hash != StateStore.digest_hash(digest):
                self._send_digest(header.sender, source, digest, reply=False)
        elif kind == MsgType.MEMBERS:
            for update in msg.full_members:
                self._report(m.apply(update, from_sync=True))
            if not msg.reply and msg.probe_seq == 0:
                self._send_members(header.sender, source, reply=True)
        elif kind == MsgType.DIGEST:
            self._send_deltas(header.sender, source, msg.digest)
            if not msg.reply:
                behind = self._state.behind(msg.digest)
                if behind:
                    self._send_digest(header.sender, source, behind, reply=True)
        elif kind == MsgType.DELTA:
            for part in msg.deltas:
                for entry in self._state.apply_delta(part):
                    self._notify_state(entry)
        if not self.joined.is_set() and m.peers(Status.ALIVE):
            self.joined.set()

    def _report(self, changes: list[Change]) -> None:
        for change in changes:
            if change.new in (Status.DEAD, Status.LEFT) or change.old in (Status.DEAD, Status.LEFT):
                self.log.info("federation_member", member=change.node, status=change.new.name.lower(),
                              was=change.old.name.lower() if change.old is not None else None,
                              incarnation=change.incarnation)
            if change.new == Status.LEFT:
                self._state.drop(change.node)
            for callback in self.changes:
                callback(change)

    def _notify_state(self, entry: Entry) -> None:
        if entry.key == WIRE_KEY and entry.value is not None:
            try:
                self._learn_range(entry.owner, entry.generation, VersionRange.from_value(entry.value))
            except ValueError:
                self.drops["bad_range"] += 1
            if self.incompatible(entry.owner):
                return
        for callback in self.on_state:
            callback(entry)

    def _next_probe_seq(self) -> int:
        self._probe_seq += 1
        return self._probe_seq


# ---------------------------------------------------------------------------------------- helpers


def _fields(msg: Message) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in Message.__dataclass_fields__}


def _body_estimate(msg: Message) -> list[Any]:
    return [body_of(msg)]


async def _wait(future: asyncio.Future[None], timeout_s: float) -> bool:
    """Whether ``future`` completes within ``timeout_s`` (the future itself is left alone)."""
    if future.done():
        return True
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout_s)
    except asyncio.TimeoutError:
        return False
    return True
