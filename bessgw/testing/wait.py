"""The one bounded wait of the test suites: poll a condition until it holds or a deadline passes.

Tests never sleep to synchronise: they wait on the very condition they go on to assert, and a condition
that never comes fails with what was awaited instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_until(condition: Callable[[], T | Awaitable[T]], timeout_s: float, what: str = "condition",
                     step_s: float = 0.02) -> T:
    """Call ``condition`` every ``step_s`` until it returns something truthy; return that value.

    ``condition`` may be a plain function or a coroutine function (an OPC UA read, an HTTP probe). Raises
    :class:`AssertionError` naming ``what`` and the last value seen when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what} (last: {last!r})")
        await asyncio.sleep(step_s)


def wait_until_sync(condition: Callable[[], T], timeout_s: float, what: str = "condition",
                    step_s: float = 0.05) -> T:
    """:func:`wait_until` for code that runs no event loop (tests driving subprocesses)."""
    return asyncio.run(wait_until(condition, timeout_s, what, step_s))
