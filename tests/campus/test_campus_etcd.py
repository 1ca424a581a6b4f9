"""Campus dispatch against a real three-member etcd cluster on loopback (etcd 3.4, Debian's etcd-server)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from bessgw.campus.client import EtcdClient
from bessgw.campus.fencing import FenceClock
from bessgw.campus.protocol import Keys
from bessgw.campus.records import CampusSetpoint, Share
from bessgw.campus.service import CampusService
from bessgw.config.campus import CoordinationSection
from bessgw.errors import LeaseLostError
from bessgw.federation.view import CampusAggregate, CampusUnit, CampusView, UnitSummary
from bessgw.model import Quality, UnitState
from tests.campus.etcd_cluster import EtcdCluster

pytestmark = [pytest.mark.integration, pytest.mark.campus]

TTL_S = 3
ELECTION_S = 1.0


async def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def retry(call: Callable[[], Awaitable], timeout_s: float):
    """Repeat ``call`` until it succeeds (etcd needs 1-2 s to elect a new leader)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def settings(cluster: EtcdCluster, prefix: str, **changes) -> CoordinationSection:
    values = dict(endpoints=cluster.endpoints, lease_ttl_s=TTL_S, election_timeout_s=ELECTION_S,
                  request_timeout_s=0.5, allocation_interval_s=0.2, key_prefix=prefix, min_share_change_kw=0.0)
    values.update(changes)
    return CoordinationSection(**values)


def view(gateways: list[str], discharge_kw: float = 500.0) -> CampusView:
    units = tuple(
        CampusUnit(g, False, UnitSummary(f"{g}-u1", UnitState.RUNNING, Quality.GOOD, 60.0, 0.0, discharge_kw,
                                         discharge_kw, 1000.0, time.time()), 0.1, Quality.GOOD, "")
        for g in gateways
    )
    return CampusView(gateways[0], time.time(), (), units, CampusAggregate(0, 0, 0, 0, 0, (), (), 0, 0, 0))


@dataclass
class RecordingSink:
    calls: list[tuple[Share | None, float, float]] = field(default_factory=list)

    async def __call__(self, share: Share | None, deadline: float) -> None:
        self.calls.append((share, deadline, time.monotonic()))

    @property
    def share(self) -> Share | None:
        return self.calls[-1][0] if self.calls else None


@contextlib.asynccontextmanager
async def campus(cluster: EtcdCluster, gateways: list[str], **changes):
    prefix = f"/t-{uuid.uuid4().hex[:8]}/"
    sinks = {g: RecordingSink() for g in gateways}
    services = {g: CampusService(settings(cluster, prefix, **changes), g, lambda: view(gateways), sinks[g])
                for g in gateways}
    tasks = {g: asyncio.create_task(s.run()) for g, s in services.items()}
    try:
        yield services, sinks, tasks, prefix
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


def test_client_fails_over_when_its_member_is_killed(etcd_cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        leader = etcd_cluster.leader()
        victim = next(m for m in etcd_cluster.members if m is not leader)
        others = [m.endpoint for m in etcd_cluster.members if m is not victim]
        client = EtcdClient([victim.endpoint, *others], request_timeout_s=0.5)
        try:
            await client.put("/failover/a", b"1")
            assert client.endpoint == victim.endpoint
            etcd_cluster.kill(victim)
            revision = await client.put("/failover/b", b"2")  # no leader change: one call, next member
            assert client.endpoint != victim.endpoint and client.failovers >= 1
            read_revision, kv = await client.get("/failover/b")
            assert kv is not None and kv.value == b"2" and read_revision >= revision
        finally:
            await client.close()
            etcd_cluster.restart(victim)

    asyncio.run(scenario())


def test_keepalive_keeps_the_lease_and_expiry_comes_after_the_fencing_deadline(etcd_cluster: EtcdCluster) -> None:
    """Rule 2 against real etcd: a holder that stops keeping alive is fenced no later than its key goes."""

    async def scenario() -> None:
        client = EtcdClient(etcd_cluster.endpoints, request_timeout_s=0.5)
        fence = FenceClock(TTL_S, ELECTION_S, TTL_S - 2 * ELECTION_S)
        try:
            lease_id, ttl, sent = await client.grant(TTL_S)
            assert ttl == TTL_S
            fence.keepalive_ok(sent)
            await client.put("/lease/held", b"x", lease_id)
            for _ in range(int(2 * TTL_S / (TTL_S / 3))):  # two TTLs of keepalives at TTL / 3
                _ttl, sent = await client.keepalive(lease_id)
                fence.keepalive_ok(sent)
                linearizable_sent = time.monotonic()
                _, kv = await client.get("/lease/held")
                fence.linearizable_ok(linearizable_sent)
                assert kv is not None and kv.lease_id == lease_id
                await asyncio.sleep(TTL_S / 3)
            # the holder goes silent: the key must outlive the holder's own deadline
            deadline = fence.deadline()
            gone_at = None
            while gone_at is None:
                _, kv = await client.get("/lease/held")
                if kv is None:
                    gone_at = time.monotonic()
                else:
                    assert time.monotonic() < deadline + TTL_S + 3.0, "the key outlived its lease by far"
                    await asyncio.sleep(0.02)
            assert deadline <= gone_at
            with pytest.raises(LeaseLostError):
                await client.keepalive(lease_id)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_one_allocator_and_a_new_one_once_its_lease_is_gone(etcd_cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        async with campus(etcd_cluster, ["gw1", "gw2", "gw3"]) as (services, _sinks, tasks, _prefix):
            await wait_for(lambda: all(s.status().allocator for s in services.values()), 10, "an allocator")
            first = services["gw1"].status().allocator
            assert {s.status().allocator for s in services.values()} == {first}
            tasks[first].cancel()  # a clean stop revokes the lease: the allocator key goes with it
            await asyncio.gather(tasks[first], return_exceptions=True)
            rest = [g for g in services if g != first]
            await wait_for(lambda: all(services[g].status().allocator not in (None, first) for g in rest), 10,
                           "a new allocator")
            assert len({services[g].status().allocator for g in rest}) == 1

    asyncio.run(scenario())


def test_a_setpoint_committed_on_one_gateway_reaches_every_gateways_sink(etcd_cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        gateways = ["gw1", "gw2", "gw3"]
        async with campus(etcd_cluster, gateways) as (services, sinks, _tasks, _prefix):
            await wait_for(lambda: all(s.side.lease_id for s in services.values()), 10, "leases")
            trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            result = await services["gw2"].submit_setpoint(900.0, command_id="campus-1", source="test",
                                                           traceparent=trace)
            assert not result.duplicate

            def delivered() -> float:
                return sum(s.share.p_kw for s in sinks.values() if s.share is not None)

            await wait_for(lambda: abs(delivered() - 900.0) < 1e-6, 15, "shares summing to the setpoint")
            for gateway, sink in sinks.items():
                share, deadline, _ = sink.calls[-1]
                assert share is not None and share.gateway_id == gateway and share.p_kw > 0
                assert share.command_id == "campus-1" and share.traceparent == trace
                assert deadline > time.monotonic() - 1.0
            for sink in sinks.values():  # never more than the setpoint, from the first share to the last
                assert all(s is None or s.p_kw <= 900.0 for s, _, _ in sink.calls)
            await wait_for(lambda: all(r.applied_revision >= r.share_revision > 0
                                       for r in services["gw1"].status().gateways), 10, "acknowledgements")
            status = services["gw3"].status()
            assert status.setpoint is not None and status.setpoint.p_kw == 900.0
            assert status.setpoint_revision == result.revision

            await services["gw1"].release()
            await wait_for(lambda: all(s.share is None or s.share.p_kw == 0.0 for s in sinks.values()), 15,
                           "shares back to 0")

    asyncio.run(scenario())


def test_the_same_command_id_on_two_gateways_has_one_effect(etcd_cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        async with campus(etcd_cluster, ["gw1", "gw2"]) as (services, _sinks, _tasks, prefix):
            first = await services["gw1"].submit_setpoint(100.0, command_id="dup-7")
            again = await services["gw2"].submit_setpoint(200.0, command_id="dup-7")
            assert not first.duplicate and again.duplicate
            assert again.revision == first.revision
            client = EtcdClient(etcd_cluster.endpoints, request_timeout_s=0.5)
            try:
                _, kv = await client.get(Keys(prefix).setpoint)
            finally:
                await client.close()
            assert kv is not None and kv.mod_revision == first.revision
            assert CampusSetpoint.decode(kv.value).p_kw == 100.0

    asyncio.run(scenario())


def test_a_corrupted_value_in_etcd_is_refused_and_counted(etcd_cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        async with campus(etcd_cluster, ["gw1", "gw2"]) as (services, sinks, _tasks, prefix):
            keys = Keys(prefix)
            await services["gw1"].submit_setpoint(400.0, command_id="before-corruption")
            await wait_for(lambda: all(s.share is not None and s.share.p_kw > 0 for s in sinks.values()), 15,
                           "shares")
            client = EtcdClient(etcd_cluster.endpoints, request_timeout_s=0.5)
            try:
                # a share with NaN, on gw2's own lease (so it is gw2's share key as far as etcd is concerned)
                _, presence = await client.get(keys.gateway("gw2"))
                assert presence is not None
                bad_share = (b'{"v":1,"kind":"share","gateway_id":"gw2","p_kw":NaN,"q_kvar":0.0,'
                             b'"setpoint_revision":1,"command_id":"x","expires_at":null,"traceparent":""}')
                await client.put(keys.share("gw2"), bad_share, presence.lease_id)
                await wait_for(lambda: services["gw2"].corrupt_records >= 1, 10, "gw2 counting the share")
                await wait_for(lambda: sinks["gw2"].share is None, 5, "gw2 stopping")
                # a setpoint that is not JSON: every allocator read refuses it, shares go to 0
                await client.put(keys.setpoint, b"\xff not json")
                await wait_for(lambda: all(s.corrupt_records >= 1 for s in services.values()), 10, "counting")
                await wait_for(lambda: all(s.share is None or s.share.p_kw == 0.0 for s in sinks.values()), 15,
                               "shares at 0")
            finally:
                await client.close()
            for sink in sinks.values():
                assert all(s is None or (math.isfinite(s.p_kw) and s.p_kw <= 400.0) for s, _, _ in sink.calls)

    asyncio.run(scenario())
