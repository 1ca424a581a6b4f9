"""Protocol and firmware versions as comparable tuples.

Devices report versions such as ``"2.1"``, ``"v2"`` or ``"3.0.7-rc1"``; only the leading numeric
components matter for compatibility checks.
"""

from __future__ import annotations

import re

#: the first dotted run of numbers; what follows it (rc3, -beta, +build) is a pre-release/build tag
_LEADING_VERSION = re.compile(r"(\d+(?:\.\d+)*)")


def parse_version(text: str) -> tuple[int, ...]:
    """Return the numeric components of ``text`` (``"v2.1-rc3"`` and ``"2.1rc3"`` -> ``(2, 1)``).

    Raises ``ValueError`` when the text holds no number at all: a version we cannot compare must not be
    mistaken for "0" and silently accepted.
    """
    match = _LEADING_VERSION.search(text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    parts = [int(part) for part in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
