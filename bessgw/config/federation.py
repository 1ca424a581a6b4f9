"""``[federation]``: gossip membership and the campus key ring."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from bessgw.config.base import HOST, HOST_PORT, StrictModel
from bessgw.config.files import MAX_SECRET_BYTES, FileProblem, read_bounded
from bessgw.errors import ConfigError

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
    bind_host: str = Field("0.0.0.0", pattern=HOST, description="UDP address to listen on")
    bind_port: int = Field(7946, ge=0, le=65535, description="UDP port to listen on (0: any free port)")
    advertise_host: str | None = Field(
        None, pattern=HOST, description="Address peers reach this gateway at; required when bind_host is a wildcard"
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
        1.0, gt=0, le=100,
        description="Suspicion timeout = mult * log10(members) * probe_interval_s (minimum), reached only once "
        "suspicion_confirmations other members confirmed it; memberlist uses 4 with 2 confirmations, 1 is safe "
        "here because suspects are re-probed at once by a few others (a live one refutes within a gossip round, "
        "a dead one collects its confirmations within one probe interval)",
    )
    suspicion_max_mult: float = Field(
        6.0, ge=1, le=100, description="Lifeguard: suspicion starts at max_mult * minimum, shrinks with confirmations"
    )
    suspicion_confirmations: int = Field(
        3, ge=0, le=16,
        description="Lifeguard: independent confirmations that bring the suspicion timeout down to its minimum "
        "(at most members - 2)",
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
    replay_window_s: float | None = Field(
        None, gt=0, le=3600,
        description="Ignored: gossip wire format 2 binds every datagram to its receiver's boot instead of a "
        "clock window (docs/federation.md); still accepted so that older configs load",
    )
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
            match = HOST_PORT.match(seed)
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
        path = str(self.key_file).replace("\x00", "\\x00")
        try:  # bounded, regular files only: a FIFO or /dev/zero named here must not hang or fill memory
            lines = read_bounded(self.key_file, MAX_SECRET_BYTES).decode("utf-8").splitlines()
        except FileProblem as err:
            raise ConfigError(path, [f"{path}: cannot read campus keys: {err.reason}"]) from err
        except UnicodeDecodeError as err:
            raise ConfigError(path, [f"{path}: cannot read campus keys: not UTF-8 text (byte {err.start})"]) from err
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
