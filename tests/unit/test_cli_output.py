"""What the operator reads: ``bessgw status`` laid out from the data, times a person can read."""

from __future__ import annotations

from datetime import datetime

from bessgw.cli import status_text
from bessgw.model.timestamp import local_iso

LONG_ID = "campus-a-container-0017-string-b"


def reply(*unit_ids: str) -> dict:
    units = [{"id": unit_id, "quality": "good", "state": "running", "reason": "", "age_s": 0.25,
              "soc_pct": 55.0, "p_kw": -1200.0 * (index + 1), "connected": True}
             for index, unit_id in enumerate(unit_ids)]
    return {"gateway": "gw1", "version": "1.0.0", "pid": 42, "uptime_s": 7384.0, "units": units,
            "control": {"mode": "active", "source": "local", "target_p_kw": 600.0, "delivered_p_kw": 598.5,
                        "reason": "local: highest-priority live source (priority 300)"}}


def test_columns_are_as_wide_as_the_longest_unit_id() -> None:
    lines = status_text(reply("m1", LONG_ID, "m22")).splitlines()
    table = lines[2:]
    assert table[0].startswith("unit ") and table[2].startswith(LONG_ID + "  ")
    # every column starts where its header does, whatever the length of the id before it
    quality_at = table[0].index("quality")
    assert {row.index("good") for row in table[1:]} == {quality_at}
    p_kw_end = table[0].index("p kW") + len("p kW")  # numbers are right-aligned under their header
    powers = ("-1200.0", "-2400.0", "-3600.0")
    assert {row.index(p) + len(p) for row, p in zip(table[1:], powers, strict=True)} == {p_kw_end}


def test_status_header_shows_uptime_and_a_local_start_time() -> None:
    head = status_text(reply("m1")).splitlines()[0]
    assert "up 2 h 03 min (since " in head
    since = head.split("(since ", 1)[1].rstrip(")")
    assert datetime.fromisoformat(since).utcoffset() is not None  # ISO 8601 with its UTC offset


def test_local_iso_is_iso_8601_with_offset_and_survives_nonsense() -> None:
    text = local_iso(1795928018.856, "milliseconds")
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None and abs(parsed.timestamp() - 1795928018.856) < 1e-3
    assert local_iso(float("nan")) == "t=nan" and local_iso(1e300) == "t=1e+300"


def test_members_and_campus_tables_widen_for_long_gateway_ids() -> None:
    from bessgw.campus.commands import format_status
    from bessgw.federation.admin import format_members

    long_gw = "campus-north-substation-gateway-07"
    members = format_members([
        {"gateway_id": "gw1", "local": True, "address": "10.0.0.1:7946", "status": "alive", "incarnation": 1,
         "in_status_s": 5.0, "units": 2},
        {"gateway_id": long_gw, "local": False, "address": "10.0.0.2:7946", "status": "suspect", "incarnation": 3,
         "in_status_s": 1.0, "units": 4}]).splitlines()
    assert {line.index("10.0.0.") for line in members[1:]} == {members[0].index("ADDRESS")}
    row = {"share_p_kw": 10.0, "share_revision": 5, "applied_revision": 5, "lease_time_left_s": 3.0,
           "delivered_p_kw": 10.0}
    campus = format_status({"setpoint": None, "allocator": "gw1", "shortfall_p_kw": 0.0, "shortfall_q_kvar": 0.0,
                            "endpoint": "127.0.0.1:2379", "corrupt_records": 0,
                            "gateways": [dict(row, gateway_id="gw1"), dict(row, gateway_id=long_gw)]}).splitlines()
    header, rows = campus[2], campus[3:]
    ends = {line.index("10.0") + len("10.0") for line in rows}
    assert ends == {header.index("share kW") + len("share kW")}, campus


def test_members_table_shows_incompatible_gateways_and_each_wire_range() -> None:
    from bessgw.federation.admin import format_members

    rows = [
        {"gateway_id": "gw1", "local": True, "address": "10.0.0.1:7946", "status": "alive", "incarnation": 1,
         "in_status_s": 5.0, "units": 2, "speaks": "2..3"},
        {"gateway_id": "gw-old", "local": False, "address": "10.0.0.2:7946", "status": "alive", "incarnation": 3,
         "in_status_s": 1.0, "units": 4, "speaks": ""},
        {"gateway_id": "gw-next", "local": False, "address": "10.0.0.3:7946", "status": "incompatible",
         "incarnation": 0, "in_status_s": 9.0, "units": 0, "speaks": "4..5"},
    ]
    lines = format_members(rows).splitlines()
    assert lines[0].split() == ["GATEWAY", "ADDRESS", "STATUS", "INC", "FOR", "UNITS", "WIRE"]
    assert lines[1].split()[-1] == "2..3" and lines[2].split()[-1] == "-" and lines[3].split()[-2:] == ["0", "4..5"]
    assert {line.index("10.0.0.") for line in lines[1:]} == {lines[0].index("ADDRESS")}
    assert {line.rindex(line.split()[-1]) for line in lines} == {lines[0].index("WIRE")}  # one column
    # a release-0.2.0 gateway's rows have no "speaks" at all
    old = [{k: v for k, v in row.items() if k != "speaks"} for row in rows[:2]]
    assert format_members(old).splitlines()[1].split()[-1] == "-"
