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
