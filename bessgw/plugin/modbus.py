"""What a Modbus vendor driver sees of its link, and the register codecs plugin authors need.

The link (:class:`RegisterLink`) is implemented by ``bessgw.southbound.modbus``: core owns the TCP
connection, shares it between the unit ids behind one endpoint, coalesces reads, bounds every request in
time and reconnects. A driver only says *which* registers it wants and decodes them with the helpers here,
so no pymodbus type ever reaches plugin code.

Conventions: addresses are 0-based protocol addresses (register "40101" in a vendor manual is address 100);
32-bit values span two registers whose order is given by :class:`WordOrder`; a scaled value is
``raw * scale`` (e.g. raw 5012 with scale 0.01 is 50.12 %).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

#: the Modbus limit for one read of holding registers (function 3)
MAX_READ_REGISTERS = 125
#: the Modbus limit for one write of multiple registers (function 16)
MAX_WRITE_REGISTERS = 123


class RegisterType(str, Enum):
    """How a value is laid out in registers."""

    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    F32 = "f32"
    STR = "str"  # ASCII, two characters per register, high byte first, NUL/space padded

    @property
    def width(self) -> int:
        """Registers one value occupies (strings: per register, see :class:`RegisterField.count`)."""
        return 2 if self in (RegisterType.U32, RegisterType.I32, RegisterType.F32) else 1


class WordOrder(str, Enum):
    """Order of the two registers of a 32-bit value (bytes inside a register are always big-endian)."""

    BIG = "big"  # high word first ("ABCD"), the Modbus convention
    LITTLE = "little"  # low word first ("CDAB"), common on PLC-derived controllers


_STRUCT_32 = {
    RegisterType.U32: struct.Struct(">I"),
    RegisterType.I32: struct.Struct(">i"),
    RegisterType.F32: struct.Struct(">f"),
}


def decode_value(
    registers: Sequence[int],
    offset: int,
    kind: RegisterType,
    word_order: WordOrder = WordOrder.BIG,
    scale: float = 1.0,
) -> float:
    """Decode one numeric value starting at ``registers[offset]`` and apply ``scale``.

    :raises ValueError: for :attr:`RegisterType.STR` (use :func:`decode_string`) or too few registers.
    """
    if kind is RegisterType.U16:
        raw: float = registers[offset]
    elif kind is RegisterType.I16:
        raw = registers[offset]
        if raw >= 0x8000:
            raw -= 0x10000
    elif kind is RegisterType.STR:
        raise ValueError("strings are decoded with decode_string()")
    else:
        if offset + 2 > len(registers):
            raise ValueError(f"a {kind.value} needs 2 registers at offset {offset}, have {len(registers)}")
        hi, lo = registers[offset], registers[offset + 1]
        if word_order is WordOrder.LITTLE:
            hi, lo = lo, hi
        raw = _STRUCT_32[kind].unpack(((hi << 16) | lo).to_bytes(4, "big"))[0]
    return raw * scale if scale != 1.0 else raw


def encode_value(
    value: float, kind: RegisterType, word_order: WordOrder = WordOrder.BIG, scale: float = 1.0
) -> list[int]:
    """The registers holding ``value`` (divided by ``scale`` and rounded for integer types).

    :raises ValueError: when the scaled value does not fit the type (never silently wraps: a wrapped
        power setpoint would reverse its sign).
    """
    if kind is RegisterType.STR:
        raise ValueError("strings are encoded with encode_string()")
    scaled = value / scale if scale != 1.0 else value
    if kind is RegisterType.F32:
        word = int.from_bytes(struct.pack(">f", scaled), "big")
    else:
        raw = round(scaled)
        low, high = {
            RegisterType.U16: (0, 0xFFFF),
            RegisterType.I16: (-0x8000, 0x7FFF),
            RegisterType.U32: (0, 0xFFFFFFFF),
            RegisterType.I32: (-0x80000000, 0x7FFFFFFF),
        }[kind]
        if not low <= raw <= high:
            raise ValueError(f"{value!r} (raw {raw}) does not fit {kind.value} with scale {scale:g}")
        if kind.width == 1:
            return [raw & 0xFFFF]
        word = raw & 0xFFFFFFFF
    hi, lo = (word >> 16) & 0xFFFF, word & 0xFFFF
    return [lo, hi] if word_order is WordOrder.LITTLE else [hi, lo]


def decode_string(registers: Sequence[int]) -> str:
    """ASCII text, two characters per register (high byte first), trailing NULs and spaces removed."""
    raw = b"".join(int(r).to_bytes(2, "big") for r in registers)
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").rstrip()


def encode_string(text: str, count: int) -> list[int]:
    """``text`` in ``count`` registers, NUL padded; raises ``ValueError`` when it does not fit."""
    raw = text.encode("ascii")
    if len(raw) > 2 * count:
        raise ValueError(f"{text!r} needs {(len(raw) + 1) // 2} registers, only {count} available")
    raw = raw.ljust(2 * count, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


@dataclass(frozen=True, slots=True)
class RegisterSpan:
    """``count`` holding registers from ``address`` (what a driver wants read)."""

    address: int
    count: int

    def __post_init__(self) -> None:
        if self.address < 0 or self.count < 1 or self.address + self.count > 0x10000:
            raise ValueError(f"bad register span {self.address}+{self.count}")

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count


class RegisterSnapshot:
    """Registers read together (one poll), as contiguous blocks; look values up by address."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: Sequence[tuple[int, Sequence[int]]]) -> None:
        #: ``(start address, values)`` per block, as read
        self.blocks = tuple((start, list(values)) for start, values in blocks)

    def registers(self, address: int, count: int = 1) -> list[int]:
        """The values of ``count`` registers from ``address``; ``KeyError`` when they were not read."""
        for start, values in self.blocks:
            offset = address - start
            if offset >= 0 and offset + count <= len(values):
                return values[offset : offset + count]
        raise KeyError(f"registers {address}..{address + count - 1} were not read")

    def value(
        self, address: int, kind: RegisterType, word_order: WordOrder = WordOrder.BIG, scale: float = 1.0
    ) -> float:
        """Decode the value at ``address`` (see :func:`decode_value`)."""
        return decode_value(self.registers(address, kind.width), 0, kind, word_order, scale)


@dataclass(frozen=True, slots=True)
class RegisterField:
    """A named numeric value in a register map (what :class:`RegisterDecoder` decodes)."""

    name: str
    address: int
    kind: RegisterType
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind is RegisterType.STR:
            raise ValueError(f"{self.name}: strings are decoded with decode_string()")


_KIND_CODES = {RegisterType.U16: 0, RegisterType.I16: 1, RegisterType.U32: 2, RegisterType.I32: 3,
               RegisterType.F32: 4}
_F32 = struct.Struct(">f")


class RegisterDecoder:
    """Decodes many fields from a :class:`RegisterSnapshot` at once, fast enough for every poll.

    Where each field sits in the snapshot's blocks is worked out once per block layout (a driver polls
    the same spans every cycle) instead of searched for per value; the per-field work is then a few
    integer operations. Equivalent to calling :meth:`RegisterSnapshot.value` per field.
    """

    def __init__(self, fields: Sequence[RegisterField]) -> None:
        self.fields = tuple(fields)
        self._plans: dict[tuple[tuple[int, int], ...], list[tuple[str, int, int, int, bool, float]]] = {}

    def _plan(self, layout: tuple[tuple[int, int], ...]) -> list[tuple[str, int, int, int, bool, float]]:
        plan = []
        for f in self.fields:
            width = f.kind.width
            for index, (start, length) in enumerate(layout):
                offset = f.address - start
                if offset >= 0 and offset + width <= length:
                    plan.append((f.name, index, offset, _KIND_CODES[f.kind], f.word_order is WordOrder.LITTLE,
                                 f.scale))
                    break
            else:
                raise KeyError(f"{f.name}: registers {f.address}..{f.address + width - 1} were not read")
        if len(self._plans) < 16:
            self._plans[layout] = plan
        return plan

    def decode(self, snapshot: RegisterSnapshot) -> dict[str, float]:
        """``{field name: scaled value}``; ``KeyError`` when a field's registers were not read."""
        blocks = snapshot.blocks
        layout = tuple((start, len(values)) for start, values in blocks)
        plan = self._plans.get(layout) or self._plan(layout)
        out: dict[str, float] = {}
        for name, index, offset, code, little, scale in plan:
            regs = blocks[index][1]
            if code == 0:
                raw: float = regs[offset]
            elif code == 1:
                raw = regs[offset]
                if raw >= 0x8000:
                    raw -= 0x10000
            else:
                first, second = regs[offset], regs[offset + 1]
                word = second << 16 | first if little else first << 16 | second
                if code == 2:
                    raw = word
                elif code == 3:
                    raw = word - 0x100000000 if word & 0x80000000 else word
                else:
                    raw = _F32.unpack(word.to_bytes(4, "big"))[0]
            out[name] = raw * scale if scale != 1.0 else raw
        return out


class RegisterLink(Protocol):
    """One Modbus device (a unit id behind a TCP endpoint) as its driver sees it.

    Every call is bounded by the gateway's ``request_timeout_s`` per request and raises only
    :class:`bessgw.plugin.DeviceError` subclasses: :class:`~bessgw.plugin.DeviceTimeoutError` (no answer),
    :class:`~bessgw.plugin.DeviceUnavailableError` (not connected, reconnecting, circuit breaker open),
    :class:`~bessgw.plugin.DeviceProtocolError` (an exception response — ``code`` is the Modbus exception
    code — or a malformed answer, or a failed write verification).
    """

    async def read_blocks(self, spans: Sequence[RegisterSpan]) -> RegisterSnapshot:
        """Read all ``spans`` in as few requests as possible (contiguous/overlapping spans are merged,
        each request at most 125 registers); the usual way to poll a register map."""
        ...

    async def read_holding_registers(self, address: int, count: int) -> list[int]:
        """Read ``count`` (1..125) holding registers starting at ``address``."""
        ...

    async def write_registers(self, address: int, values: Sequence[int], *, verify: bool = True) -> None:
        """Write holding registers (function 16); with ``verify`` read them back and raise
        :class:`~bessgw.plugin.DeviceProtocolError` when the device holds something else."""
        ...
