"""Why a datagram was dropped: one exception carrying a short reason that the node counts."""

from __future__ import annotations


class DatagramError(Exception):
    """A received datagram failed a check; ``reason`` is the counter it is tallied under.

    Reasons are stable, lower-case identifiers (``auth``, ``replay``, ``malformed`` ...) so operators can
    alert on them; ``detail`` is for the rate-limited log line only.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnboundDatagram(DatagramError):
    """An authentic datagram that is not bound to our current boot, so we cannot tell fresh from replayed.

    Either the sender does not know us yet (``first_contact``: it joins through us as a seed) or it
    addresses an earlier life of ours (``epoch``: it has not heard of our restart, or it is a capture being
    replayed). Either way nothing in it is used; the node answers with a ``HELLO`` carrying our boot, so a
    genuine sender binds its next datagram to us, while a replay achieves nothing.
    """
