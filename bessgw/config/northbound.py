"""``[northbound]``: the OPC UA server SCADA connects to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from bessgw.config.base import IDENTIFIER, StrictModel


def endpoint_host_port(endpoint: str) -> tuple[str, int]:
    """``opc.tcp://host:port/path`` -> ``(host, port)`` (the pattern of the endpoint fields holds)."""
    authority = endpoint.removeprefix("opc.tcp://").split("/", 1)[0]
    host, _, port = authority.rpartition(":")
    return host, int(port)


class OpcUaUser(StrictModel):
    """``[[northbound.opcua.users]]``: one user name/password login and its role."""

    name: str = Field(pattern=IDENTIFIER, description="Login name")
    password_hash: str = Field(
        pattern=r"^(scrypt\$\d+\$\d+\$\d+|pbkdf2_sha256\$\d+)\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$",
        description="Hashed password from `bessgw hash-password` (never the plain password)",
    )
    role: Literal["viewer", "operator", "admin"] = Field(
        description="viewer reads; operator also calls SetPower and writes setpoints; admin also resets faults"
    )


class OpcUaSettings(StrictModel):
    """``[northbound.opcua]``: the OPC UA server SCADA connects to (see docs/opcua.md)."""

    enabled: bool = False
    endpoint: str = Field(
        "opc.tcp://0.0.0.0:4840/bessgw", pattern=r"^opc\.tcp://[^/:]+:\d{1,5}(/.*)?$",
        description="Endpoint URL; the host part is the address listened on (port 0: any free port)",
    )
    security_policies: list[Literal["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign", "None"]] = Field(
        default_factory=lambda: ["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign"],
        min_length=1,
        description="Offered endpoints; None (no signing, no encryption) only if listed here",
    )
    anonymous: Literal["off", "read"] = Field("off", description="Anonymous sessions: refused, or read-only")
    certificate_path: Path | None = Field(
        None, description="Server certificate (DER or PEM); generated into state_dir/pki/own if unset"
    )
    private_key_path: Path | None = Field(None, description="Private key (PEM) of certificate_path")
    pki_dir: Path | None = Field(
        None, description="Trust list root holding trusted/ and rejected/ (default: state_dir/pki)"
    )
    users: list[OpcUaUser] = Field(default_factory=list)
    max_sessions: int = Field(
        20, ge=1, le=1000,
        description="Concurrent activated (logged-in) sessions; connections still logging in are counted apart",
    )
    max_pending_connections: int = Field(
        32, ge=1, le=1000,
        description="Connections without an activated session yet, all addresses; over it the least advanced, "
                    "oldest one is closed",
    )
    max_pending_connections_per_address: int = Field(
        8, ge=1, le=1000,
        description="Connections without an activated session yet from one source address; over it that "
                    "address's least advanced, oldest one is closed",
    )
    handshake_timeout_s: float = Field(
        5.0, ge=0.5, le=60,
        description="A connection that has not created a session (HEL, OPN, CreateSession) this long after it "
                    "was accepted is closed",
    )
    activation_timeout_s: float = Field(
        10.0, ge=1, le=300,
        description="A connection that has not activated its session (logged in) this long after it was "
                    "accepted is closed",
    )
    max_subscriptions_per_session: int = Field(10, ge=1, le=1000)
    session_idle_timeout_s: float = Field(
        60.0, ge=1, le=3600, description="Sessions silent this long are closed (caps the client's request)"
    )
    sampling_interval_s: float = Field(
        0.5, ge=0.05, le=60, description="How often changed values are pushed into the address space"
    )
    default_deadband: float = Field(0.0, ge=0, description="Absolute change below which a value is not republished")
    deadbands: dict[Annotated[str, StringConstraints(pattern=IDENTIFIER)], float] = Field(
        default_factory=dict, description="Per-variable absolute deadbands by browse name, e.g. {PowerKw = 1.0}"
    )
    command_timeout_s: float = Field(2.0, gt=0, le=60, description="Bound on one SetPower/setpoint write")

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """The address the server listens on, from ``endpoint``."""
        return endpoint_host_port(self.endpoint)

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSettings:
        if self.listen_host_port[1] > 65535:
            raise ValueError(f"endpoint port must be in 0..65535 (got {self.listen_host_port[1]})")
        names = [user.name for user in self.users]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"user names must be unique (repeated: {', '.join(duplicates)})")
        if (self.certificate_path is None) != (self.private_key_path is None):
            raise ValueError("set both certificate_path and private_key_path, or neither (then one is generated)")
        if self.max_pending_connections_per_address > self.max_pending_connections:
            raise ValueError("max_pending_connections_per_address must be <= max_pending_connections")
        if self.handshake_timeout_s > self.activation_timeout_s:
            raise ValueError("handshake_timeout_s must be <= activation_timeout_s")
        if not all(value >= 0 for value in self.deadbands.values()):  # also NaN, which `< 0` let through
            raise ValueError("deadbands must be numbers >= 0")
        return self


class NorthboundSection(StrictModel):
    """``[northbound]``: interfaces this gateway serves to SCADA and operators."""

    opcua: OpcUaSettings = OpcUaSettings()
