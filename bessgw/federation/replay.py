"""Replay protection: each sender numbers its datagrams; a number is accepted once.

The authenticated plaintext header carries ``(sender, boot, seq, age_s)``. ``boot`` is the sender's start
time in tenths of a second since 2024 (so it only grows across restarts, and fits 5 msgpack bytes until
2037), ``seq`` counts up from 1 per boot, ``age_s`` is whole seconds since boot (when it was sent). A receiver keeps
per sender the highest boot seen and a sliding 64-bit window of sequence numbers (as IPsec does), so
reordered datagrams still pass but a copy never does. Datagrams from an older boot, or stamped further
than ``window_s`` from our clock, are refused too: that stops replays of captures after a restart of the
receiver (which forgets its windows). Campus gateways run NTP; the window is generous.
"""

from __future__ import annotations

from collections import OrderedDict

from bessgw.federation.errors import DatagramError

WINDOW_BITS = 64
#: boots are counted in tenths of a second since 2024-01-01 UTC
BOOT_EPOCH_S = 1_704_067_200


def boot_stamp(now_s: float) -> int:
    """The boot number of a node starting at wall-clock ``now_s`` (also its state generation)."""
    return int((now_s - BOOT_EPOCH_S) * 10)


def boot_time(boot: int) -> float:
    """Wall-clock seconds of a boot number."""
    return BOOT_EPOCH_S + boot / 10


class ReplayGuard:
    """Per-sender sequence windows, bounded to ``max_senders`` (least recently heard forgotten first)."""

    def __init__(self, window_s: float = 60.0, max_senders: int = 4096) -> None:
        self.window_s = window_s
        self.max_senders = max_senders
        # sender -> [boot, highest seq, bitmap of the WINDOW_BITS seqs below and at highest]
        self._senders: OrderedDict[str, list[int]] = OrderedDict()

    def check(self, sender: str, boot: int, seq: int, age_s: int, now_s: float) -> None:
        """Accept (and remember) one datagram or raise :class:`DatagramError`."""
        sent_s = boot_time(boot) + age_s
        if abs(now_s - sent_s) > self.window_s:
            raise DatagramError("stale", f"{sender} stamped {sent_s - now_s:+.0f} s from our clock")
        state = self._senders.get(sender)
        if state is None or boot > state[0]:
            self._remember(sender, [boot, seq, 1])
            return
        if boot < state[0]:
            raise DatagramError("replay", f"{sender} from an older boot")
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
