"""Bearer tokens of the REST API: ``<name>.<secret>``, the secret checked against its stored hash.

Tokens are stored hashed (the OPC UA password hashes of :mod:`bessgw.northbound.passwords`), so a leaked
config gives no token away. A scrypt check costs ~50 ms: the name selects the one hash to check, checks run
in a worker thread (the event loop never waits on one) at most two at a time, and a token that matched is
remembered by its SHA-256 so a client polling every second pays the check once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from bessgw.config import ApiToken
from bessgw.northbound.passwords import verify_password

ROLES = ("viewer", "operator", "admin")
#: at most this many verified tokens remembered (a config holds a handful)
_CACHE_SIZE = 64


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
        self._checks = asyncio.Semaphore(2)

    async def principal(self, bearer: str) -> Principal | None:
        name, dot, secret = bearer.partition(".")
        token = self._tokens.get(name)
        if not dot or not secret or token is None or len(bearer) > 1024:
            return None
        key = hashlib.sha256(bearer.encode("utf-8", "surrogatepass")).digest()
        known = self._verified.get(key)
        if known is not None:
            return known
        async with self._checks:
            ok = await asyncio.to_thread(verify_password, secret, token.token_hash)
        if not ok:
            return None
        principal = Principal(token.name, token.role)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[key] = principal
        return principal
