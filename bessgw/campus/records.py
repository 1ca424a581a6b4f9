"""The records the campus keeps in etcd, and their strict, bounded JSON encoding.

Every value is one JSON object with an explicit schema version ``v`` and a ``kind``. Decoding is strict
because a value in etcd was written by another process (another version of bessgw, a person with
``etcdctl``, a bug): anything that is not a record of a version we read — bad UTF-8 or JSON, NaN or
infinity, a wrong type, a missing field, an unknown *required* field, a string or number out of bounds, a
value larger than :data:`MAX_RECORD_BYTES` — raises :class:`~bessgw.errors.CorruptRecordError`. Callers
count it and treat the key as holding nothing they may act on; a corrupt record is never applied.

Versions follow the gossip policy (``docs/compatibility.md``): a reader accepts ``v`` in
:data:`RECORD_MIN`..:data:`RECORD_MAX` and refuses a newer one (:class:`~bessgw.errors.NewerRecordError`,
counted like a corrupt record, saying so); an unknown field is ignored (an optional field of a later
release) unless its name starts with ``!`` (required). Writers write :data:`SCHEMA_VERSION`, which every
release that may still run in the campus reads: during a rolling upgrade gateways of the previous release
read what the new ones write, so a new record version is only written by the release *after* the first one
that reads it. Release 0.2.0 reads exactly version 1 with exactly its fields, so this release writes
version 1 and no new field.

Power follows the load convention of the rest of bessgw: ``p_kw > 0`` discharges into the grid.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from bessgw.errors import CorruptRecordError, NewerRecordError

#: the record version this release writes (release 0.2.0 reads 1 only)
SCHEMA_VERSION = 1
#: the record versions this release reads
RECORD_MIN = 1
RECORD_MAX = 1
#: record fields starting with this must be understood by the reader, or the record is refused
REQUIRED_PREFIX = "!"
#: a record is a few hundred bytes; anything much larger is not one of ours
MAX_RECORD_BYTES = 4096
#: |P| and |Q| above this (10 GW) are not a battery campus
MAX_ABS_KW = 1.0e7
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 256
_MAX_REVISION = 2**63 - 1
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
#: W3C trace context, version 00: ``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

Record = TypeVar("Record", bound="_Record")


def _kw(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number (got {type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or abs(value) > MAX_ABS_KW:
        raise ValueError(f"expected a finite power within ±{MAX_ABS_KW:g} kW (got {value!r})")
    return value


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a time in seconds (got {type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value < 1.0e11:
        raise ValueError(f"expected a finite time in 0..1e11 s (got {value!r})")
    return value


def _optional_time(value: Any) -> float | None:
    return None if value is None else _time(value)


def _revision(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_REVISION:
        raise ValueError(f"expected a revision, an integer >= 0 (got {value!r:.40})")
    return value


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"expected an id of at most {MAX_ID_CHARS} letters, digits, _.:@/- (got {value!r:.40})")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"expected a string of at most {MAX_TEXT_CHARS} characters (got {value!r:.40})")
    return value


def _traceparent(value: Any) -> str:
    if not isinstance(value, str) or (value and not TRACEPARENT.match(value)):
        raise ValueError(f"expected a W3C traceparent or '' (got {value!r:.60})")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


@dataclass(frozen=True)
class _Record:
    """Base of the records: ``encode`` and the strict ``decode``; subclasses declare ``KIND`` and ``CHECKS``."""

    KIND: ClassVar[str] = ""
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def __post_init__(self) -> None:
        for field in fields(self):
            try:
                self.CHECKS[field.name](getattr(self, field.name))
            except ValueError as err:
                raise ValueError(f"{self.KIND}.{field.name}: {err}") from None

    def encode(self) -> bytes:
        """Compact JSON with ``v`` and ``kind`` first (``ValueError`` for values that would not decode)."""
        body = {"v": SCHEMA_VERSION, "kind": self.KIND, **asdict(self)}
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"{self.KIND} record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
        return data

    @classmethod
    def decode(cls: type[Record], data: bytes, key: str = "") -> Record:
        """Parse one stored value; :class:`CorruptRecordError` for anything but exactly this record."""
        if not isinstance(data, (bytes, bytearray)):
            raise CorruptRecordError(f"expected bytes (got {type(data).__name__})", key)
        if len(data) > MAX_RECORD_BYTES:
            raise CorruptRecordError(f"{len(data)} bytes, more than {MAX_RECORD_BYTES}", key)
        try:
            body = json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise CorruptRecordError(f"not a JSON record: {err}", key) from None
        if not isinstance(body, dict):
            raise CorruptRecordError(f"expected a JSON object (got {type(body).__name__})", key)
        version = body.pop("v", None)
        if isinstance(version, bool) or not isinstance(version, int) or version < RECORD_MIN:
            raise CorruptRecordError(f"schema version {version!r:.20}, this gateway reads {RECORD_MIN}..{RECORD_MAX}",
                                     key)
        if version > RECORD_MAX:
            raise NewerRecordError(f"schema version {version} was written by a newer release, this gateway reads "
                                   f"{RECORD_MIN}..{RECORD_MAX}", key)
        kind = body.pop("kind", None)
        if kind != cls.KIND:
            raise CorruptRecordError(f"expected a {cls.KIND} record (got kind {kind!r:.40})", key)
        expected = set(cls.CHECKS)
        missing = sorted(expected - set(body))
        required = sorted(name for name in set(body) - expected if name.startswith(REQUIRED_PREFIX))
        if missing or required:
            raise CorruptRecordError(f"{cls.KIND}: missing fields {missing}, unknown required fields {required[:5]}",
                                     key)
        values = {}
        for name, check in cls.CHECKS.items():
            try:
                values[name] = check(body[name])
            except ValueError as err:
                raise CorruptRecordError(f"{cls.KIND}.{name}: {err}", key) from None
        return cls(**values)


@dataclass(frozen=True)
class CampusSetpoint(_Record):
    """The campus setpoint: what the campus as a whole should deliver, committed by the gateway that accepted
    it. ``expires_at`` is wall-clock (Unix seconds; campus gateways run NTP) or ``None`` for no expiry."""

    KIND: ClassVar[str] = "setpoint"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "p_kw": _kw, "q_kvar": _kw, "command_id": _identifier, "source": _identifier, "principal": _text,
        "accepted_by": _identifier, "accepted_at": _time, "expires_at": _optional_time, "traceparent": _traceparent,
    }

    p_kw: float
    q_kvar: float
    command_id: str
    source: str
    principal: str
    accepted_by: str
    accepted_at: float
    expires_at: float | None
    traceparent: str = ""

    def expired(self, now_wall_s: float) -> bool:
        return self.expires_at is not None and now_wall_s >= self.expires_at


@dataclass(frozen=True)
class Share(_Record):
    """One gateway's part of the campus setpoint, bound to that gateway's lease (it vanishes with it).

    ``setpoint_revision`` is the etcd revision of the campus setpoint it was computed from (0 with no
    setpoint); ``command_id`` and ``traceparent`` are the campus command's, so one trace follows the
    command from the gateway that accepted it to the device writes on every gateway.
    """

    KIND: ClassVar[str] = "share"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "gateway_id": _identifier, "p_kw": _kw, "q_kvar": _kw, "setpoint_revision": _revision,
        "command_id": _text, "expires_at": _optional_time, "traceparent": _traceparent,
    }

    gateway_id: str
    p_kw: float
    q_kvar: float
    setpoint_revision: int
    command_id: str
    expires_at: float | None
    traceparent: str = ""

    def expired(self, now_wall_s: float) -> bool:
        return self.expires_at is not None and now_wall_s >= self.expires_at


@dataclass(frozen=True)
class Applied(_Record):
    """A gateway's acknowledgement: it acts on the share at ``share_revision`` (mod revision of the share
    key) and no older one; ``applied_p_kw`` is what it passed to its control loop. The allocator commits
    increases only once every current share is acknowledged."""

    KIND: ClassVar[str] = "applied"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "gateway_id": _identifier, "share_revision": _revision, "applied_p_kw": _kw,
    }

    gateway_id: str
    share_revision: int
    applied_p_kw: float


@dataclass(frozen=True)
class Presence(_Record):
    """``gateways/<id>``: the gateway is there, for as long as its lease lives."""

    KIND: ClassVar[str] = "gateway"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"gateway_id": _identifier, "since": _time}

    gateway_id: str
    since: float


@dataclass(frozen=True)
class AllocatorClaim(_Record):
    """``allocator``: who splits the setpoint, for as long as that gateway's lease lives."""

    KIND: ClassVar[str] = "allocator"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"gateway_id": _identifier, "since": _time}

    gateway_id: str
    since: float


def _phase(value: Any) -> str:
    if value not in ("decrease", "increase", "wait", "steady"):
        raise ValueError(f"expected decrease, increase, wait or steady (got {value!r:.40})")
    return value


@dataclass(frozen=True)
class AllocationRecord(_Record):
    """``allocation``: the allocator's last committed step. Every share-writing txn rewrites it guarded on
    its mod revision, so two allocation steps computed from different reads can never both commit."""

    KIND: ClassVar[str] = "allocation"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "allocator_id": _identifier, "setpoint_revision": _revision, "phase": _phase, "target_p_kw": _kw,
        "shortfall_p_kw": _kw, "shortfall_q_kvar": _kw,
    }

    allocator_id: str
    setpoint_revision: int
    phase: str
    target_p_kw: float
    shortfall_p_kw: float
    shortfall_q_kvar: float


@dataclass(frozen=True)
class CommandSeen(_Record):
    """``commands/<id>``: the campus command id was committed (idempotency across the campus)."""

    KIND: ClassVar[str] = "command"
    CHECKS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "command_id": _identifier, "p_kw": _kw, "q_kvar": _kw, "accepted_by": _identifier,
    }

    command_id: str
    p_kw: float
    q_kvar: float
    accepted_by: str


def valid_command_id(text: str) -> bool:
    """Whether ``text`` may be used as a campus command id (it becomes part of an etcd key)."""
    return isinstance(text, str) and bool(_ID.match(text))
