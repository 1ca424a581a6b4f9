"""``[campus]`` and ``[campus.coordination]``: campus dispatch through etcd.

Without ``[campus.coordination]`` a gateway needs no etcd: it keeps its campus view (gossip) and refuses
campus setpoints with a clear reason. With it, the campus setpoint, the allocator election and every
gateway's share live in etcd (three members; gateways are clients).

The lease and fencing numbers are safety-relevant. A lease TTL shorter than three election timeouts of the
etcd cluster is refused: after a leader change etcd extends every lease by about one election timeout only,
and a cut-off old leader can keep answering keepalives for one to two election timeouts, so a gateway's
own fencing deadline (keepalive send time + TTL - 2 x election timeout) needs that room to stay ahead of
the key's deletion.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bessgw.config.base import HOST_PORT, StrictModel

_KEY_PREFIX = re.compile(r"^/[A-Za-z0-9_./-]{0,200}/$")


class CoordinationSection(StrictModel):
    """``[campus.coordination]``: the etcd cluster that holds the campus setpoint and the shares."""

    endpoints: list[str] = Field(
        min_length=1, max_length=7, description="host:port of the etcd members' client URLs (3 members, 5 at most)"
    )
    ca_file: Path | None = Field(None, description="PEM CA bundle that signed the etcd server certificates (TLS)")
    cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS); needs key_file")
    key_file: Path | None = Field(None, description="PEM private key of cert_file")
    key_prefix: str = Field(
        "/bessgw/campus/", description="Every campus key lives under this prefix; one prefix per campus"
    )
    election_timeout_s: float = Field(
        1.0, gt=0, le=60, description="The etcd cluster's --election-timeout, in seconds (etcd's default: 1 s)"
    )
    lease_ttl_s: int = Field(
        5, ge=1, le=3600,
        description="Each gateway's lease; at least 3 x election_timeout_s. A dead gateway's share moves after this",
    )
    request_timeout_s: float = Field(
        1.0, gt=0, le=60, description="Bound on every etcd request; on timeout the next endpoint is tried"
    )
    fence_hold_s: float | None = Field(
        None, gt=0,
        description="Act on a share at most this long after the last successful linearizable etcd operation; "
        "shorter than lease_ttl_s (default: lease_ttl_s - 2 x election_timeout_s)",
    )
    allocation_interval_s: float = Field(
        1.0, gt=0, le=3600, description="The allocator re-splits the setpoint from the campus view this often"
    )
    min_share_change_kw: float = Field(
        1.0, ge=0, description="Share changes smaller than this are not written (no churn from telemetry noise)"
    )
    soc_balance_gain: float = Field(
        2.0, ge=0, le=10, description="How strongly shares favour full gateways (discharge) / empty ones (charge)"
    )
    command_retention_s: float = Field(
        86400.0, gt=0, description="A campus command id is remembered (deduplicated) this long"
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoints_are_host_port(cls, endpoints: list[str]) -> list[str]:
        for endpoint in endpoints:
            match = HOST_PORT.match(endpoint)
            if not match or not 1 <= int(match["port"]) <= 65535:
                raise ValueError(f"endpoint {endpoint!r} must be host:port with a port in 1..65535")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("endpoints are listed twice")
        return endpoints

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix_is_a_path(cls, prefix: str) -> str:
        if not _KEY_PREFIX.match(prefix):
            raise ValueError("key_prefix must start and end with '/' and hold only letters, digits, '_', '.', '-', '/'")
        return prefix

    @field_validator("lease_ttl_s")
    @classmethod
    def _ttl_covers_leader_change(cls, ttl_s: int, info: ValidationInfo) -> int:
        election_s = info.data.get("election_timeout_s")
        if election_s is not None and ttl_s < 3 * election_s:
            raise ValueError(
                f"must be at least 3 x election_timeout_s = {3 * election_s:g} s (got {ttl_s} s): a shorter lease can "
                "be taken over while its old holder, fenced by keepalives a cut-off etcd leader answered, still acts"
            )
        return ttl_s

    @model_validator(mode="after")
    def _consistent(self) -> CoordinationSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set cert_file and key_file together (mutual TLS), or neither")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file needs ca_file: client certificates are only sent over TLS")
        if self.fence_hold_s is not None and self.fence_hold_s >= self.lease_ttl_s:
            raise ValueError(f"fence_hold_s must be shorter than lease_ttl_s ({self.lease_ttl_s} s)")
        if self.request_timeout_s * 3 > self.lease_ttl_s:
            raise ValueError(
                f"request_timeout_s must be at most lease_ttl_s / 3 = {self.lease_ttl_s / 3:g} s: keepalives go "
                "every lease_ttl_s / 3 and one must fail over to another endpoint before the next is due"
            )
        return self

    @property
    def keepalive_interval_s(self) -> float:
        """Keepalives go at TTL / 3, so two can be lost before the lease is in danger."""
        return self.lease_ttl_s / 3.0

    @property
    def effective_fence_hold_s(self) -> float:
        """``fence_hold_s``, or its default ``lease_ttl_s - 2 x election_timeout_s``."""
        if self.fence_hold_s is not None:
            return self.fence_hold_s
        return self.lease_ttl_s - 2.0 * self.election_timeout_s

    @property
    def tls(self) -> bool:
        return self.ca_file is not None


class CampusSection(StrictModel):
    """``[campus]``: campus-wide dispatch; every sub-table is optional."""

    coordination: CoordinationSection | None = None
