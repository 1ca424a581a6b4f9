"""SWIM membership with Lifeguard's refinements, as a pure state machine (the node does the I/O).

Rules (after memberlist): a claim about a member carries an incarnation number that only the member itself
raises. ``alive`` wins over anything with a lower incarnation; ``suspect``/``dead`` win over ``alive`` of
the same or a lower one; a member that hears itself suspected or declared dead *refutes* by raising its
incarnation and gossiping ``alive``. A suspect is declared dead when its suspicion times out; Lifeguard
makes that timeout start long (``max``) and shrink towards ``min`` as independent members confirm the
suspicion, so a truly dead node is declared quickly while one slow prober cannot kill a healthy node.
Lifeguard's local health ("awareness") score grows when our own probes look unreliable (missed nacks,
having to refute) and stretches our probe timing so a struggling node stops accusing others.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bessgw.federation.broadcast import BroadcastQueue
from bessgw.federation.wire import MemberUpdate, Status, packed_size


@dataclass
class Member:
    """One gateway as this node sees it."""

    node: str
    host: str
    port: int
    incarnation: int
    status: Status
    since: float  #: monotonic time of the last status change
    suspicion: Suspicion | None = None
    boot: int = 0  #: the member's newest boot we heard of (0: unknown); datagrams to it are bound to it

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def update(self, status: Status | None = None, by: str = "") -> MemberUpdate:
        return MemberUpdate(self.node, self.host, self.port, self.incarnation, status or self.status, by, self.boot)


@dataclass
class Suspicion:
    """Lifeguard suspicion timer: ``max_s`` shrinking logarithmically to ``min_s`` over ``expected`` confirmations."""

    started: float
    min_s: float
    max_s: float
    expected: int
    confirmers: set[str] = field(default_factory=set)
    rechecked: bool = False  #: this node probed the suspect itself before its unconfirmed timer ran out

    def confirmed(self) -> bool:
        """Whether the expected independent confirmations are in (the timer is at its minimum)."""
        return len(self.confirmers) - 1 >= self.expected

    def deadline(self) -> float:
        confirmed = len(self.confirmers) - 1  # the first suspecter is not a confirmation
        if self.expected < 1 or confirmed >= self.expected:
            return self.started + self.min_s
        frac = math.log(confirmed + 1) / math.log(self.expected + 1)
        return self.started + max(self.min_s, self.max_s - (self.max_s - self.min_s) * frac)


@dataclass(frozen=True)
class Change:
    """A status transition, reported to the node (logging) and the view."""

    node: str
    old: Status | None
    new: Status
    incarnation: int


class Membership:
    """The member table plus the membership broadcast queue."""

    def __init__(
        self,
        local: str,
        host: str,
        port: int,
        *,
        probe_interval_s: float,
        suspicion_mult: float,
        suspicion_max_mult: float,
        awareness_max: int,
        suspicion_confirmations: int = 2,
        retransmit_mult: int,
        dead_reap_s: float,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        incarnation: int = 0,
        boot: int = 0,
    ) -> None:
        self.local = local
        self.probe_interval_s = probe_interval_s
        self.suspicion_mult = suspicion_mult
        self.suspicion_max_mult = suspicion_max_mult
        self.suspicion_confirmations = suspicion_confirmations
        self.awareness_max = awareness_max
        self.dead_reap_s = dead_reap_s
        self.clock = clock
        self.rng = rng or random.Random()
        self.me = Member(local, host, port, incarnation, Status.ALIVE, clock(), boot=boot)
        self.members: dict[str, Member] = {local: self.me}
        self.queue = BroadcastQueue(retransmit_mult)
        self.awareness = 0
        self.leaving = False
        self.refutations = 0
        self._probe_order: list[str] = []
        self.broadcast(self.me.update())

    # ------------------------------------------------------------------------------------ views

    def peers(self, *statuses: Status) -> list[Member]:
        wanted = statuses or (Status.ALIVE, Status.SUSPECT)
        return [m for m in self.members.values() if m.node != self.local and m.status in wanted]

    def alive_count(self) -> int:
        return sum(1 for m in self.members.values() if m.status in (Status.ALIVE, Status.SUSPECT))

    def full_list(self) -> list[MemberUpdate]:
        return [m.update() for m in sorted(self.members.values(), key=lambda m: m.node)]

    def scaled(self, seconds: float) -> float:
        """Lifeguard: a node with poor local health waits longer before blaming others."""
        return seconds * (self.awareness + 1)

    def adjust_awareness(self, delta: int) -> None:
        self.awareness = max(0, min(self.awareness_max, self.awareness + delta))

    def probe_failed(self, helpers: int, nacks: int) -> None:
        """Lifeguard local health after a probe that got no ack, directly or through ``helpers``.

        Helpers answer a failed indirect probe with a nack, so silence from all of them says our own
        links (or our event loop) are the problem: local health worsens. One nack is enough evidence
        that we hear our peers: the target is the one not answering, and a nack lost on a lossy network
        says nothing about us (counting each missed nack, as memberlist does, made every node on a
        network with 5 % loss probe slower and so detect deaths later). With no helper to ask, a failed
        probe is all the evidence there is.
        """
        if helpers == 0 or nacks == 0:
            self.adjust_awareness(+1)

    # ------------------------------------------------------------------------------------ choice

    def next_probe_target(self) -> Member | None:
        """Round-robin over a shuffled list (every member probed within one pass), skipping the dead."""
        for _ in range(2):
            while self._probe_order:
                member = self.members.get(self._probe_order.pop())
                if member is not None and member.node != self.local and member.status in (
                    Status.ALIVE, Status.SUSPECT
                ):
                    return member
            self._probe_order = [m.node for m in self.peers()]
            self.rng.shuffle(self._probe_order)
        return None

    def random_peers(
        self, count: int, exclude: tuple[str, ...] = (), statuses: tuple[Status, ...] = ()
    ) -> list[Member]:
        candidates = [m for m in self.peers(*statuses) if m.node not in exclude]
        return self.rng.sample(candidates, min(count, len(candidates)))

    # ------------------------------------------------------------------------------------ input

    def broadcast(self, update: MemberUpdate, *, confirmation: bool = False) -> None:
        """Queue ``update`` for dissemination.

        Claims about one member share a group. A suspicion *confirmation* gets its own slot per confirmer
        and replaces nothing else, so no independent confirmation is lost to a later one before it was
        sent; any other claim (alive, dead, left, or a suspicion at a new incarnation) supersedes
        everything queued about that member.
        """
        group = ("member", update.node)
        size = packed_size(update.to_wire())
        if update.status == Status.SUSPECT:
            if not confirmation:
                self.queue.drop_group(group)
            self.queue.add((*group, update.by), update, size, group=group)
        else:
            self.queue.drop_group(group)
            self.queue.add(group, update, size, group=group)

    def apply(self, update: MemberUpdate, from_sync: bool = False) -> list[Change]:
        """Apply one claim (piggybacked, or from a full list when ``from_sync``); returns status changes.

        Boots only grow, so the newest boot in any claim about a member is kept, whatever the claim's
        status and incarnation make of it.
        """
        status = update.status
        if from_sync and status == Status.DEAD:
            status = Status.SUSPECT  # memberlist: a full list's "dead" only makes us suspicious ourselves
            update = replace(update, status=status)
        if update.node == self.local:
            return self._about_me(update)
        member = self.members.get(update.node)
        if member is not None and update.boot > member.boot:
            member.boot = update.boot
        if status == Status.ALIVE:
            return self._alive(member, update)
        if member is None or update.incarnation < member.incarnation:
            return []
        if status == Status.SUSPECT:
            return self._suspect(member, update)
        if member.status in (Status.DEAD, Status.LEFT) and not (
            status == Status.LEFT and member.status == Status.DEAD
        ):
            return []
        return [self._set(member, status, update.incarnation, update)]

    def suspect(self, node: str) -> list[Change]:
        """Our probe of ``node`` failed (directly and indirectly)."""
        member = self.members.get(node)
        if member is None:
            return []
        return self._suspect(member, member.update(Status.SUSPECT, by=self.local))

    def _about_me(self, update: MemberUpdate) -> list[Change]:
        me = self.me
        if self.leaving:
            return []
        stale_claim = update.incarnation < me.incarnation
        # a claim about an earlier life of ours (another boot) is wrong too: out-bidding it spreads our boot
        wrong = update.status != Status.ALIVE or (update.host, update.port) != me.addr or update.boot != me.boot
        if stale_claim or (not wrong and update.incarnation == me.incarnation):
            return []
        # someone believes something else about us at our incarnation or above: out-bid it
        me.incarnation = update.incarnation + 1
        self.refutations += 1
        if update.status == Status.SUSPECT:
            self.adjust_awareness(+1)
        self.broadcast(me.update())
        return []

    def _alive(self, member: Member | None, update: MemberUpdate) -> list[Change]:
        if member is None:
            member = Member(update.node, update.host, update.port, update.incarnation, Status.ALIVE, self.clock(),
                            boot=update.boot)
            self.members[update.node] = member
            self._probe_soon(update.node)
            self.broadcast(update)
            return [Change(update.node, None, Status.ALIVE, update.incarnation)]
        if update.incarnation <= member.incarnation:
            return []
        member.host, member.port = update.host, update.port
        if member.status in (Status.DEAD, Status.LEFT):
            self._probe_soon(member.node)  # back from the dead: the current round left it out
        return [self._set(member, Status.ALIVE, update.incarnation, update)]

    def _probe_soon(self, node: str) -> None:
        """Put a member (new, or alive again) at a random place in the current probe round.

        Otherwise it would wait for every prober's next round — up to one probe interval per member — and
        a gateway that joined (or restarted) and then died again went unprobed, so undetected, for that
        long (memberlist inserts new members at a random offset for the same reason).
        """
        self._probe_order.insert(self.rng.randrange(len(self._probe_order) + 1), node)

    def _suspect(self, member: Member, update: MemberUpdate) -> list[Change]:
        if member.status in (Status.DEAD, Status.LEFT):
            return []
        by = update.by or "?"
        same = member.status == Status.SUSPECT and update.incarnation == member.incarnation
        if same and member.suspicion is not None:
            suspicion = member.suspicion
            # pass a new confirmation on so others' timers shrink too, until the timer is at its floor
            # (memberlist's rule: beyond the expected count a confirmation only costs bytes)
            if by not in suspicion.confirmers and not suspicion.confirmed():
                suspicion.confirmers.add(by)
                self.broadcast(update, confirmation=True)
            return []
        change = self._set(member, Status.SUSPECT, update.incarnation, update)
        n = self.alive_count()
        min_s = self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval_s
        # Lifeguard's k, but never more than there are other members to confirm (memberlist drops to 0 then,
        # so that in a small campus one failed probe reaches the minimum at once)
        expected = max(0, min(self.suspicion_confirmations, n - 2))
        member.suspicion = Suspicion(self.clock(), min_s, min_s * self.suspicion_max_mult, expected, {by})
        return [change]

    def _set(self, member: Member, status: Status, incarnation: int, update: MemberUpdate) -> Change:
        old = member.status
        member.incarnation = incarnation
        member.status = status
        if status != Status.SUSPECT:
            member.suspicion = None
        if old != status:
            member.since = self.clock()
        self.broadcast(update)
        return Change(member.node, old, status, incarnation)

    # ------------------------------------------------------------------------------------ time

    def tick(self) -> tuple[list[Change], list[str]]:
        """Expire suspicions (→ dead) and reap long-dead members; returns changes and reaped names."""
        now = self.clock()
        changes, reaped = [], []
        for member in list(self.members.values()):
            if member.status == Status.SUSPECT and member.suspicion and now >= member.suspicion.deadline():
                changes.append(self._set(member, Status.DEAD, member.incarnation,
                                         member.update(Status.DEAD, by=self.local)))
            elif member.status in (Status.DEAD, Status.LEFT) and now - member.since >= self.dead_reap_s:
                del self.members[member.node]
                reaped.append(member.node)
        return changes, reaped

    def leave(self) -> MemberUpdate:
        """Graceful leave: our own ``left`` claim, which nobody (us included) refutes."""
        self.leaving = True
        self.me.incarnation += 1
        self.me.status = Status.LEFT
        update = self.me.update()
        self.broadcast(update)
        return update
