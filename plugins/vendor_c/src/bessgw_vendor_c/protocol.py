"""The vendor_c BMS protocol: the DBC file, arbitration ids per node, checked decode and encode.

The DBC (``vendor_c.dbc``, shipped as package data) defines every message for node 0; a node's frames
carry its node id in the low byte of the 29-bit identifier. Decoding is cantools' own, plus the checks a
gateway needs before trusting a frame: exact length and every signal inside its DBC range. A frame
failing them raises :class:`DeviceProtocolError` and is dropped by the caller, never half-applied.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import cantools
from cantools.database.can import Database, Message

from bessgw.plugin import CanFrame, DeviceProtocolError

NODE_MASK = 0xFF
PROTOCOL_MAJOR = 1

#: BMS -> gateway, cyclic
STATUS, CELLS, LIMITS, ALARMS, CAPACITY, IDENTITY = (
    "BMS_Status", "BMS_Cells", "BMS_Limits", "BMS_Alarms", "BMS_Capacity", "BMS_Identity",
)
#: gateway -> BMS
SETPOINT, CONTROL, HEARTBEAT = "GW_Setpoint", "GW_Control", "GW_Heartbeat"
BMS_MESSAGES = (STATUS, CELLS, LIMITS, ALARMS, CAPACITY, IDENTITY)
#: cyclic telemetry: only the newest frame of each matters (core may coalesce a busy bus's frames)
TELEMETRY_MESSAGES = (STATUS, CELLS, LIMITS, CAPACITY, IDENTITY)
#: alarm frames: every one must reach the driver (never coalesced)
EVENT_MESSAGES = (ALARMS,)
GATEWAY_MESSAGES = (SETPOINT, CONTROL, HEARTBEAT)

#: alarm bits of BMS_Alarms in bit order (bit 0 first); ``Telemetry.alarms`` uses the same order
ALARM_NAMES = (
    "OverVoltage", "UnderVoltage", "OverTemperature", "UnderTemperature", "OverCurrentCharge",
    "OverCurrentDischarge", "InsulationFault", "ContactorFault", "CellImbalance", "WatchdogTimeout",
    "FaultLatched",
)

CONTACTOR_NO_CHANGE, CONTACTOR_CLOSE, CONTACTOR_OPEN = 0, 1, 2
STATE_INIT, STATE_STANDBY, STATE_RUNNING, STATE_FAULT = 0, 1, 2, 3


@functools.lru_cache(maxsize=1)
def database() -> Database:
    """The parsed DBC (parsed once per process)."""
    text = resources.files(__package__).joinpath("vendor_c.dbc").read_text(encoding="utf-8")
    return cantools.database.load_string(text, database_format="dbc")


@dataclass(frozen=True)
class _Checked:
    message: Message
    ranges: tuple[tuple[str, float, float], ...]


@functools.cache
def _checked(name: str) -> _Checked:
    message = database().get_message_by_name(name)
    ranges = tuple(
        (s.name, float(s.minimum), float(s.maximum))
        for s in message.signals
        if s.minimum is not None and s.maximum is not None
    )
    return _Checked(message, ranges)


def frame_id(name: str, node_id: int) -> int:
    """The arbitration id of message ``name`` for node ``node_id``."""
    if not 0 <= node_id <= NODE_MASK:
        raise ValueError(f"node id must be 0..255 (got {node_id})")
    return _checked(name).message.frame_id | node_id


def decode(name: str, data: bytes) -> dict[str, float]:
    """Decode a payload of message ``name``; raises ``DeviceProtocolError`` for a malformed one."""
    checked = _checked(name)
    message = checked.message
    if len(data) != message.length:
        raise DeviceProtocolError(f"{name}: wrong length {len(data)} (expected {message.length})", code=1)
    try:
        values = message.decode(data, decode_choices=False)
    except (cantools.database.DecodeError, ValueError) as err:
        raise DeviceProtocolError(f"{name}: cannot decode {data.hex()}: {err}", code=2) from err
    for signal, low, high in checked.ranges:
        value = values[signal]
        if not low <= value <= high:
            raise DeviceProtocolError(f"{name}.{signal} = {value:g} outside {low:g}..{high:g}", code=3)
    return values  # type: ignore[return-value]


def encode(name: str, node_id: int, **signals: float) -> CanFrame:
    """The frame of message ``name`` for ``node_id``; missing signals are 0, values are range-checked."""
    message = _checked(name).message
    full = {signal.name: 0 for signal in message.signals}
    full.update(signals)
    try:
        data = message.encode(full, strict=True)
    except (cantools.database.EncodeError, ValueError, KeyError) as err:
        raise DeviceProtocolError(f"{name}: cannot encode {signals}: {err}") from err
    return CanFrame(frame_id(name, node_id), bytes(data), is_extended_id=message.is_extended_frame)


def split_id(arbitration_id: int) -> tuple[str, int] | None:
    """``(message name, node id)`` of a vendor_c identifier, ``None`` for a foreign one."""
    base = arbitration_id & ~NODE_MASK
    for name in BMS_MESSAGES + GATEWAY_MESSAGES:
        if _checked(name).message.frame_id == base:
            return name, arbitration_id & NODE_MASK
    return None


def clip(name: str, signals: dict[str, float]) -> dict[str, float]:
    """``signals`` clipped into their DBC ranges (a simulator's physics may run past what a frame holds)."""
    out = dict(signals)
    for signal, low, high in _checked(name).ranges:
        if signal in out:
            out[signal] = min(high, max(low, out[signal]))
    return out
