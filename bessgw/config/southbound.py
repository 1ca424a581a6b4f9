"""Southbound tables: transport-wide settings, unit timing defaults, and each unit's link and limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from bessgw.config.base import HOST, IDENTIFIER, StrictModel


class ModbusSettings(StrictModel):
    """``[southbound.modbus]``: behaviour shared by every Modbus TCP endpoint."""

    request_timeout_s: float = Field(1.0, gt=0, le=60)
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    reconnect_min_s: float = Field(0.5, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    breaker_failures: int = Field(5, ge=1, le=1000, description="Consecutive failures that open the breaker")
    breaker_open_s: float = Field(10.0, gt=0, le=3600, description="How long an open breaker refuses requests")
    max_registers_per_read: int = Field(125, ge=1, le=125)
    max_in_flight: int = Field(
        1, ge=1, le=64, description="Requests awaiting an answer at once per connection (above 1: pipelined)"
    )

    @model_validator(mode="after")
    def _backoff_ordered(self) -> ModbusSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self


class CanSettings(StrictModel):
    """``[southbound.can]``: behaviour shared by every CAN bus."""

    reopen_min_s: float = Field(0.5, gt=0, le=600)
    reopen_max_s: float = Field(30.0, gt=0, le=3600)
    command_rate_hz: float = Field(20.0, gt=0, le=1000, description="Max command frames per node per second")
    heartbeat_interval_s: float = Field(0.1, gt=0, le=60)
    command_burst: int = Field(
        2, ge=1, le=1000, description="Command frames a node may receive back to back before the rate applies"
    )
    send_timeout_s: float = Field(
        1.0, gt=0, le=60, description="Bound on sending one command frame, rate-limit wait included"
    )
    batch_window_s: float = Field(
        0.005, ge=0, le=0.1,
        description="A busy bus's frames reach drivers once per window (bounds their added latency); 0: at once",
    )

    @model_validator(mode="after")
    def _backoff_ordered(self) -> CanSettings:
        if self.reopen_min_s > self.reopen_max_s:
            raise ValueError("reopen_min_s must not exceed reopen_max_s")
        return self


class OpcUaClientSettings(StrictModel):
    """``[southbound.opcua]``: behaviour shared by every OPC UA server the gateway is a client of."""

    request_timeout_s: float = Field(2.0, gt=0, le=60, description="Bound on one read, write or method call")
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="Bound on connect + secure channel + session")
    reconnect_min_s: float = Field(0.5, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    keepalive_interval_s: float = Field(
        1.0, gt=0, le=600, description="Watchdog: read the server's CurrentTime this often; a failure reconnects"
    )
    publish_interval_s: float = Field(0.1, gt=0, le=60, description="Default subscription publishing interval")
    certificate_path: Path | None = Field(
        None, description="Client certificate (DER or PEM); generated into state_dir/pki/southbound if unset"
    )
    private_key_path: Path | None = Field(None, description="Private key (PEM) of certificate_path")

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaClientSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if (self.certificate_path is None) != (self.private_key_path is None):
            raise ValueError("set both certificate_path and private_key_path, or neither (then one is generated)")
        return self


class SouthboundSection(StrictModel):
    """``[southbound]``: transport-wide settings."""

    modbus: ModbusSettings = ModbusSettings()
    can: CanSettings = CanSettings()
    opcua: OpcUaClientSettings = OpcUaClientSettings()


class UnitDefaults(StrictModel):
    """``[defaults]``: timing every unit inherits unless it sets its own."""

    poll_interval_s: float = Field(0.1, gt=0, le=3600)
    stale_after_s: float = Field(1.0, gt=0, le=3600, description="Older telemetry is shown as stale (Uncertain)")
    bad_after_s: float = Field(5.0, gt=0, le=86400, description="Older telemetry is shown as bad")
    heartbeat_interval_s: float = Field(1.0, gt=0, le=3600)
    retry_min_s: float = Field(0.5, gt=0, le=600, description="First retry delay after a unit's link fails")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the jittered exponential retry delay")

    @model_validator(mode="after")
    def _ages_ordered(self) -> UnitDefaults:
        if self.stale_after_s > self.bad_after_s:
            raise ValueError("stale_after_s must not exceed bad_after_s")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


class ModbusLink(StrictModel):
    """``units[i].modbus``: where a Modbus TCP unit is. Units sharing host:port share one connection."""

    host: str = Field("127.0.0.1", pattern=HOST, description="Host name or IP address of the Modbus TCP server")
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id behind the endpoint")


class CanLink(StrictModel):
    """``units[i].can``: which bus and which BMS node. python-can interface by name, no code change."""

    interface: str = Field("virtual", description="python-can interface: virtual, socketcan, pcan, kvaser, ...")
    channel: str = Field("bessgw0", description="python-can channel, e.g. can0 for socketcan")
    bitrate: int | None = Field(None, gt=0, le=8_000_000)
    node_id: int = Field(ge=0, le=255, description="BMS node id encoded in the arbitration id")
    frame_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="Cyclic frames older than this mark the unit stale"
    )


class OpcUaDeviceLink(StrictModel):
    """``units[i].opcua``: where an OPC UA unit is. Units with the same endpoint and login share one session."""

    endpoint: str = Field(pattern=r"^opc\.tcp://[^/:]+:\d{1,5}(/.*)?$", description="Server endpoint URL")
    security_policy: Literal["Basic256Sha256", "None"] = Field(
        "Basic256Sha256", description="None (no signing, no encryption) is for labs only"
    )
    security_mode: Literal["SignAndEncrypt", "Sign"] = "SignAndEncrypt"
    username: str | None = Field(None, description="User name login (anonymous when unset)")
    password: str | None = Field(None, description="Password of username (prefer password_file)")
    password_file: Path | None = Field(None, description="File whose first line is the password of username")
    server_certificate_path: Path | None = Field(
        None, description="Pin the server's certificate (DER or PEM); unset: accept what the endpoint offers"
    )
    namespace_uri: str = Field(description="Namespace of the unit's browse names, e.g. urn:vendor-b:vrfb")
    object_path: str = Field(
        description="Browse path of the unit's root object under Objects, e.g. Containers/VRFB-01"
    )
    publish_interval_s: float | None = Field(None, gt=0, le=60, description="Default: [southbound.opcua]")

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaDeviceLink:
        port = int(self.endpoint.removeprefix("opc.tcp://").split("/", 1)[0].rpartition(":")[2])
        if not 1 <= port <= 65535:
            raise ValueError(f"endpoint port must be in 1..65535 (got {port})")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set either password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if not [part for part in self.object_path.split("/") if part]:
            raise ValueError("object_path must name at least one object")
        return self


class SiteLimitsTable(StrictModel):
    """``units[i].site_limits``: the site engineer's limits; absent keys impose none."""

    max_charge_kw: float | None = Field(None, ge=0)
    max_discharge_kw: float | None = Field(None, ge=0)
    max_q_kvar: float | None = Field(None, ge=0)
    soc_min_pct: float | None = Field(None, ge=0, le=100)
    soc_max_pct: float | None = Field(None, ge=0, le=100)
    ramp_kw_per_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _soc_window(self) -> SiteLimitsTable:
        """An empty window passed check-config, and the unit was refused at start ("SOC windows do not overlap")."""
        if self.soc_min_pct is not None and self.soc_max_pct is not None and self.soc_min_pct > self.soc_max_pct:
            raise ValueError(f"soc_min_pct ({self.soc_min_pct:g} %) must not exceed soc_max_pct "
                             f"({self.soc_max_pct:g} %)")
        return self


class UnitSection(StrictModel):
    """``[[units]]``: one battery container the gateway controls."""

    id: str = Field(pattern=IDENTIFIER)
    driver: str = Field(description="Driver name registered by a vendor plugin (bessgw plugins list)")
    chemistry: str | None = Field(None, description="Expected chemistry; a unit offering another is refused")
    enabled: bool = True
    auto_start: bool = Field(
        False, description="Start the unit (PCS on / contactors closed) whenever it is found in standby"
    )
    poll_interval_s: float | None = Field(None, gt=0, le=3600)
    stale_after_s: float | None = Field(None, gt=0, le=3600)
    bad_after_s: float | None = Field(None, gt=0, le=86400)
    heartbeat_interval_s: float | None = Field(None, gt=0, le=3600)
    retry_min_s: float | None = Field(None, gt=0, le=600)
    retry_max_s: float | None = Field(None, gt=0, le=3600)
    modbus: ModbusLink | None = None
    can: CanLink | None = None
    opcua: OpcUaDeviceLink | None = None
    site_limits: SiteLimitsTable = SiteLimitsTable()
    options: dict[str, Any] = Field(default_factory=dict, description="Driver-specific, see the plugin docs")


class SimulatorSection(StrictModel):
    """``[[simulators]]``: simulated devices the daemon starts beside itself (demos and tests only)."""

    name: str = Field(description="Simulator registered by a plugin (bessgw plugins list)")
    args: list[str] = Field(default_factory=list, description="Arguments as for `bessgw sim NAME ...`")
