"""Bearer tokens of the REST API: ``<name>.<secret>``, the secret checked against its stored hash.

Tokens are stored hashed (the OPC UA password hashes of :mod:`bessgw.northbound.passwords`), so a leaked
config gives no token away. A scrypt check costs ~50 ms: the name selects the one hash to check, checks run
in a worker thread (the event loop never waits on one) at most two at a time, and a token that matched is
remembered by its SHA-256 so a client polling every second pays the check once.

Checks are the one thing a client without a valid token can make the gateway spend time on, so they are
bounded per client address: at most :data:`MAX_CHECKS_PER_ADDRESS` waiting or running at once (one more is
answered at once with :class:`TooManyAttempts`, HTTP 429), and a token that failed is remembered for
:data:`FAILED_MEMORY_S` (repeating it costs nothing). Without that, 300 concurrent requests with a wrong
secret kept a new, valid token waiting ~11 s behind them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from dataclasses import dataclass

from bessgw.config import ApiToken
from bessgw.northbound.passwords import verify_password

ROLES = ("viewer", "operator", "admin")
#: at most this many verified tokens remembered (a config holds a handful)
_CACHE_SIZE = 64
#: token checks one client address may have waiting or running at once
MAX_CHECKS_PER_ADDRESS = 2
#: a token that failed its check is answered 401 without a new check for this long
FAILED_MEMORY_S = 10.0
#: at most this many failed tokens remembered
_FAILED_SIZE = 1024


class TooManyAttempts(Exception):
    """This client address already has :data:`MAX_CHECKS_PER_ADDRESS` token checks in progress."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this principal has ``role`` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)


class TokenChecker:
    """Maps a bearer token to its :class:`Principal`, or ``None``."""

    def __init__(self, tokens: list[ApiToken]) -> None:
        self._tokens = {token.name: token for token in tokens}
        self._verified: dict[bytes, Principal] = {}
        self._failed: dict[bytes, float] = {}  # SHA-256 of a token that failed -> when (monotonic)
        self._checks = asyncio.Semaphore(2)
        self._in_progress: Counter[str] = Counter()  # client address -> checks waiting or running
        self.refused_attempts = 0  #: checks refused because their address had too many in progress

    async def principal(self, bearer: str, address: str = "") -> Principal | None:
        """The token's principal, ``None`` if it is not valid; :class:`TooManyAttempts` (module docstring)."""
        name, dot, secret = bearer.partition(".")
        token = self._tokens.get(name)
        if not dot or not secret or token is None or len(bearer) > 1024:
            return None
        key = hashlib.sha256(bearer.encode("utf-8", "surrogatepass")).digest()
        known = self._verified.get(key)
        if known is not None:
            return known
        failed_at = self._failed.get(key)
        if failed_at is not None and time.monotonic() - failed_at < FAILED_MEMORY_S:
            return None
        if self._in_progress[address] >= MAX_CHECKS_PER_ADDRESS:
            self.refused_attempts += 1
            raise TooManyAttempts(address)
        self._in_progress[address] += 1
        try:
            async with self._checks:
                ok = await asyncio.to_thread(verify_password, secret, token.token_hash)
        finally:
            self._in_progress[address] -= 1
            if not self._in_progress[address]:
                del self._in_progress[address]
        if not ok:
            if len(self._failed) >= _FAILED_SIZE:
                self._failed.clear()
            self._failed[key] = time.monotonic()
            return None
        principal = Principal(token.name, token.role)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[key] = principal
        return principal
