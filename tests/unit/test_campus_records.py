"""Campus records: what goes into etcd decodes back; anything else is a CorruptRecordError, never applied."""

from __future__ import annotations

import json

import pytest

from bessgw.campus.records import (
    MAX_RECORD_BYTES,
    Applied,
    CampusSetpoint,
    Share,
    valid_command_id,
)
from bessgw.errors import CorruptRecordError

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def setpoint(**changes) -> CampusSetpoint:
    values = dict(p_kw=40_000.0, q_kvar=-500.0, command_id="cmd-1", source="opcua", principal="alice",
                  accepted_by="gw1", accepted_at=1.7e9, expires_at=None, traceparent=TRACE)
    values.update(changes)
    return CampusSetpoint(**values)


def share(**changes) -> Share:
    values = dict(gateway_id="gw2", p_kw=13_000.0, q_kvar=0.0, setpoint_revision=42, command_id="cmd-1",
                  expires_at=1.7e9 + 60, traceparent=TRACE)
    values.update(changes)
    return Share(**values)


@pytest.mark.parametrize("record", [setpoint(), setpoint(expires_at=1.8e9, traceparent=""), share(),
                                    share(command_id="", p_kw=-5.5), Applied("gw3", 17, -250.0)])
def test_round_trip(record) -> None:
    data = record.encode()
    assert json.loads(data)["v"] == 1
    assert type(record).decode(data) == record


def corrupt(body: dict) -> bytes:
    return json.dumps(body).encode()


def body_of(record) -> dict:
    return json.loads(record.encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not a JSON record"),
        (b"{", "not a JSON record"),
        (b"[1, 2]", "expected a JSON object"),
        (body_of(share()) | {"v": 2}, "schema version 2"),
        (body_of(share()) | {"v": True}, "schema version True"),
        ({k: v for k, v in body_of(share()).items() if k != "v"}, "schema version None"),
        (body_of(share()) | {"kind": "setpoint"}, "expected a share record"),
        (body_of(share()) | {"!boost": 1}, "unknown required fields ['!boost']"),
        ({k: v for k, v in body_of(share()).items() if k != "p_kw"}, "missing fields ['p_kw']"),
        (body_of(share()) | {"p_kw": "13000"}, "share.p_kw: expected a number"),
        (body_of(share()) | {"p_kw": True}, "share.p_kw: expected a number"),
        (body_of(share()) | {"p_kw": 1e12}, "share.p_kw: expected a finite power"),
        (body_of(share()) | {"setpoint_revision": -1}, "share.setpoint_revision"),
        (body_of(share()) | {"setpoint_revision": 4.5}, "share.setpoint_revision"),
        (body_of(share()) | {"traceparent": "not-a-trace"}, "share.traceparent"),
        (body_of(share()) | {"gateway_id": "../etc"}, "share.gateway_id"),
        (body_of(setpoint()) | {"principal": "x" * 300}, "setpoint.principal"),
        (body_of(setpoint()) | {"expires_at": "soon"}, "setpoint.expires_at"),
    ],
)
def test_corrupt_values_are_refused(data, reason: str) -> None:
    raw = corrupt(data) if isinstance(data, dict) else data
    kind = CampusSetpoint if reason.startswith("setpoint.") else Share
    with pytest.raises(CorruptRecordError) as info:
        kind.decode(raw, key="/bessgw/campus/shares/gw2")
    assert reason in str(info.value)
    assert info.value.key == "/bessgw/campus/shares/gw2"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(constant: bytes) -> None:
    raw = share().encode().replace(b'"p_kw":13000.0', b'"p_kw":' + constant)
    assert constant in raw
    with pytest.raises(CorruptRecordError, match=r"not a number|not a JSON record"):
        Share.decode(raw)


def test_oversized_values_are_refused_before_parsing() -> None:
    raw = b'{"v":1,"kind":"share",' + b" " * MAX_RECORD_BYTES + b"}"
    with pytest.raises(CorruptRecordError, match="more than"):
        Share.decode(raw)
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(CorruptRecordError):
        Share.decode(deep[:MAX_RECORD_BYTES])


def test_records_refuse_bad_values_when_built() -> None:
    with pytest.raises(ValueError, match=r"setpoint\.p_kw"):
        setpoint(p_kw=float("nan"))
    with pytest.raises(ValueError, match=r"share\.q_kvar"):
        share(q_kvar=float("inf"))


def test_expiry() -> None:
    assert not setpoint().expired(2e9)
    assert setpoint(expires_at=100.0).expired(100.0)
    assert not share(expires_at=100.0).expired(99.9)


def test_command_ids() -> None:
    assert valid_command_id("2024-06-01T12:00:00Z/scada-7")
    assert not valid_command_id("")
    assert not valid_command_id("has space")
    assert not valid_command_id("x" * 200)


def test_record_versions_follow_the_compatibility_policy() -> None:
    """A newer record is refused as such (counted like a corrupt one); an optional field of a later release
    is ignored; what this release writes is what release 0.2.0 reads: version 1, exactly its fields."""
    from bessgw.campus.records import RECORD_MAX, SCHEMA_VERSION
    from bessgw.errors import NewerRecordError

    assert SCHEMA_VERSION == 1 and json.loads(share().encode())["v"] == 1
    assert set(json.loads(share().encode())) == {"v", "kind", *Share.CHECKS}
    with pytest.raises(NewerRecordError, match="newer release"):
        Share.decode(corrupt(body_of(share()) | {"v": RECORD_MAX + 1}), "shares/gw1")
    assert Share.decode(corrupt(body_of(share()) | {"zone": "north"})) == share()
