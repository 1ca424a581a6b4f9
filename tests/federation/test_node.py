"""In-process gossip nodes on 127.0.0.1 with real UDP: membership, state, parts, leave, partition."""

from __future__ import annotations

import asyncio

import pytest

from bessgw.federation.wire import MemberUpdate, Status
from bessgw.testing import wait_until
from tests.federation.conftest import Campus, new_key
from tests.federation.run_node import unit

pytestmark = pytest.mark.federation


def test_members_converge_and_an_update_reaches_everyone() -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            for index in range(5):
                await campus.add(f"gw{index}")
            names = set(campus.services)
            await wait_until(lambda: all(
                {k for k, v in campus.statuses(n).items() if v == "alive"} == names for n in names
            ), 15, "5 alive members everywhere")
            campus.services["gw3"].update_local_units([unit("u1", soc_pct=42.0)])

            def everyone_sees_it() -> bool:
                for name in names:
                    units = {(u.gateway_id, u.summary.unit_id): u for u in campus.services[name].campus_view().units}
                    seen = units.get(("gw3", "u1"))
                    if seen is None or seen.summary.soc_pct != 42.0:
                        return False
                return True

            await wait_until(everyone_sees_it, 10, "gw3's unit on every gateway")
            view = campus.services["gw0"].campus_view()
            assert view.aggregate.gateways_alive == 5
            assert view.aggregate.available_discharge_kw == 500.0
            assert [u.quality.value for u in view.units] == ["good"]

    asyncio.run(scenario())


@pytest.mark.parametrize(("big_id", "small_id"), [("big", "small"), ("b" * 64, "s" * 64)])
def test_large_state_travels_in_parts_below_the_datagram_limit(big_id: str, small_id: str) -> None:
    """Also with the longest gateway ids, which the envelope names twice (sender and receiver)."""

    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            big = await campus.add(big_id, max_datagram_bytes=600)
            big.update_local_units([unit(f"unit-with-a-long-name-{i:03d}", soc_pct=i / 3) for i in range(120)])
            small = await campus.add(small_id, max_datagram_bytes=600)
            await wait_until(lambda: sum(1 for u in small.campus_view().units if u.gateway_id == big_id) == 120,
                             20, "all 120 units at the late joiner")
            for service in (big, small):
                assert 0 < service.node.transport.counters.largest_sent <= 600
            assert not small.node.drops

    asyncio.run(scenario())


def test_kill_is_detected_units_go_bad_and_a_restart_wins() -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            for index in range(4):
                await campus.add(f"gw{index}")
            campus.services["gw3"].update_local_units([unit("u1", soc_pct=10.0), unit("old", soc_pct=1.0)])
            await wait_until(lambda: all(len(campus.services[n].campus_view().units) == 2 for n in campus.services),
                             15, "gw3's units everywhere")
            await campus.stop("gw3", crash=True)
            others = ["gw0", "gw1", "gw2"]
            await wait_until(lambda: all(campus.statuses(n)["gw3"] == "dead" for n in others), 15, "gw3 dead")
            for name in others:
                units = campus.services[name].campus_view().units
                assert {u.summary.unit_id for u in units} == {"u1", "old"}
                assert all(u.quality.value == "bad" and "unreachable" in u.reason for u in units)
            # restart under the same id, with fresh (different) state
            restarted = await campus.add("gw3")
            restarted.update_local_units([unit("u1", soc_pct=77.0)])

            def fresh_everywhere() -> bool:
                for name in others:
                    units = {u.summary.unit_id: u for u in campus.services[name].campus_view().units}
                    if campus.statuses(name)["gw3"] != "alive" or set(units) != {"u1"}:
                        return False
                    if units["u1"].summary.soc_pct != 77.0 or units["u1"].quality.value != "good":
                        return False
                return True

            await wait_until(fresh_everywhere, 15, "restarted gw3 alive with its fresh state")
            assert restarted.node.membership.me.incarnation > 0  # it refuted its own death

    asyncio.run(scenario())


def test_graceful_leave_removes_the_gateway_and_its_units() -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            for index in range(3):
                await campus.add(f"gw{index}")
            campus.services["gw2"].update_local_units([unit("u1")])
            await wait_until(lambda: all(len(s.campus_view().units) == 1 for s in campus.services.values()),
                             10, "gw2's unit everywhere")
            await campus.stop("gw2")  # a planned stop (SIGTERM cancels the service): it leaves
            await wait_until(lambda: campus.statuses("gw0")["gw2"] == "left"
                             and campus.statuses("gw1")["gw2"] == "left", 5, "gw2 left")
            assert campus.services["gw0"].campus_view().units == ()

    asyncio.run(scenario())


def test_partition_each_half_keeps_itself_and_heals_without_stale_versions() -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            names = [f"gw{i}" for i in range(6)]
            for name in names:
                await campus.add(name)
            for name in names:
                campus.services[name].update_local_units([unit(f"{name}-u", soc_pct=10.0)])
            await wait_until(lambda: all(len(campus.services[n].campus_view().units) == 6 for n in names),
                             15, "six units everywhere")
            left, right = names[:3], names[3:]
            for group, other in ((left, right), (right, left)):
                for name in group:
                    campus.services[name].node.faults.blocked = {campus.addr(o) for o in other}

            def split() -> bool:
                return all(
                    all(campus.statuses(n)[o] == "dead" for o in (right if n in left else left))
                    and all(campus.statuses(n)[o] == "alive" for o in (left if n in left else right))
                    for n in names
                )

            await wait_until(split, 20, "each half marks the other dead and keeps itself alive")
            # both halves keep writing while apart
            for name in names:
                campus.services[name].update_local_units([unit(f"{name}-u", soc_pct=90.0)])
            for name in names:
                campus.services[name].node.faults.blocked = set()

            def healed() -> bool:
                for name in names:
                    if any(s != "alive" for s in campus.statuses(name).values()):
                        return False
                    units = campus.services[name].campus_view().units
                    if len(units) != 6 or any(u.summary.soc_pct != 90.0 for u in units):
                        return False
                return True

            await wait_until(healed, 30, "healed campus with the newest values everywhere")
            for name in names:  # every replica holds each owner's newest version
                state = campus.services[name].node.state
                for owner in names:
                    assert state.owners[owner].watermark == campus.services[owner].node.state.mine.watermark

    asyncio.run(scenario())


def test_member_states_are_consistent_under_loss() -> None:
    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            for index in range(4):
                await campus.add(f"gw{index}")
            for service in campus.services.values():
                service.node.faults.drop_rate = 0.05
            names = set(campus.services)
            await wait_until(lambda: all(
                {k for k, v in campus.statuses(n).items() if v == "alive"} == names for n in names
            ), 15, "4 alive members despite 5% loss")
            campus.services["gw1"].update_local_units([unit("u1", soc_pct=33.0)])
            await wait_until(lambda: all(
                any(u.summary.soc_pct == 33.0 for u in campus.services[n].campus_view().units) for n in names
            ), 15, "update through a lossy network")
            assert all(m.status == "alive" for n in names for m in campus.services[n].members())

    asyncio.run(scenario())


def test_news_is_gossiped_at_once_not_at_the_next_gossip_tick() -> None:
    """With a 30 s gossip interval and probes (which also carry news) 20 s apart, an update still reaches
    every member within seconds: a node gossips what it just learned without waiting for its tick."""
    slow = {"gossip_interval_s": 30.0, "probe_interval_s": 20.0, "probe_timeout_s": 10.0,
            "push_pull_interval_s": 60.0, "reconnect_interval_s": 60.0}

    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            for index in range(3):
                await campus.add(f"gw{index}", **slow)
            names = set(campus.services)
            await wait_until(lambda: all(
                {k for k, v in campus.statuses(n).items() if v == "alive"} == names for n in names
            ), 10, "3 alive members (gw1 learns of gw2 only by gossip)")
            campus.services["gw2"].node.set("news", {"x": 1})
            await wait_until(lambda: all(
                dict((k, v) for k, _, v in campus.services[n].node.state.items("gw2")).get("news") == {"x": 1}
                for n in ("gw0", "gw1")
            ), 10, "gw2's key everywhere")

    asyncio.run(scenario())


def test_an_unconfirmed_suspicion_is_rechecked_before_it_declares_a_live_member_dead() -> None:
    """gw0 suspects gw2 but the suspicion never leaves gw0, so gw2 cannot refute it (as when every copy of
    a refutation is lost): before its timer runs out gw0 probes gw2 itself and syncs instead of killing it."""

    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            for index in range(3):
                await campus.add(f"gw{index}", push_pull_interval_s=60.0)
            names = set(campus.services)
            await wait_until(lambda: all(
                {k for k, v in campus.statuses(n).items() if v == "alive"} == names for n in names
            ), 10, "3 alive members")
            node = campus.services["gw0"].node
            declared_dead = []
            node.changes.append(lambda c: declared_dead.append(c) if c.new == Status.DEAD else None)
            m = node.membership
            gw2 = m.members["gw2"]
            m.apply(MemberUpdate("gw2", gw2.host, gw2.port, gw2.incarnation, Status.SUSPECT, "nobody", gw2.boot))
            m.queue.drop_group(("member", "gw2"))  # never gossiped: nobody confirms, gw2 never hears of it
            assert m.members["gw2"].status == Status.SUSPECT
            deadline = m.members["gw2"].suspicion.deadline()
            await wait_until(lambda: m.members["gw2"].status == Status.ALIVE, 10, "gw2 alive again at gw0")
            assert node.clock() < deadline + 1.0  # settled by the recheck, not after a death and a rejoin
            assert declared_dead == []

    asyncio.run(scenario())


def test_a_stopping_node_starts_no_probe_work_and_leaves_no_coroutine_unawaited() -> None:
    """A ping-req or a suspicion handled while the node's task group shuts down used to create a coroutine
    that was never run ("coroutine '_relay_probe' was never awaited" at every shutdown under load)."""
    import inspect

    from bessgw.compat import TaskGroup

    async def scenario() -> None:
        async with Campus(new_key()) as campus:
            node = (await campus.add("gw0")).node
            marker: list[str] = []

            async def work() -> None:
                marker.append("ran")

            async def cancelled_group() -> None:
                async with TaskGroup() as tg:
                    node._tg = tg
                    raise RuntimeError("the node stops")

            with pytest.raises(BaseException):  # noqa: B017 - the group re-raises our error (grouped or not)
                await cancelled_group()
            late = work()
            assert node._spawn(late) is False  # the group has exited: create_task refuses
            assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED
            node._tg = None
            gone = work()
            assert node._spawn(gone) is False
            assert inspect.getcoroutinestate(gone) == inspect.CORO_CLOSED
            assert marker == []

    asyncio.run(scenario())
