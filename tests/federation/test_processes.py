"""Five gateways as five processes on loopback: converge, spread, kill -9, rejoin; a partition heals."""

from __future__ import annotations

import json

import pytest

from bessgw.testing import wait_until_sync as poll_until
from tests.federation.conftest import new_key
from tests.federation.processes import NodeProcess

pytestmark = [pytest.mark.federation, pytest.mark.timeout(180)]

#: no periodic re-publishing, so that "every node holds the same versions" is a fixed point to wait for
QUIET = {"refresh_interval_s": 1000.0, "stale_after_s": 1000.0}


def start(nodes: list[NodeProcess], key: str, count: int, **kw) -> list[NodeProcess]:
    seeds = [nodes[0].addr] if nodes else []
    for _ in range(count):
        node = NodeProcess(f"gw{len(nodes)}", key, seeds, **kw)
        nodes.append(node)
        seeds = seeds or [node.addr]
    return nodes


def same_membership(group: list[NodeProcess], names: set[str]) -> bool:
    return all({k for k, v in n.statuses().items() if v == "alive"} == names for n in group)


def test_five_gateways_converge_spread_detect_a_kill_and_take_a_restart() -> None:
    key = new_key()
    nodes: list[NodeProcess] = []
    try:
        start(nodes, key, 5, **QUIET)
        names = {n.id for n in nodes}
        poll_until(lambda: same_membership(nodes, names), 30, "5 gateways alive everywhere")
        # the same campus state everywhere: every owner's versions identical on every node
        poll_until(lambda: len({json.dumps(n.versions(), sort_keys=True) for n in nodes}) == 1
                   and all(len(n.units()) == 10 for n in nodes), 30, "identical replicated state")
        # an update on one reaches all
        nodes[2].ask("set_unit", unit_id="u0", soc_pct=77.0)
        poll_until(lambda: all(n.units()[("gw2", "u0")]["summary"]["soc_pct"] == 77.0 for n in nodes), 15,
                   "gw2's update everywhere")

        victim, others = nodes[4], nodes[:4]
        old_inc = others[0].members()["gw4"]["incarnation"]
        old_gen = others[0].versions()["gw4"]["generation"]
        victim.kill()
        seen_suspect, ages = set(), {n.id: [] for n in others}

        def all_dead() -> bool:
            done = True
            for node in others:
                status = node.statuses()["gw4"]
                if status == "suspect":
                    seen_suspect.add(node.id)
                units = [u for k, u in node.units().items() if k[0] == "gw4"]
                assert len(units) == 2, "a dead gateway's units stay listed (as unreachable)"
                for u in units:
                    if status in ("suspect", "dead"):
                        assert u["quality"] != "good", u
                ages[node.id].append(max(u["age_s"] for u in units))
                done = done and status == "dead"
            return done

        poll_until(all_dead, 30, "gw4 declared dead by all")
        assert seen_suspect, "gw4 went to dead without being suspected first"
        for node in others:
            units = [u for k, u in node.units().items() if k[0] == "gw4"]
            assert all(u["quality"] == "bad" and "unreachable" in u["reason"] for u in units)
            later = max(u["age_s"] for u in units)
            assert later > ages[node.id][0], "the dead gateway's data age keeps growing"

        # restart: same id, new port, different units; its fresh state must win everywhere
        nodes[4] = restarted = NodeProcess("gw4", key, [nodes[1].addr], units=1, **QUIET)
        restarted.ask("set_unit", unit_id="u0", soc_pct=99.0)

        def rejoined() -> bool:
            for node in others:
                member = node.members()["gw4"]
                units = {k[1]: u for k, u in node.units().items() if k[0] == "gw4"}
                if member["status"] != "alive" or member["incarnation"] <= old_inc or set(units) != {"u0"}:
                    return False
                if units["u0"]["summary"]["soc_pct"] != 99.0 or units["u0"]["quality"] != "good":
                    return False
            return True

        poll_until(rejoined, 30, "gw4 back with a higher incarnation and fresh state")
        assert all(n.versions()["gw4"]["generation"] > old_gen for n in others)
        for node in nodes:
            assert node.ask("counters")["drops"] == {}
    finally:
        for node in nodes:
            node.close()


def test_partitioned_halves_mark_each_other_dead_and_heal_without_stale_versions() -> None:
    key = new_key()
    nodes: list[NodeProcess] = []
    try:
        start(nodes, key, 6, units=1, **QUIET)
        names = {n.id for n in nodes}
        poll_until(lambda: same_membership(nodes, names), 30, "6 gateways alive everywhere")
        left, right = nodes[:3], nodes[3:]
        for group, other in ((left, right), (right, left)):
            for node in group:
                node.ask("block", addrs=[o.addr for o in other])

        def split() -> bool:
            for group, other in ((left, right), (right, left)):
                for node in group:
                    statuses = node.statuses()
                    if any(statuses[o.id] != "dead" for o in other) or any(
                        statuses[g.id] != "alive" for g in group
                    ):
                        return False
            return True

        poll_until(split, 40, "each half alive to itself, the other half dead")
        for node in nodes:  # both halves keep writing during the partition
            node.ask("set_unit", unit_id="u0", soc_pct=float(len(node.id) * 10 + int(node.id[2:])))
        for node in nodes:
            node.ask("unblock")
        poll_until(lambda: same_membership(nodes, names), 40, "healed: everyone alive everywhere")

        def converged() -> bool:
            owners = {n.id: n.versions()[n.id]["watermark"] for n in nodes}
            for node in nodes:
                versions = node.versions()
                if any(versions[o]["watermark"] != w for o, w in owners.items()):
                    return False
                units = node.units()
                if any(units[(o.id, "u0")]["summary"]["soc_pct"] != len(o.id) * 10 + int(o.id[2:]) for o in nodes):
                    return False
            return True

        poll_until(converged, 40, "every node holds every owner's newest version")
    finally:
        for node in nodes:
            node.close()
