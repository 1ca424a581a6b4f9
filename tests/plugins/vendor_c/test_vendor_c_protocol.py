"""The vendor_c DBC codec: recorded frames, every signal round-trips, node ids, malformed payloads."""

from __future__ import annotations

import random

import pytest
from bessgw_vendor_c import protocol as p

from bessgw.plugin import DeviceProtocolError

# Frames as a vendor_c BMS (firmware 2.4.1, node 3) puts them on the bus; checked by hand against the
# protocol table in plugins/vendor_c/README.md (little-endian, scaled integers).
RECORDED = [
    (0x18001003, "0314c36c3326f112", p.STATUS,
     {"SOC": 51.23, "SOH": 97.5, "PackVoltage": 1316.4, "PackCurrent": -380.2, "BmsState": 2,
      "ContactorsClosed": 1, "WatchdogTripped": 0}),
    (0x18001203, "fb68983a08391027", p.LIMITS,
     {"MaxChargeCurrent": 2687.5, "MaxDischargeCurrent": 1500.0, "MaxChargeVoltage": 1460.0,
      "MinDischargeVoltage": 1000.0}),
    (0x18001803, "02040101035a6202", p.IDENTITY,
     {"FirmwareMajor": 2, "FirmwareMinor": 4, "FirmwarePatch": 1, "ProtocolVersion": 1,
      "SerialNumber": 40000003}),
    (0x10002F03, "0701000000000000", p.HEARTBEAT, {"HeartbeatCounter": 7, "GatewayState": 1}),
    (0x14002003, "afe2ffff00000900", p.SETPOINT,
     {"PowerSetpoint": -750.5, "ReactiveSetpoint": 0.0, "SetpointCounter": 9}),
]


@pytest.mark.parametrize(("arbitration_id", "hex_data", "name", "expected"), RECORDED)
def test_recorded_frames_decode_and_encode_bit_exactly(arbitration_id, hex_data, name, expected) -> None:
    assert p.split_id(arbitration_id) == (name, 3)
    decoded = p.decode(name, bytes.fromhex(hex_data))
    assert decoded == pytest.approx(expected)
    frame = p.encode(name, 3, **expected)
    assert (frame.arbitration_id, frame.data.hex(), frame.is_extended_id) == (arbitration_id, hex_data, True)


@pytest.mark.parametrize("name", p.BMS_MESSAGES + p.GATEWAY_MESSAGES)
def test_every_signal_round_trips_within_its_resolution(name: str) -> None:
    message = p.database().get_message_by_name(name)
    rng = random.Random(name)
    for _ in range(50):
        values = {}
        for signal in message.signals:
            raw_low = (signal.minimum - signal.offset) / signal.scale
            raw_high = (signal.maximum - signal.offset) / signal.scale
            raw = rng.randint(round(raw_low), round(raw_high))
            values[signal.name] = raw * signal.scale + signal.offset
        node = rng.randint(0, 255)
        frame = p.encode(name, node, **values)
        assert p.split_id(frame.arbitration_id) == (name, node)
        decoded = p.decode(name, frame.data)
        for signal in message.signals:
            assert decoded[signal.name] == pytest.approx(values[signal.name], abs=signal.scale / 2), signal.name


def test_node_id_lives_in_the_low_byte_and_is_checked() -> None:
    assert p.frame_id(p.STATUS, 0) == 0x18001000
    assert p.frame_id(p.STATUS, 255) == 0x180010FF
    assert len({p.frame_id(name, 17) for name in p.BMS_MESSAGES + p.GATEWAY_MESSAGES}) == 9
    with pytest.raises(ValueError, match=r"0\.\.255"):
        p.frame_id(p.STATUS, 256)
    assert p.split_id(0x123) is None


@pytest.mark.parametrize(
    ("data", "match", "code"),
    [
        (b"", "wrong length 0", 1),
        (bytes.fromhex("0314c3"), r"wrong length 3", 1),
        (bytes.fromhex("0314c36c3326f11200"), "wrong length 9", 1),
        (bytes.fromhex("ffffc36c3326f112"), r"SOC = 655.35 outside 0..100", 3),
        (bytes.fromhex("0314c36c3326f11f"), r"BmsState = 15 outside 0..3", 3),
        (bytes.fromhex("0314ff6c3326f112"), r"SOH = 127.5 outside 0..100", 3),
    ],
)
def test_malformed_payloads_raise_a_specific_protocol_error(data: bytes, match: str, code: int) -> None:
    with pytest.raises(DeviceProtocolError, match=match) as info:
        p.decode(p.STATUS, data)
    assert info.value.code == code


def test_encoding_refuses_out_of_range_values_and_clip_brings_them_in() -> None:
    with pytest.raises(DeviceProtocolError, match="PowerSetpoint"):
        p.encode(p.SETPOINT, 1, PowerSetpoint=1e9)
    frame = p.encode(p.STATUS, 1, **p.clip(p.STATUS, {"SOC": 120.0, "PackCurrent": -5000.0}))
    decoded = p.decode(p.STATUS, frame.data)
    assert decoded["SOC"] == 100.0 and decoded["PackCurrent"] == -3000.0
