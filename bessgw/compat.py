"""Python-version shims: ``asyncio.TaskGroup``, ``asyncio.timeout`` and exception groups arrived in 3.11.

On 3.10 the ``taskgroup`` backport (same semantics, by a CPython core developer) provides both.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import TaskGroup, timeout
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - exercised on 3.10 only
    from exceptiongroup import BaseExceptionGroup
    from taskgroup import TaskGroup, timeout

__all__ = ["BaseExceptionGroup", "TaskGroup", "timeout"]
