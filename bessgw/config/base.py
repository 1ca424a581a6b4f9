"""The base of every config table, and the id and address patterns config keys share."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: ``host:port`` as gossip seeds and etcd endpoints are written (IPv6 hosts in brackets)
HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


def _has_nul(value: Any) -> bool:
    if isinstance(value, (str, PurePath)):
        return "\x00" in str(value)
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, (str, PurePath)) and "\x00" in str(item) for item in value)
    return False


class StrictModel(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """No text value may hold a NUL byte: no path, host or argument survives one at run time."""
        if _has_nul(value):
            raise ValueError("must not contain a NUL byte")
        return value
