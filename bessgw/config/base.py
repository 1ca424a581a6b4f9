"""The base of every config table, and the id and address patterns config keys share."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: a host name or an IPv4 / IPv6 address (IPv6 with or without brackets): no spaces, no control characters
HOST = r"^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+|[A-Za-z0-9_.-]{1,253})$"
#: ``host:port`` as gossip seeds and etcd endpoints are written (IPv6 hosts in brackets)
HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


#: the longest text value a config key takes (Linux's PATH_MAX; a host name has at most 253 characters)
MAX_TEXT_CHARS = 4096


def _texts(value: Any) -> list[str]:
    """The text values in ``value`` (itself, or the items of a list of texts), as strings."""
    if isinstance(value, (str, PurePath)):
        return [str(value)]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if isinstance(item, (str, PurePath))]
    return []


class StrictModel(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _sane_text(cls, value: Any) -> Any:
        """No text value may hold a NUL byte: no path, host or argument survives one at run time. None is
        longer than :data:`MAX_TEXT_CHARS`: a 1 MB host name was accepted, and a 1 MB driver name or path
        came back in one 1 MB error line."""
        for text in _texts(value):
            if "\x00" in text:
                raise ValueError("must not contain a NUL byte")
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(f"must be at most {MAX_TEXT_CHARS} characters (this one has {len(text)})")
        return value
