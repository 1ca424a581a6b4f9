"""REST bearer-token checks: what a client without a valid token can make the gateway spend is bounded."""

from __future__ import annotations

import asyncio

import pytest

from bessgw.config import ApiToken
from bessgw.northbound.http import auth
from bessgw.northbound.http.auth import MAX_CHECKS_PER_ADDRESS, TokenChecker, TooManyAttempts
from bessgw.northbound.passwords import hash_password


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every scrypt check the checker makes (the real ones, counted)."""
    made: list[str] = []
    verify = auth.verify_password

    def counted(secret: str, stored: str) -> bool:
        made.append(secret)
        return verify(secret, stored)

    monkeypatch.setattr(auth, "verify_password", counted)
    return made


def test_one_address_gets_at_most_two_checks_at_once_and_others_are_not_held_up(checks: list[str]) -> None:
    async def scenario() -> None:
        tokens = TokenChecker([ApiToken(name="ops", token_hash=hash_password("right-secret"), role="operator")])
        flood = [asyncio.ensure_future(tokens.principal(f"ops.wrong-{index}", "10.0.0.9")) for index in range(20)]
        valid = await tokens.principal("ops.right-secret", "10.0.0.1")  # another address: checked as usual
        outcomes = await asyncio.gather(*flood, return_exceptions=True)
        refused = [outcome for outcome in outcomes if isinstance(outcome, TooManyAttempts)]
        assert valid is not None and valid.role == "operator"
        assert len(refused) == 20 - MAX_CHECKS_PER_ADDRESS == tokens.refused_attempts
        assert all(outcome is None for outcome in outcomes if not isinstance(outcome, TooManyAttempts))
        assert len(checks) == MAX_CHECKS_PER_ADDRESS + 1  # the flood's two, and the valid token
        # once the address's checks are done it may try again
        assert await tokens.principal("ops.wrong-again", "10.0.0.9") is None

    asyncio.run(scenario())


def test_a_secret_that_failed_is_refused_again_without_a_new_check(checks: list[str]) -> None:
    async def scenario() -> None:
        tokens = TokenChecker([ApiToken(name="ops", token_hash=hash_password("right-secret"), role="viewer")])
        for _ in range(5):
            assert await tokens.principal("ops.wrong", "10.0.0.9") is None
        assert checks == ["wrong"]
        assert (await tokens.principal("ops.right-secret", "10.0.0.9")).role == "viewer"
        assert (await tokens.principal("ops.right-secret", "10.0.0.9")).role == "viewer"
        assert checks == ["wrong", "right-secret"]  # a valid one is remembered too

    asyncio.run(scenario())
