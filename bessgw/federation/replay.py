"""Replay protection that survives restarts: datagrams are bound to the receiver's current life.

Every gateway has a boot number per start (:mod:`bessgw.federation.boot`: only grows, never reused). The
authenticated envelope carries ``(sender, boot, seq, to, to_boot)``: who sent it in which life, its
number in that life, and the receiver and receiver's life it is meant for. A receiver accepts a datagram
only if

1. ``to`` is itself (``recipient`` otherwise: a capture of traffic to another gateway replayed here);
2. ``to_boot`` is its *current* boot. Anything else cannot be judged after a restart, because the sequence
   windows of the earlier life are gone, so it is refused: ``epoch`` when it names an earlier life (a
   capture from before our restart, or a peer that has not heard of it yet), ``first_contact`` when the
   sender knows only our address. Both raise :class:`UnboundDatagram`; the node answers with a ``HELLO``
   so a genuine sender learns our boot and its next datagram is accepted — one round trip, once;
3. the sender's ``boot`` is not older than the newest boot known for it (``replay``: the sender restarted,
   its earlier life is over from the moment we learn of the new one, directly or through gossip);
4. ``seq`` has not been seen in the sender's current boot: a sliding 64-wide window per sender, as IPsec
   keeps, so reordered datagrams pass but a copy never does (``replay``).

Rule 2 is what makes process memory enough: a datagram bound to our current boot was sealed after this
life began, and everything this life has accepted is in memory. No clocks are compared between gateways,
so clock skew does not matter; each gateway's own boot numbers must only grow, which the persisted boot
counter guarantees even when its clock steps back.
"""

from __future__ import annotations

from collections import OrderedDict

from bessgw.federation.errors import DatagramError, UnboundDatagram
from bessgw.federation.wire import Header

WINDOW_BITS = 64


class ReplayGuard:
    """Receiver binding plus per-sender sequence windows, bounded to ``max_senders`` senders.

    Only authenticated datagrams reach the guard, so its senders are campus members; the bound (least
    recently heard forgotten first) is far above any campus and only stops a key holder from growing it.
    """

    def __init__(self, local: str, boot: int, max_senders: int = 4096) -> None:
        if boot <= 0:
            raise ValueError("a boot number is positive (0 means unknown on the wire)")
        self.local = local
        self.boot = boot
        self.max_senders = max_senders
        # sender -> [boot, highest seq, bitmap of the WINDOW_BITS seqs below and at highest]
        self._senders: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._senders)

    def boot_of(self, sender: str) -> int:
        """The newest boot of ``sender`` seen in an accepted datagram (0: none yet)."""
        state = self._senders.get(sender)
        return state[0] if state is not None else 0

    def check(self, header: Header, known_boot: int = 0) -> None:
        """Accept (and remember) one datagram or raise :class:`DatagramError` saying why not.

        ``known_boot`` is the sender's newest boot as known from elsewhere (membership gossip): datagrams
        from an earlier life are refused from then on, even if this guard never heard the new one.
        """
        sender = header.sender
        if header.to and header.to != self.local:
            raise DatagramError("recipient", f"{sender} wrote to {header.to}")
        if header.to_boot == 0:
            raise UnboundDatagram("first_contact", f"{sender} does not know our boot yet")
        if header.to_boot != self.boot:
            raise UnboundDatagram("epoch", f"{sender} wrote to our boot {header.to_boot}, this is {self.boot}")
        state = self._senders.get(sender)
        newest = max(known_boot, state[0] if state is not None else 0)
        if header.boot < newest:
            raise DatagramError("replay", f"{sender} boot {header.boot} is over (newest {newest})")
        if state is None or header.boot > state[0]:
            self._remember(sender, [header.boot, header.seq, 1])
            return
        seq = header.seq
        _, top, bitmap = state
        if seq > top:
            shift = seq - top
            state[2] = ((bitmap << shift) | 1) & ((1 << WINDOW_BITS) - 1) if shift < WINDOW_BITS else 1
            state[1] = seq
        else:
            offset = top - seq
            if offset >= WINDOW_BITS:
                raise DatagramError("replay", f"{sender} seq {seq} below the window")
            if bitmap >> offset & 1:
                raise DatagramError("replay", f"{sender} seq {seq} seen before")
            state[2] = bitmap | (1 << offset)
        self._senders.move_to_end(sender)

    def _remember(self, sender: str, state: list[int]) -> None:
        self._senders[sender] = state
        self._senders.move_to_end(sender)
        while len(self._senders) > self.max_senders:
            self._senders.popitem(last=False)
