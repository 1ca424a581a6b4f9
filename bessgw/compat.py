"""Python-version shims: ``asyncio.TaskGroup`` and ``asyncio.timeout`` arrived in 3.11.

On 3.10 the ``taskgroup`` backport (same semantics, by a CPython core developer) provides both.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import TaskGroup, timeout
else:  # pragma: no cover - exercised on 3.10 only
    from taskgroup import TaskGroup, timeout

__all__ = ["TaskGroup", "timeout"]
