"""The vendor_a register maps as data, and the public register codecs they are decoded with."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bessgw_vendor_a.physics import decode_column, encode_column
from bessgw_vendor_a.registermap import GENERATIONS, bit_names, load_map, map_for_firmware, parse_map
from hypothesis import given
from hypothesis import strategies as st

from bessgw.plugin import (
    RegisterSnapshot,
    RegisterSpan,
    RegisterType,
    WordOrder,
    decode_string,
    decode_value,
    encode_string,
    encode_value,
)

TELEMETRY = ("seq", "state", "soc_pct", "soh_pct", "p_kw", "q_kvar", "dc_v", "dc_a", "cell_temp_min_c",
             "cell_temp_max_c", "cell_v_min", "cell_v_max", "alarms", "warnings", "max_charge_kw",
             "max_discharge_kw")
CONTROL = ("p_setpoint_kw", "q_setpoint_kvar", "run", "fault_reset", "heartbeat")


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_every_generation_maps_every_telemetry_and_control_register(name):
    regmap = load_map(name)
    for field in TELEMETRY:
        assert not regmap[field].writable, field
    for field in CONTROL:
        assert regmap[field].writable, field
    # the telemetry fits one request: the driver polls it with a single read
    spans = regmap.spans()
    assert max(s.end for s in spans) - min(s.address for s in spans) <= 125


def test_generations_differ_in_scale_type_and_word_order():
    v1, v2 = load_map("v1"), load_map("v2")
    assert (v1["soc_pct"].scale, v2["soc_pct"].scale) == (0.1, 0.01)
    assert (v1["p_kw"].kind, v2["p_kw"].kind) == (RegisterType.I16, RegisterType.I32)
    assert v2["p_kw"].word_order is WordOrder.LITTLE
    assert v2["dc_v"].kind is RegisterType.F32
    assert v1["heartbeat"].address != v2["heartbeat"].address
    assert set(GENERATIONS) == {1, 2}
    assert map_for_firmware(3) is None


def test_identity_block_is_one_read_and_the_same_for_all_generations():
    identity = load_map("identity")
    spans = identity.spans()
    assert min(s.address for s in spans) == 0 and max(s.end for s in spans) <= 125
    assert {"vendor", "model", "serial", "fw_major", "fw_minor"} <= {r.name for r in identity.registers}


def test_alarm_and_warning_bits_are_named():
    names = bit_names()
    assert names["warnings"][0] == "heartbeat_lost"
    assert len(set(names["alarms"].values())) == len(names["alarms"])


def test_a_broken_map_row_is_reported_with_its_line():
    text = "name,address,type,count,word_order,scale,unit,access,min,max,description\nsoc,1,u17,1,,1,,ro,,,x\n"
    with pytest.raises(ValueError, match=r"broken\.csv line 2"):
        parse_map("broken", text)
    overlapping = text.replace("u17", "u32") + "p,2,u16,1,,1,,ro,,,y\n"
    with pytest.raises(ValueError, match="overlaps"):
        parse_map("overlap", overlapping)


# -------------------------------------------------------------------------------- codecs


def test_known_word_orders():
    assert encode_value(0x12345678, RegisterType.U32, WordOrder.BIG) == [0x1234, 0x5678]
    assert encode_value(0x12345678, RegisterType.U32, WordOrder.LITTLE) == [0x5678, 0x1234]
    assert encode_value(-2, RegisterType.I32, WordOrder.LITTLE) == [0xFFFE, 0xFFFF]
    assert decode_value([0xFFFE, 0xFFFF], 0, RegisterType.I32, WordOrder.LITTLE) == -2
    assert decode_value([0x3F80, 0x0000], 0, RegisterType.F32) == 1.0  # IEEE 754 1.0, high word first
    assert decode_value([0x0000, 0x3F80], 0, RegisterType.F32, WordOrder.LITTLE) == 1.0
    assert decode_value([0xFFFF], 0, RegisterType.I16, scale=0.1) == pytest.approx(-0.1)
    assert decode_value([5012], 0, RegisterType.U16, scale=0.01) == pytest.approx(50.12)


def test_values_that_do_not_fit_are_refused_not_wrapped():
    with pytest.raises(ValueError, match="does not fit i16"):
        encode_value(40000, RegisterType.I16)
    with pytest.raises(ValueError, match="does not fit u16"):
        encode_value(-1, RegisterType.U16)


@given(st.sampled_from([RegisterType.U16, RegisterType.I16, RegisterType.U32, RegisterType.I32]),
       st.sampled_from(list(WordOrder)), st.sampled_from([1.0, 0.1, 0.01, 0.001]), st.data())
def test_integer_round_trip(kind, order, scale, data):
    low, high = {RegisterType.U16: (0, 0xFFFF), RegisterType.I16: (-0x8000, 0x7FFF),
                 RegisterType.U32: (0, 0xFFFFFFFF), RegisterType.I32: (-0x80000000, 0x7FFFFFFF)}[kind]
    raw = data.draw(st.integers(low, high))
    words = encode_value(raw * scale, kind, order, scale)
    assert len(words) == kind.width and all(0 <= w <= 0xFFFF for w in words)
    assert round(decode_value(words, 0, kind, order, scale) / scale) == raw


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.sampled_from(list(WordOrder)))
def test_float_round_trip(value, order):
    assert decode_value(encode_value(value, RegisterType.F32, order), 0, RegisterType.F32, order) == value


def test_strings():
    assert encode_string("VENDOR-A", 8)[:4] == [0x5645, 0x4E44, 0x4F52, 0x2D41]
    assert decode_string(encode_string("VA000042", 8)) == "VA000042"
    with pytest.raises(ValueError, match="needs 5 registers"):
        encode_string("0123456789", 4)


def test_snapshot_looks_values_up_across_blocks():
    snap = RegisterSnapshot([(100, [1, 2, 3]), (200, [0xFFFE, 0xFFFF])])
    assert snap.registers(101, 2) == [2, 3]
    assert snap.value(200, RegisterType.I32, WordOrder.LITTLE) == -2
    with pytest.raises(KeyError, match=r"102\.\.103"):
        snap.registers(102, 2)
    with pytest.raises(ValueError):
        RegisterSpan(65535, 2)


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_the_simulators_vectorised_encoding_agrees_with_the_public_codec(name):
    regmap = load_map(name)
    rng = np.random.default_rng(4)
    image = np.zeros((5, 256), dtype=np.uint16)
    for reg in regmap.registers:
        if reg.kind is RegisterType.STR:
            continue
        hi = min(1000.0, 30000 * reg.scale)  # fits every type at its scale
        lo = -hi if reg.kind in (RegisterType.I16, RegisterType.I32, RegisterType.F32) else 0.0
        values = np.round(rng.uniform(lo, hi, 5) / reg.scale) * reg.scale
        encode_column(image, reg, values)
        for row in range(5):
            scalar = decode_value(image[row].tolist(), reg.address, reg.kind, reg.word_order, reg.scale)
            assert math.isclose(scalar, values[row], rel_tol=1e-6, abs_tol=reg.scale / 2), reg.name
        assert np.allclose(decode_column(image, reg), values, rtol=1e-6, atol=reg.scale / 2)


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_the_block_decoder_agrees_with_per_value_decoding(name):
    regmap = load_map(name)
    rng = np.random.default_rng(7)
    blocks = [(100, rng.integers(0, 0x10000, 30).tolist()), (200, rng.integers(0, 0x10000, 8).tolist())]
    snapshot = RegisterSnapshot(blocks)
    decoded = regmap.decoder().decode(snapshot)
    numeric = [reg for reg in regmap.readable() if reg.kind is not RegisterType.STR]
    assert set(decoded) == {reg.name for reg in numeric}
    for reg in numeric:
        expected = snapshot.value(reg.address, reg.kind, reg.word_order, reg.scale)
        assert decoded[reg.name] == expected or (math.isnan(expected) and math.isnan(decoded[reg.name]))
    with pytest.raises(KeyError, match="p_kw"):
        regmap.decoder().decode(RegisterSnapshot([(100, [0] * 4)]))
