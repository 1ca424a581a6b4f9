"""The vendor_a register maps, loaded from the CSV tables shipped in ``maps/``.

The maps are data, not code: ``identity.csv`` (the same in every firmware generation, read first to pick
the map), and one table per generation (``v1.csv``, ``v2.csv``). The driver, the simulator and the README
all read these files, so the three cannot disagree.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from bessgw.plugin import (
    RegisterDecoder,
    RegisterField,
    RegisterSnapshot,
    RegisterSpan,
    RegisterType,
    WordOrder,
    decode_string,
)

#: firmware major version -> map name
GENERATIONS = {1: "v1", 2: "v2"}
STATES = {0: "standby", 1: "running", 2: "fault"}
CHEMISTRIES = {1: "lfp", 2: "nmc"}


@dataclass(frozen=True, slots=True)
class Register:
    """One row of a map table."""

    name: str
    address: int
    kind: RegisterType
    count: int  # registers for strings; 1 otherwise (the type gives the width)
    word_order: WordOrder
    scale: float
    unit: str
    writable: bool
    minimum: float
    maximum: float
    description: str

    @property
    def width(self) -> int:
        """Registers occupied."""
        return self.count if self.kind is RegisterType.STR else self.kind.width

    @property
    def span(self) -> RegisterSpan:
        return RegisterSpan(self.address, self.width)

    def decode(self, snapshot: RegisterSnapshot) -> float | str:
        if self.kind is RegisterType.STR:
            return decode_string(snapshot.registers(self.address, self.count))
        return snapshot.value(self.address, self.kind, self.word_order, self.scale)

    @property
    def field(self) -> RegisterField:
        return RegisterField(self.name, self.address, self.kind, self.word_order, self.scale)

    def in_range(self, value: float) -> bool:
        return (math.isnan(self.minimum) or value >= self.minimum) and (
            math.isnan(self.maximum) or value <= self.maximum
        )


@dataclass(frozen=True)
class RegisterMap:
    """A named table of registers, addressable by name."""

    name: str
    registers: tuple[Register, ...]

    def __post_init__(self) -> None:
        taken: dict[int, str] = {}
        for reg in self.registers:
            for address in range(reg.address, reg.address + reg.width):
                if address in taken:
                    raise ValueError(f"map {self.name}: {reg.name} overlaps {taken[address]} at {address}")
                taken[address] = reg.name

    def __getitem__(self, name: str) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"map {self.name} has no register {name!r}")

    def __contains__(self, name: object) -> bool:
        return any(reg.name == name for reg in self.registers)

    def readable(self) -> tuple[Register, ...]:
        """The read-only (telemetry) registers."""
        return tuple(reg for reg in self.registers if not reg.writable)

    def decoder(self) -> RegisterDecoder:
        """A decoder of every numeric read-only register, by name."""
        return RegisterDecoder([reg.field for reg in self.readable() if reg.kind is not RegisterType.STR])

    def spans(self, registers: Iterable[Register] | None = None) -> tuple[RegisterSpan, ...]:
        return tuple(reg.span for reg in (self.readable() if registers is None else registers))


def _float(text: str, default: float) -> float:
    return float(text) if text.strip() else default


def parse_map(name: str, text: str) -> RegisterMap:
    """Parse one CSV table; errors name the table and the row."""
    rows = []
    for line_no, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            kind = RegisterType(row["type"].strip())
            rows.append(
                Register(
                    name=row["name"].strip(),
                    address=int(row["address"]),
                    kind=kind,
                    count=int(row["count"] or 1),
                    word_order=WordOrder(row["word_order"].strip() or "big"),
                    scale=_float(row["scale"], 1.0),
                    unit=row["unit"].strip(),
                    writable=row["access"].strip() == "rw",
                    minimum=_float(row["min"], math.nan),
                    maximum=_float(row["max"], math.nan),
                    description=row["description"].strip(),
                )
            )
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"register map {name}.csv line {line_no}: {err}") from err
    return RegisterMap(name, tuple(rows))


@cache
def load_map(name: str) -> RegisterMap:
    """``identity``, ``v1`` or ``v2`` from the package data."""
    text = resources.files("bessgw_vendor_a").joinpath("maps", f"{name}.csv").read_text(encoding="utf-8")
    return parse_map(name, text)


@cache
def bit_names() -> dict[str, dict[int, str]]:
    """``{"alarms": {bit: name}, "warnings": {...}}`` from ``maps/bits.csv``."""
    text = resources.files("bessgw_vendor_a").joinpath("maps", "bits.csv").read_text(encoding="utf-8")
    out: dict[str, dict[int, str]] = {"alarms": {}, "warnings": {}}
    for row in csv.DictReader(io.StringIO(text)):
        out[row["field"]][int(row["bit"])] = row["name"]
    return out


def bit(field: str, name: str) -> int:
    """The mask of a named alarm or warning bit."""
    for number, known in bit_names()[field].items():
        if known == name:
            return 1 << number
    raise KeyError(f"no {field} bit called {name!r}")


def decode_bits(field: str, value: int) -> frozenset[str]:
    names = bit_names()[field]
    return frozenset(name for number, name in names.items() if value >> number & 1)


def map_for_firmware(major: int) -> RegisterMap | None:
    """The map of a firmware generation, or ``None`` for one this plugin does not know."""
    name = GENERATIONS.get(major)
    return load_map(name) if name else None

