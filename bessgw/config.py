"""Configuration: the TOML schema, loading, and error messages a site engineer can act on.

One TOML file per gateway is parsed with tomllib (tomli below Python 3.11) and validated by pydantic into
one typed, frozen :class:`Config`. Unknown keys are errors. Every error names the file, the key path and
what was expected, one line each::

    config/site.toml: units[3].modbus.port: Input should be less than or equal to 65535 (got 70000)

Plugin-specific tables (``plugins.<name>`` and ``units[i].options``) are validated in a second pass by the
models the plugins register, so their errors read the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bessgw.errors import ConfigError
from bessgw.plugin.manager import PluginRegistry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StrictModel(BaseModel):
    """Base of every config table: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(StrictModel):
    """``[gateway]``: who this gateway is and how the process behaves."""

    id: str = Field(pattern=IDENTIFIER, description="Gateway id, unique in the campus")
    state_dir: Path = Field(
        Path("/var/lib/bessgw"),
        description="Writable state (journal, certificates, admin socket); relative to the config file's directory",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: readable on a TTY, JSON otherwise (journald, pipes)"
    )
    telemetry_log_interval_s: float = Field(
        10.0, ge=0, description="How often each unit's telemetry is logged at info level (0: never)"
    )
    shutdown_grace_s: float = Field(
        5.0, gt=0, le=60, description="Bound on clean shutdown; keep below systemd's TimeoutStopSec"
    )


class ModbusSettings(StrictModel):
    """``[southbound.modbus]``: behaviour shared by every Modbus TCP endpoint."""

    request_timeout_s: float = Field(1.0, gt=0, le=60)
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    reconnect_min_s: float = Field(0.5, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    breaker_failures: int = Field(5, ge=1, le=1000, description="Consecutive failures that open the breaker")
    breaker_open_s: float = Field(10.0, gt=0, le=3600, description="How long an open breaker refuses requests")
    max_registers_per_read: int = Field(125, ge=1, le=125)

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

    host: str = "127.0.0.1"
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


_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})$")
#: ChaCha20-Poly1305 takes 256-bit keys
FEDERATION_KEY_BYTES = 32


def decode_campus_key(text: str) -> bytes:
    """One base64 campus key -> 32 raw bytes, or ``ValueError`` saying what is wrong with it."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"campus key is not valid base64 ({err})") from err
    if len(raw) != FEDERATION_KEY_BYTES:
        raise ValueError(
            f"campus key must decode to {FEDERATION_KEY_BYTES} bytes (got {len(raw)}); "
            "make one with: head -c 32 /dev/urandom | base64"
        )
    return raw


class FederationSection(StrictModel):
    """``[federation]``: gossip with the other gateways of the campus (SWIM membership + versioned state).

    Timing defaults follow memberlist's LAN profile (except ``suspicion_mult``, see there); every gateway of a
    campus should use the same values. Changing them trades detection and spread time against bytes per
    second (``bench/gossip.py`` measures both against Serf).
    """

    enabled: bool = True
    bind_host: str = Field("0.0.0.0", description="UDP address to listen on")
    bind_port: int = Field(7946, ge=0, le=65535, description="UDP port to listen on (0: any free port)")
    advertise_host: str | None = Field(
        None, description="Address peers reach this gateway at; required when bind_host is a wildcard"
    )
    advertise_port: int | None = Field(None, ge=1, le=65535, description="Port peers reach us at (default: bound)")
    seeds: list[str] = Field(default_factory=list, description="host:port of any gateways to join through")
    keys: list[str] = Field(
        default_factory=list, description="Campus keys, base64 of 32 bytes; the first one encrypts, all decrypt"
    )
    key_file: Path | None = Field(None, description="File with one base64 campus key per line, primary first")
    probe_interval_s: float = Field(1.0, gt=0, le=60, description="SWIM: one member probed per interval")
    probe_timeout_s: float = Field(0.5, gt=0, le=60, description="SWIM: wait this long for a direct ack")
    indirect_checks: int = Field(3, ge=0, le=16, description="SWIM: members asked to probe indirectly (k)")
    suspicion_mult: float = Field(
        3.0, gt=0, le=100,
        description="Suspicion timeout = mult * log10(members) * probe_interval_s (minimum); memberlist uses 4, "
        "3 is safe here because suspects are re-probed at once by others and refute within a gossip round",
    )
    suspicion_max_mult: float = Field(
        6.0, ge=1, le=100, description="Lifeguard: suspicion starts at max_mult * minimum, shrinks with confirmations"
    )
    awareness_max: int = Field(8, ge=0, le=64, description="Lifeguard: local health multiplier ceiling")
    gossip_interval_s: float = Field(0.2, gt=0, le=60, description="Piggybacked dissemination round")
    gossip_fanout: int = Field(3, ge=1, le=64, description="Members sent to per gossip round")
    retransmit_mult: int = Field(4, ge=1, le=64, description="Each update is sent mult * log10(members+1) times")
    push_pull_interval_s: float = Field(
        30.0, gt=0, le=3600, description="Anti-entropy with one random member (hashes first, then what differs)"
    )
    reconnect_interval_s: float = Field(10.0, gt=0, le=3600, description="Try one dead member this often")
    dead_reap_s: float = Field(
        86400.0, gt=0, description="Forget a dead member (and its units) after this long"
    )
    max_datagram_bytes: int = Field(1400, ge=512, le=65000, description="Larger messages are sent in parts")
    replay_window_s: float = Field(60.0, gt=0, le=3600, description="Datagrams older (or newer) are replays")
    publish_interval_s: float = Field(
        0.5, gt=0, le=3600, description="A changed unit summary is sent at most this often"
    )
    refresh_interval_s: float = Field(5.0, gt=0, le=3600, description="An unchanged unit summary is re-sent this often")
    stale_after_s: float = Field(15.0, gt=0, le=86400, description="Peers' unit data older than this is Uncertain")
    bad_log_interval_s: float = Field(10.0, ge=0, le=3600, description="Rate limit of 'dropped datagram' logs")

    @field_validator("seeds")
    @classmethod
    def _seeds_are_host_port(cls, seeds: list[str]) -> list[str]:
        for seed in seeds:
            match = _HOST_PORT.match(seed)
            if not match or not 1 <= int(match["port"]) <= 65535:
                raise ValueError(f"seed {seed!r} must be host:port with a port in 1..65535")
        return seeds

    @field_validator("keys")
    @classmethod
    def _keys_are_valid(cls, keys: list[str]) -> list[str]:
        for index, key in enumerate(keys):
            try:
                decode_campus_key(key)
            except ValueError as err:
                raise ValueError(f"keys[{index}]: {err}") from None
        return keys

    @model_validator(mode="after")
    def _consistent(self) -> FederationSection:
        if self.enabled and not self.keys and self.key_file is None:
            raise ValueError("set keys = [\"base64...\"] or key_file: every datagram is encrypted with the campus key")
        if self.keys and self.key_file is not None:
            raise ValueError("set either keys or key_file, not both")
        if self.probe_timeout_s >= self.probe_interval_s:
            raise ValueError("probe_timeout_s must be shorter than probe_interval_s")
        if self.advertise_host is None and self.bind_host in ("0.0.0.0", "::", ""):
            raise ValueError("bind_host is a wildcard: set advertise_host to the address peers reach us at")
        return self

    def campus_keys(self) -> list[bytes]:
        """The key ring, primary first, read from ``keys`` or ``key_file`` (``ConfigError`` names the line)."""
        if self.key_file is None:
            return [decode_campus_key(key) for key in self.keys]
        path = str(self.key_file)
        try:
            lines = self.key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(path, [f"{path}: cannot read campus keys: {err}"]) from err
        keys, problems = [], []
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                keys.append(decode_campus_key(line))
            except ValueError as err:
                problems.append(f"{path}: line {number}: {err}")
        if not keys and not problems:
            problems.append(f"{path}: no campus key in the file")
        if problems:
            raise ConfigError(path, problems)
        return keys


class ControlSourceTable(StrictModel):
    """``[[control.sources]]``: one setpoint source (operator override, SCADA, campus dispatch)."""

    name: str = Field(pattern=IDENTIFIER, description="Source name commands are tagged with, e.g. local, scada")
    priority: int = Field(ge=0, le=1000, description="Higher wins while several sources are live")
    heartbeat_timeout_s: float = Field(
        gt=0, le=3600, description="A source not heard from (setpoint or heartbeat) for this long is dropped"
    )


def _default_control_sources() -> list[ControlSourceTable]:
    return [
        ControlSourceTable(name="local", priority=300, heartbeat_timeout_s=30.0),
        ControlSourceTable(name="scada", priority=200, heartbeat_timeout_s=10.0),
        ControlSourceTable(name="campus", priority=100, heartbeat_timeout_s=5.0),
    ]


class ControlSection(StrictModel):
    """``[control]``: dispatch, fail-safe and the command journal."""

    period_s: float = Field(0.1, gt=0, le=60, description="Control period: arbitrate, allocate, write")
    write_timeout_s: float | None = Field(
        None, gt=0, le=60, description="Bound on one unit's setpoint write (default: the period, at least 0.5 s)"
    )
    hold_s: float = Field(
        10.0, ge=0, le=3600, description="With no live source, hold the last target this long, then ramp to 0"
    )
    fail_safe_ramp_kw_per_s: float | None = Field(
        None, gt=0, description="Ramp of the gateway target to 0 (default: the sum of the units' ramp limits)"
    )
    soc_balance_gain: float = Field(
        2.0, ge=0, le=10, description="How strongly allocation favours full units (discharge) / empty ones (charge)"
    )
    ramp_to_zero_on_stop: bool = Field(True, description="On SIGTERM ramp every unit to 0 kW before stopping")
    stop_timeout_s: float = Field(
        4.0, gt=0, le=3600, description="Bound on the ramp to 0 kW at stop; keep below gateway.shutdown_grace_s"
    )
    sources: list[ControlSourceTable] = Field(default_factory=_default_control_sources)
    journal_file: str = Field("commands.sqlite3", description="Command journal, relative to gateway.state_dir")
    journal_keep_days: float = Field(90.0, gt=0, description="Journal entries older than this are pruned")

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[ControlSourceTable]) -> list[ControlSourceTable]:
        seen: dict[str, int] = {}
        for index, source in enumerate(sources):
            if source.name in seen:
                raise ValueError(f"source {source.name!r} is used by sources[{seen[source.name]}] and sources[{index}]")
            seen[source.name] = index
        return sources


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
    max_sessions: int = Field(20, ge=1, le=1000, description="Concurrent client connections (one session each)")
    max_subscriptions_per_session: int = Field(10, ge=1, le=1000)
    session_idle_timeout_s: float = Field(
        60.0, ge=1, le=3600, description="Sessions silent this long are closed (caps the client's request)"
    )
    sampling_interval_s: float = Field(
        0.5, ge=0.05, le=60, description="How often changed values are pushed into the address space"
    )
    default_deadband: float = Field(0.0, ge=0, description="Absolute change below which a value is not republished")
    deadbands: dict[str, float] = Field(
        default_factory=dict, description="Per-variable absolute deadbands by browse name, e.g. {PowerKw = 1.0}"
    )
    command_timeout_s: float = Field(2.0, gt=0, le=60, description="Bound on one SetPower/setpoint write")

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSettings:
        names = [user.name for user in self.users]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"user names must be unique (repeated: {', '.join(duplicates)})")
        if (self.certificate_path is None) != (self.private_key_path is None):
            raise ValueError("set both certificate_path and private_key_path, or neither (then one is generated)")
        if any(value < 0 for value in self.deadbands.values()):
            raise ValueError("deadbands must be >= 0")
        return self


class NorthboundSection(StrictModel):
    """``[northbound]``: interfaces this gateway serves to SCADA and operators."""

    opcua: OpcUaSettings = OpcUaSettings()


class Config(StrictModel):
    """The whole configuration of one gateway."""

    gateway: GatewaySection
    southbound: SouthboundSection = SouthboundSection()
    defaults: UnitDefaults = UnitDefaults()
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-plugin tables")
    simulators: list[SimulatorSection] = Field(default_factory=list)
    units: list[UnitSection] = Field(default_factory=list)
    federation: FederationSection | None = None
    northbound: NorthboundSection = NorthboundSection()
    control: ControlSection = ControlSection()

    @field_validator("units")
    @classmethod
    def _unique_unit_ids(cls, units: list[UnitSection]) -> list[UnitSection]:
        seen: dict[str, int] = {}
        for index, unit in enumerate(units):
            if unit.id in seen:
                raise ValueError(f"unit id {unit.id!r} is used by units[{seen[unit.id]}] and units[{index}]")
            seen[unit.id] = index
        return units

    def unit_timing(self, unit: UnitSection) -> UnitDefaults:
        """The unit's effective timing: its own values over ``[defaults]``."""
        merged = self.defaults.model_dump()
        for name in merged:
            value = getattr(unit, name)
            if value is not None:
                merged[name] = value
        return UnitDefaults.model_validate(merged)


# ------------------------------------------------------------------------------------ loading


def _key_path(loc: Iterable[Any]) -> str:
    """pydantic's ``loc`` as the engineer wrote it: ``('units', 3, 'modbus', 'port')`` -> ``units[3].modbus.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_validation_error(path: str, err: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    """One line per pydantic error: ``file: key.path: message (got value)``."""
    lines = []
    for item in err.errors(include_url=False):
        loc = prefix + tuple(item.get("loc", ()))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; `bessgw config-schema` lists every key)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("model_type", "dict_type"):
            message += f" (got {_describe(item['input'])})"
        lines.append(f"{path}: {_key_path(loc)}: {message}")
    return lines


_TOML_POSITION = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors name the line and column."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), [f"{path}: cannot read: {err.strerror or err}"]) from err
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), [f"{path}: not UTF-8 text (byte {err.start})"]) from err
    except tomllib.TOMLDecodeError as err:
        text = str(err)
        match = _TOML_POSITION.match(text)
        if match:
            where = f"line {match['line']}, column {match['col']}"
            text = match["msg"]
        else:
            where = "TOML"
        raise ConfigError(str(path), [f"{path}: {where}: TOML syntax error: {text}"]) from err


def parse_config(data: dict[str, Any], path: str = "<config>") -> Config:
    """Validate already-parsed TOML data against the core schema."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(path, format_validation_error(path, err)) from err


def _anchor_paths(config: Config, base: Path) -> Config:
    """Relative ``state_dir`` and ``key_file`` are relative to the config file, not to the working
    directory (systemd starts us in ``/``; a person runs ``bessgw status`` from anywhere)."""
    gateway = config.gateway
    if not gateway.state_dir.is_absolute():
        gateway = gateway.model_copy(update={"state_dir": (base / gateway.state_dir).resolve()})
    federation = config.federation
    if federation is not None and federation.key_file is not None and not federation.key_file.is_absolute():
        federation = federation.model_copy(update={"key_file": (base / federation.key_file).resolve()})
    return config.model_copy(update={"gateway": gateway, "federation": federation})


def load_config(path: str | Path, registry: PluginRegistry | None = None) -> Config:
    """Read, parse and validate a config file; with ``registry``, also the plugin-specific tables."""
    path = Path(path)
    config = _anchor_paths(parse_config(read_toml(path), str(path)), path.parent)
    if config.federation is not None and config.federation.enabled:
        try:  # a missing or malformed key file is a config error, found now rather than at first gossip
            config.federation.campus_keys()
        except ConfigError as err:
            problems = [f"{path}: federation.key_file: {problem}" for problem in err.problems]
            raise ConfigError(str(path), problems) from err
    if registry is not None:
        check_against_plugins(config, registry, str(path))
    return config


def _validate_table(model: type | None, table: dict[str, Any], path: str, loc: tuple[Any, ...]) -> list[str]:
    if model is None:
        if table:
            return [f"{path}: {_key_path(loc)}: this plugin takes no options (got {sorted(table)})"]
        return []
    try:
        model.model_validate(table)  # type: ignore[attr-defined]
    except ValidationError as err:
        return format_validation_error(path, err, loc)
    return []


def plugin_options(config: Config, spec_model: type | None, name: str) -> Any:
    """The validated ``plugins.<name>`` table for a driver (defaults when absent)."""
    if spec_model is None:
        return None
    return spec_model.model_validate(config.plugins.get(name, {}))  # type: ignore[attr-defined]


def unit_options(unit: UnitSection, spec_model: type | None) -> Any:
    """The validated ``units[i].options`` table."""
    if spec_model is None:
        return None
    return spec_model.model_validate(unit.options)  # type: ignore[attr-defined]


def check_against_plugins(config: Config, registry: PluginRegistry, path: str = "<config>") -> None:
    """Second pass: driver names, transport tables and plugin-owned tables, all errors at once."""
    problems: list[str] = []
    drivers = registry.drivers
    installed = ", ".join(sorted(drivers)) or "none installed"
    for index, unit in enumerate(config.units):
        loc = ("units", index)
        spec = drivers.get(unit.driver)
        where = f"{path}: {_key_path(loc)}"
        if spec is None:
            problems.append(f"{where}.driver: unknown driver {unit.driver!r} (installed: {installed})")
            continue
        if unit.chemistry is not None and unit.chemistry.lower() not in registry.chemistries:
            known = ", ".join(sorted(registry.chemistries)) or "none installed"
            problems.append(f"{where}.chemistry: unknown chemistry {unit.chemistry!r} (installed: {known})")
        for transport in ("modbus", "can", "opcua"):
            table = getattr(unit, transport)
            if spec.transport == transport and table is None:
                problems.append(f"{where}: driver {unit.driver!r} talks {transport}: add a [units.{transport}] table")
            elif spec.transport != transport and table is not None:
                problems.append(
                    f"{where}.{transport}: driver {unit.driver!r} does not use {transport} (it uses {spec.transport})"
                )
        problems += _validate_table(spec.unit_options, unit.options, path, loc + ("options",))
    owners = {spec.name: spec for spec in drivers.values()}
    for name, table in config.plugins.items():
        spec = owners.get(name)
        if spec is None:
            problems.append(f"{path}: plugins.{name}: no installed driver is called {name!r} (installed: {installed})")
            continue
        problems += _validate_table(spec.plugin_options, table, path, ("plugins", name))
    for index, sim in enumerate(config.simulators):
        spec = registry.simulators.get(sim.name)
        if spec is None:
            known = ", ".join(sorted(registry.simulators)) or "none installed"
            problems.append(f"{path}: simulators[{index}].name: unknown simulator {sim.name!r} (installed: {known})")
            continue
        try:
            spec.parse_args(list(sim.args))
        except ValueError as err:
            problems.append(f"{path}: simulators[{index}].args: {err}")
    if problems:
        raise ConfigError(path, problems)


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors (``bessgw config-schema``)."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bessgw gateway configuration"
    return schema
