"""The gossip wire formats (versions 2 and 3): msgpack messages, strictly validated on the way in.

Versions. Every datagram names its wire version in its sealing format byte (``0xB0 + version``,
:mod:`bessgw.federation.crypto`). A gateway speaks a :class:`VersionRange` (min/current/max, as
memberlist's ``vsn`` fields) and writes to each peer the highest version up to its own current that the
peer speaks; a peer whose range does not meet ours is *incompatible*: shown as such, never written to,
its state never used. Release 0.2.0 spoke version 2 without saying so, which is why a peer that has not
told us its range is written to at our minimum. A gateway tells its range in the envelope of every
datagram of version 3 or later and in its replicated ``wire`` key (``{"min", "cur", "max"}``), which old
gateways replicate without understanding, so two new gateways find each other's range even through an
old one. ``docs/compatibility.md`` states the policy.

Version 2 (release 0.2.0): the envelope ``[sender, boot, seq, to, to_boot, body]``; every field known,
anything unknown refused (``invalid``). Version 3: ``[sender, boot, seq, to, to_boot, [min, cur, max],
body]``. The first six elements are the *preamble*, kept by every later version, so a datagram of a
version we do not speak still tells us who sent it and what it speaks. In a version-3 body an unknown
key is ignored (an optional field of a later release) unless its name starts with ``!`` (a required
one: refused as ``required_field``), and arrays (member updates, entries, digest items, delta parts) may
carry trailing fields we do not know, which are ignored.

One datagram carries one message: the authenticated envelope ``[sender, boot, seq, to, to_boot, body]``.
``sender``/``boot`` name the sending gateway and its current life, ``seq`` numbers its datagrams within
that life, ``to``/``to_boot`` name the gateway the datagram is meant for and the life of it the sender
knows (``""``/0 on a first contact, when the sender knows only an address). The replay guard
(:mod:`bessgw.federation.replay`) refuses anything not bound to the receiver's current life, so a datagram
captured before a restart, or sent to another gateway, is never accepted. Format 1 (``[sender, boot, seq,
age_s, body]``, a clock window instead of receiver binding) is not understood: the sealing format byte
changed with it (:mod:`bessgw.federation.crypto`), so a format-1 datagram is dropped as ``format``.

Bodies are msgpack maps with short keys; every field is type- and range-checked here, so the rest of the
node only ever sees the frozen dataclasses below. msgpack is decoded with tight limits and
``strict_map_key``; never pickle.

Message types:

- ``PING`` / ``ACK`` / ``NACK`` / ``PING_REQ``: SWIM probes (``PING_REQ`` asks a member to probe ``target``
  at ``addr`` for us; it answers ``NACK`` when it got no ack, Lifeguard's hint that *we* may be the slow one).
  A ``PING`` is for the envelope's ``to``; format 1 named it again in ``target``, format 2 does not.
- ``SYNC``: push-pull opener with hashes of the sender's membership and state digest; ``join`` forces a
  full exchange. ``MEMBERS``: the full membership (in parts). ``DIGEST``: scuttlebutt digest (in parts).
  ``DELTA``: the entries the other side lacks, per owner, with the contiguous range they complete.
- ``LEAVE``: the ``left`` update about the sender carries the meaning. ``GOSSIP``: piggyback only.
- ``HELLO``: no body; the answer to a datagram we could not accept because it was not bound to our current
  boot. Its envelope tells the sender who we are and our boot.

Every type but ``HELLO`` may piggyback membership updates (``m``) and fresh state entries (``d``). A
membership update carries the member's boot, so members learn each other's current boot from gossip
before they first write to each other.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from bessgw.federation.errors import DatagramError

MAX_ID_LEN = 64
MAX_KEY_LEN = 128
MAX_ITEMS = 1024
MAX_VALUE_FIELDS = 64
MAX_STR = 512
MAX_INT = 2**63 - 1

#: the wire versions this release speaks (release 0.2.0 spoke 2 only, implicitly)
WIRE_MIN = 2
WIRE_CURRENT = 3
WIRE_MAX = 3
#: the first version whose envelope carries the preamble with the sender's range
PREAMBLE_VERSION = 3
#: the replicated key in which every gateway advertises its range
WIRE_KEY = "wire"
#: body keys starting with this are required: a receiver that does not know one refuses the datagram
REQUIRED_PREFIX = "!"
_BODY_KEYS = frozenset({"t", "q", "tg", "a", "r", "j", "mh", "sh", "m", "d", "ms", "dg", "dp"})


@dataclass(frozen=True, slots=True)
class VersionRange:
    """The versions a gateway speaks: it reads any of ``min..max`` and prefers to write ``current``."""

    min: int
    current: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.current <= self.max <= 255:
            raise ValueError(f"a version range needs 1 <= min <= current <= max <= 255 (got {self})")

    def __str__(self) -> str:
        return f"{self.min}..{self.max}" if self.min != self.max else str(self.min)

    def speaks(self, version: int) -> bool:
        return self.min <= version <= self.max

    def version_for(self, peer: VersionRange) -> int | None:
        """The version to write to ``peer``: the highest up to our current that it reads (None: none)."""
        version = min(self.current, peer.max)
        return version if version >= max(self.min, peer.min) and self.speaks(version) else None

    def compatible(self, peer: VersionRange) -> bool:
        return self.version_for(peer) is not None

    def to_wire(self) -> list[int]:
        return [self.min, self.current, self.max]

    def to_value(self) -> dict[str, Any]:
        """The replicated ``wire`` key's value."""
        return {"min": self.min, "cur": self.current, "max": self.max}

    @classmethod
    def from_wire(cls, raw: Any) -> VersionRange:
        r = _list(raw, "version range")
        if len(r) < 3:
            raise ValueError("version range must be [min, current, max]")
        try:
            return cls(_uint(r[0], "min"), _uint(r[1], "current"), _uint(r[2], "max"))
        except ValueError as err:
            raise ValueError(f"bad version range: {err}") from None

    @classmethod
    def from_value(cls, value: Any) -> VersionRange:
        """From a replicated ``wire`` value; ``ValueError`` if it is not one."""
        if not isinstance(value, dict):
            raise ValueError("wire value must be a map")
        return cls.from_wire([value.get("min"), value.get("cur"), value.get("max")])


#: what this release speaks
OURS = VersionRange(WIRE_MIN, WIRE_CURRENT, WIRE_MAX)


class MsgType(enum.IntEnum):
    PING = 1
    ACK = 2
    NACK = 3
    PING_REQ = 4
    SYNC = 5
    MEMBERS = 6
    DIGEST = 7
    DELTA = 8
    LEAVE = 9
    GOSSIP = 10
    HELLO = 11


class Status(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """A claim about one member: it is ``status`` at ``incarnation``; ``by`` names a suspecter.

    ``boot`` is the member's boot as the claimant knows it (0: unknown); peers address datagrams to it.
    """

    node: str
    host: str
    port: int
    incarnation: int
    status: Status
    by: str = ""
    boot: int = 0

    def to_wire(self) -> list[Any]:
        return [self.node, self.host, self.port, self.incarnation, int(self.status), self.by, self.boot]


@dataclass(frozen=True, slots=True)
class Entry:
    """One versioned key of ``owner`` (``value`` None: a tombstone)."""

    owner: str
    generation: int
    version: int
    key: str
    value: dict[str, Any] | None

    def to_wire(self) -> list[Any]:
        return [self.owner, self.generation, self.version, self.key, self.value]


@dataclass(frozen=True, slots=True)
class DigestItem:
    """What a node holds of ``owner``: every entry up to ``watermark`` of ``generation``."""

    owner: str
    generation: int
    watermark: int

    def to_wire(self) -> list[Any]:
        return [self.owner, self.generation, self.watermark]


@dataclass(frozen=True, slots=True)
class DeltaPart:
    """Entries of ``owner`` newer than ``base``; with them the receiver holds everything up to ``upto``."""

    owner: str
    generation: int
    base: int
    upto: int
    entries: tuple[tuple[str, int, dict[str, Any] | None], ...]

    def to_wire(self) -> list[Any]:
        return [self.owner, self.generation, self.base, self.upto, [list(e) for e in self.entries]]


@dataclass(frozen=True, slots=True)
class Header:
    """The authenticated envelope, checked by the replay guard: from whom (and which life), to whom.

    ``to`` is empty and ``to_boot`` 0 when the sender knows the receiver only by address (a seed).
    """

    sender: str
    boot: int
    seq: int
    to: str
    to_boot: int


@dataclass(frozen=True, slots=True)
class Message:
    type: MsgType
    probe_seq: int = 0
    target: str = ""
    addr: tuple[str, int] | None = None
    reply: bool = False
    join: bool = False
    member_hash: bytes = b""
    state_hash: bytes = b""
    members: tuple[MemberUpdate, ...] = ()
    entries: tuple[Entry, ...] = ()
    full_members: tuple[MemberUpdate, ...] = ()
    digest: tuple[DigestItem, ...] = ()
    deltas: tuple[DeltaPart, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------ encode


def body_of(msg: Message) -> dict[str, Any]:
    """The msgpack map for ``msg`` (empty fields omitted)."""
    body: dict[str, Any] = {"t": int(msg.type)}
    if msg.probe_seq:
        body["q"] = msg.probe_seq
    if msg.target:
        body["tg"] = msg.target
    if msg.addr is not None:
        body["a"] = list(msg.addr)
    if msg.reply:
        body["r"] = True
    if msg.join:
        body["j"] = True
    if msg.member_hash:
        body["mh"] = msg.member_hash
    if msg.state_hash:
        body["sh"] = msg.state_hash
    if msg.members:
        body["m"] = [m.to_wire() for m in msg.members]
    if msg.entries:
        body["d"] = [e.to_wire() for e in msg.entries]
    if msg.full_members:
        body["ms"] = [m.to_wire() for m in msg.full_members]
    if msg.digest:
        body["dg"] = [d.to_wire() for d in msg.digest]
    if msg.deltas:
        body["dp"] = [p.to_wire() for p in msg.deltas]
    return body


def encode(header: Header, msg: Message, version: int = WIRE_MIN, speaks: VersionRange = OURS) -> bytes:
    """The plaintext of ``msg`` in wire ``version`` (2: release 0.2.0's envelope; 3+: with our range)."""
    preamble = [header.sender, header.boot, header.seq, header.to, header.to_boot]
    if version < PREAMBLE_VERSION:
        return pack([*preamble, body_of(msg)])
    return pack([*preamble, speaks.to_wire(), body_of(msg)])


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def packed_size(item: Any) -> int:
    """Bytes ``item`` takes inside a message (for filling a datagram up to its budget)."""
    return len(pack(item))


# ------------------------------------------------------------------------------------------ decode


def decode(plaintext: bytes, version: int = WIRE_MIN) -> tuple[Header, Message]:
    """Parse and validate a decrypted datagram of wire ``version`` (2 or 3), or raise :class:`DatagramError`
    (``malformed``/``invalid``/``required_field``)."""
    header, _speaks, msg = decode_versioned(plaintext, version)
    return header, msg


def decode_versioned(plaintext: bytes, version: int) -> tuple[Header, VersionRange | None, Message]:
    """As :func:`decode`, with the sender's range from the preamble (None: version 2 has none)."""
    raw = _unpack(plaintext)
    try:
        if version < PREAMBLE_VERSION:
            return _header(raw), None, _message(raw[5], strict=True)
        header, speaks = _preamble(raw)
        return header, speaks, _message(raw[6], strict=False)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise DatagramError("invalid", str(err)) from None


def decode_preamble(plaintext: bytes) -> tuple[Header, VersionRange]:
    """Who sent a datagram of version 3 or later, and the range it speaks, without reading its body (a
    datagram of a version we do not speak still says that much)."""
    raw = _unpack(plaintext)
    try:
        return _preamble(raw)
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise DatagramError("invalid", str(err)) from None


def _preamble(raw: Any) -> tuple[Header, VersionRange]:
    if not isinstance(raw, list) or len(raw) < 7:
        raise ValueError("envelope must be [sender, boot, seq, to, to_boot, [min, cur, max], body, ...]")
    return _header([*raw[:5], None]), VersionRange.from_wire(raw[5])


def _unpack(plaintext: bytes) -> Any:
    try:
        raw = msgpack.unpackb(
            plaintext,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_STR,
            max_bin_len=64,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_VALUE_FIELDS,
            max_ext_len=0,
        )
    except Exception as err:  # msgpack raises a zoo of types (ExtraData, ValueError, FormatError, ...)
        raise DatagramError("malformed", f"{type(err).__name__}: {err}") from None
    return raw


def _header(raw: Any) -> Header:
    if not isinstance(raw, list) or len(raw) != 6:
        raise ValueError("envelope must be [sender, boot, seq, to, to_boot, body]")
    to = _ident(raw[3], "to") if raw[3] != "" else ""
    to_boot = _uint(raw[4], "to_boot")
    if not to and to_boot:
        raise ValueError("to_boot without to")
    return Header(_ident(raw[0], "sender"), _uint(raw[1], "boot"), _uint(raw[2], "seq"), to, to_boot)


def _message(body: Any, strict: bool) -> Message:
    """The body; ``strict`` (version 2) refuses any unknown key, otherwise only unknown required ones."""
    if not isinstance(body, dict):
        raise ValueError("body must be a map")
    unknown = set(body) - _BODY_KEYS
    if unknown and strict:
        raise ValueError(f"unknown body keys {sorted(unknown)}")
    required = sorted(k for k in unknown if k.startswith(REQUIRED_PREFIX))
    if required:
        raise DatagramError("required_field", f"unknown required body keys {required[:5]}")
    lenient = not strict  # arrays may then be longer than we know (trailing optional fields)
    msg_type = MsgType(_uint(body["t"], "t"))
    addr = None
    if "a" in body:
        a = _list(body["a"], "a")
        if len(a) != 2:
            raise ValueError("addr must be [host, port]")
        addr = (_host(a[0]), _port(a[1]))
    return Message(
        type=msg_type,
        probe_seq=_uint(body.get("q", 0), "q"),
        target=_ident(body["tg"], "target") if "tg" in body else "",
        addr=addr,
        reply=_bool(body.get("r", False), "r"),
        join=_bool(body.get("j", False), "j"),
        member_hash=_bytes(body.get("mh", b""), "mh"),
        state_hash=_bytes(body.get("sh", b""), "sh"),
        members=tuple(_member(m, lenient) for m in _list(body.get("m", []), "m")),
        entries=tuple(_entry(e, lenient) for e in _list(body.get("d", []), "d")),
        full_members=tuple(_member(m, lenient) for m in _list(body.get("ms", []), "ms")),
        digest=tuple(_digest(d, lenient) for d in _list(body.get("dg", []), "dg")),
        deltas=tuple(_delta(p, lenient) for p in _list(body.get("dp", []), "dp")),
    )


def _member(raw: Any, lenient: bool = False) -> MemberUpdate:
    m = _list(raw, "member")
    if not 7 <= len(m) <= (7 if not lenient else MAX_ITEMS):
        raise ValueError("member update must have 7 fields")
    by = m[5]
    return MemberUpdate(
        _ident(m[0], "node"), _host(m[1]), _port(m[2]), _uint(m[3], "incarnation"), Status(_uint(m[4], "status")),
        _ident(by, "by") if by else "", _uint(m[6], "boot"),
    )


def _entry(raw: Any, lenient: bool = False) -> Entry:
    e = _list(raw, "entry")
    if not 5 <= len(e) <= (5 if not lenient else MAX_ITEMS):
        raise ValueError("entry must have 5 fields")
    return Entry(_ident(e[0], "owner"), _uint(e[1], "generation"), _uint(e[2], "version"), _key(e[3]), _value(e[4]))


def _digest(raw: Any, lenient: bool = False) -> DigestItem:
    d = _list(raw, "digest")
    if not 3 <= len(d) <= (3 if not lenient else MAX_ITEMS):
        raise ValueError("digest item must have 3 fields")
    return DigestItem(_ident(d[0], "owner"), _uint(d[1], "generation"), _uint(d[2], "watermark"))


def _delta(raw: Any, lenient: bool = False) -> DeltaPart:
    p = _list(raw, "delta")
    if not 5 <= len(p) <= (5 if not lenient else MAX_ITEMS):
        raise ValueError("delta part must have 5 fields")
    base, upto = _uint(p[2], "base"), _uint(p[3], "upto")
    if upto < base:
        raise ValueError("delta upto below base")
    entries = []
    for raw_entry in _list(p[4], "delta entries"):
        e = _list(raw_entry, "delta entry")
        if not 3 <= len(e) <= (3 if not lenient else MAX_ITEMS):
            raise ValueError("delta entry must be [key, version, value]")
        entries.append((_key(e[0]), _uint(e[1], "version"), _value(e[2])))
    return DeltaPart(_ident(p[0], "owner"), _uint(p[1], "generation"), base, upto, tuple(entries))


def _value(raw: Any) -> dict[str, Any] | None:
    """A state value: None (tombstone) or a flat map of str -> scalar / list of scalars."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("value must be a map or nil")
    for name, item in raw.items():
        if not isinstance(name, str) or len(name) > MAX_KEY_LEN:
            raise ValueError("value field names must be short strings")
        items: Sequence[Any] = item if isinstance(item, list) else (item,)
        for scalar in items:
            if scalar is not None and not isinstance(scalar, (str, int, float, bool)):
                raise ValueError(f"value field {name!r} is not a scalar")
    return raw


def _list(raw: Any, what: str) -> list[Any]:
    if not isinstance(raw, list):
        raise ValueError(f"{what} must be an array")
    return raw


def _uint(raw: Any, what: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_INT:
        raise ValueError(f"{what} must be an unsigned integer")
    return raw


def _bool(raw: Any, what: str) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"{what} must be a boolean")
    return raw


def _bytes(raw: Any, what: str) -> bytes:
    if not isinstance(raw, bytes):
        raise ValueError(f"{what} must be bytes")
    return raw


def _ident(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_ID_LEN or not raw.isprintable():
        raise ValueError(f"{what} must be a printable id of 1..{MAX_ID_LEN} characters")
    return raw


def _key(raw: Any) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_KEY_LEN or not raw.isprintable():
        raise ValueError(f"key must be a printable string of 1..{MAX_KEY_LEN} characters")
    return raw


def _host(raw: Any) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= 255 or not raw.isprintable():
        raise ValueError("host must be a printable string")
    return raw


def _port(raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 65535:
        raise ValueError("port must be 1..65535")
    return raw
