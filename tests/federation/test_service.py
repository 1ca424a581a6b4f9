"""The service the daemon runs: publishing unit snapshots, the campus view's quality rules, the admin socket."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from bessgw.federation.admin import format_members
from bessgw.federation.view import UnitSummary, effective_quality, to_jsonable
from bessgw.model import Capability, EffectiveLimits, Quality, Telemetry, UnitState
from bessgw.testing import wait_until
from bessgw.unit.snapshot import UnitSnapshot
from tests.federation.conftest import Campus, new_key
from tests.federation.run_node import unit

pytestmark = pytest.mark.federation

LIMITS = EffectiveLimits(max_charge_kw=400, max_discharge_kw=450, max_q_kvar=0, soc_min_pct=5, soc_max_pct=95,
                         ramp_kw_per_s=100, temp_min_c=-10, temp_max_c=45)
CAP = Capability(max_charge_kw=500, max_discharge_kw=500, energy_kwh=2000, chemistry="lfp", vendor="A")


def snapshot(quality: Quality = Quality.GOOD, connected: bool = True) -> UnitSnapshot:
    tel = Telemetry(unit_id="u1", timestamp=time.time(), quality=quality, state=UnitState.RUNNING, soc_pct=61.5,
                    p_kw=-120.0)
    return UnitSnapshot("u1", tel, CAP, LIMITS, "", connected)


def test_summary_from_a_unit_snapshot_counts_limits_only_when_usable() -> None:
    good = UnitSummary.from_snapshot(snapshot())
    assert (good.available_charge_kw, good.available_discharge_kw, good.energy_kwh) == (400, 450, 2000)
    assert (good.soc_pct, good.p_kw, good.state) == (61.5, -120.0, UnitState.RUNNING)
    assert UnitSummary.from_snapshot(snapshot(Quality.STALE)).available_discharge_kw == 0
    assert UnitSummary.from_snapshot(snapshot(connected=False)).available_charge_kw == 0
    assert UnitSummary.from_value("u1", good.to_value()) == good
    nan = UnitSummary.from_value("u1", {**good.to_value(), "soc": None})
    assert math.isnan(nan.soc_pct)
    with pytest.raises((ValueError, KeyError, TypeError)):
        UnitSummary.from_value("u1", {**good.to_value(), "st": "exploded"})


@pytest.mark.parametrize(
    ("reported", "age", "local", "peer", "expected"),
    [
        (Quality.GOOD, 100.0, True, "alive", Quality.GOOD),  # own units: the supervisor already judged age
        (Quality.GOOD, 1.0, False, "alive", Quality.GOOD),
        (Quality.GOOD, 11.0, False, "alive", Quality.STALE),
        (Quality.BAD, 1.0, False, "alive", Quality.BAD),
        (Quality.GOOD, 1.0, False, "suspect", Quality.STALE),
        (Quality.GOOD, 1.0, False, "dead", Quality.BAD),
        (Quality.STALE, 1.0, False, "dead", Quality.BAD),
    ],
)
def test_peer_data_is_never_shown_better_than_it_is(reported, age, local, peer, expected) -> None:
    assert effective_quality(reported, age, local, peer, stale_after_s=10.0)[0] == expected


def test_snapshots_publish_refresh_and_removed_units_are_tombstoned(tmp_path) -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            owner = await campus.add("owner")
            peer = await campus.add("peer")
            owner.update_local_units([snapshot(), unit("u2")])

            def peer_units() -> dict[str, object]:
                return {u.summary.unit_id: u for u in peer.campus_view().units if u.gateway_id == "owner"}

            await wait_until(lambda: set(peer_units()) == {"u1", "u2"}, 10, "both units at the peer")
            assert peer.node.state.owners["owner"].entries["cap/u1"][1]["chem"] == "lfp"
            view = peer.campus_view()
            assert view.aggregate.available_charge_kw == 900 and view.aggregate.gateways_alive == 2
            assert view.aggregate.mean_soc_pct == pytest.approx((61.5 + 50.0) / 2)
            # unchanged units are re-sent every refresh_interval_s: their age at the peer stays bounded
            first = peer_units()["u2"].summary.timestamp
            owner.update_local_units([snapshot(), unit("u2")])  # a new timestamp, same material content
            await wait_until(lambda: peer_units()["u2"].summary.timestamp > first, 5, "refresh")
            owner.update_local_units([snapshot()])  # u2 was removed from this gateway
            await wait_until(lambda: set(peer_units()) == {"u1"}, 10, "u2 tombstoned at the peer")
            # the daemon's way: a source polled every publish interval (UnitDirectory.snapshots)
            owner.source = lambda: [snapshot(), unit("u3")]
            await wait_until(lambda: set(peer_units()) == {"u1", "u3"}, 10, "u3 from the polled source")

            # what `bessgw members` / the admin socket's "view" return (bessgw.daemon.operations)
            members = to_jsonable(owner.members())
            view_reply = to_jsonable(owner.campus_view())
            assert [row["gateway_id"] for row in members] == ["owner", "peer"]
            table = format_members(members)
            assert "owner *" in table and "alive" in table
            assert view_reply["aggregate"]["gateways_alive"] == 2

    asyncio.run(scenario())


def test_to_jsonable_has_no_nan() -> None:
    summary = UnitSummary("u", UnitState.OFFLINE, Quality.BAD, math.nan, math.nan, 0, 0, 0, 1.0)
    assert to_jsonable(summary)["soc_pct"] is None
