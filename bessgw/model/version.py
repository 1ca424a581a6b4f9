"""Protocol and firmware versions as comparable tuples.

Devices report versions such as ``"2.1"``, ``"v2"`` or ``"3.0.7-rc1"``; only the leading numeric
components matter for compatibility checks.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"\d+")


def parse_version(text: str) -> tuple[int, ...]:
    """Return the numeric components of ``text`` (``"v2.1-rc3"`` -> ``(2, 1)``).

    Raises ``ValueError`` when the text holds no number at all: a version we cannot compare must not be
    mistaken for "0" and silently accepted.
    """
    head = text.strip().lower().lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts = [int(match) for match in _NUMBER.findall(head)]
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
