"""The base of every config table, and the id and address patterns config keys share."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: ``host:port`` as gossip seeds and etcd endpoints are written (IPv6 hosts in brackets)
HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")


class StrictModel(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
