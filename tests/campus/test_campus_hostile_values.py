"""Hostile but well-formed values written straight into the campus keys (as anyone holding etcd credentials
can): a gateway applies only a share that the campus setpoint can explain, never more than the setpoint."""

from __future__ import annotations

import asyncio

import pytest

from bessgw.campus.client import EtcdClient
from bessgw.campus.protocol import Keys
from tests.campus.etcd_cluster import EtcdCluster
from tests.campus.test_campus_etcd import campus, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.campus, pytest.mark.chaos]


def share_bytes(gateway_id: str, p_kw: float, revision: int, version: int = 1) -> bytes:
    return (f'{{"v":{version},"kind":"share","gateway_id":"{gateway_id}","p_kw":{p_kw},"q_kvar":0.0,'
            f'"setpoint_revision":{revision},"command_id":"hostile","expires_at":null,"traceparent":""}}').encode()


@pytest.mark.parametrize("case", ["over-setpoint", "other-gateway", "unknown-revision", "newer-version", "mega"])
def test_a_hostile_share_is_never_applied_above_the_setpoint(etcd_cluster: EtcdCluster, case: str) -> None:
    async def scenario() -> None:
        async with campus(etcd_cluster, ["gw1", "gw2"]) as (services, sinks, _tasks, prefix):
            keys = Keys(prefix)
            await services["gw1"].submit_setpoint(400.0, command_id="before-hostile")
            await wait_for(lambda: all(s.share is not None and s.share.p_kw > 0 for s in sinks.values()), 15,
                           "shares")
            good = sinks["gw2"].share
            client = EtcdClient(etcd_cluster.endpoints, request_timeout_s=0.5)
            try:
                _, presence = await client.get(keys.gateway("gw2"))
                assert presence is not None
                revision = good.setpoint_revision
                value = {
                    "over-setpoint": share_bytes("gw2", 5000.0, revision),
                    "other-gateway": share_bytes("gw1", 390.0, revision),
                    "unknown-revision": share_bytes("gw2", 390.0, revision + 100_000),
                    "newer-version": share_bytes("gw2", 390.0, revision, version=99),
                    "mega": share_bytes("gw2", 390.0, revision)[:-1] + b',"pad":"' + b"x" * 1_000_000 + b'"}',
                }[case]
                mark = len(sinks["gw2"].calls)
                await client.put(keys.share("gw2"), value, presence.lease_id)
                # the episode ends when the allocator has written gw2 a share of the real command again
                await wait_for(lambda: any(s is not None and s.command_id == "before-hostile"
                                           for s, _, _ in sinks["gw2"].calls[mark:]), 15, "the allocator's share")
            finally:
                await client.close()
            applied = [s.p_kw for s, _, _ in sinks["gw2"].calls[mark:] if s is not None]
            assert all(p <= 400.0 - good.p_kw + 1e-6 for p in applied), applied  # gw1 keeps its part meanwhile

    asyncio.run(scenario())


def test_a_share_key_of_an_unknown_gateway_moves_nothing_and_the_campus_keeps_its_setpoint(
        etcd_cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        async with campus(etcd_cluster, ["gw1", "gw2"]) as (services, sinks, _tasks, prefix):
            keys = Keys(prefix)
            await services["gw1"].submit_setpoint(400.0, command_id="before-unknown")
            await wait_for(lambda: all(s.share is not None and s.share.p_kw > 0 for s in sinks.values()), 15,
                           "shares")
            revision = sinks["gw1"].share.setpoint_revision
            marks = {g: len(s.calls) for g, s in sinks.items()}
            client = EtcdClient(etcd_cluster.endpoints, request_timeout_s=0.5)
            try:
                await client.put(keys.share("gwX"), share_bytes("gwX", 350.0, revision))  # no lease, no gateway
                await client.put(keys.share("gw\u00e9\x01"), b"\x00" * 4000)
                await wait_for(lambda: all(svc.corrupt_records >= 1 for svc in services.values()), 10,
                               "both gateways counting the garbage key")
                # the campus still follows its setpoint: a new one is split over the two real gateways only
                await services["gw2"].submit_setpoint(300.0, command_id="after-unknown")
                await wait_for(lambda: all(s.share is not None and s.share.command_id == "after-unknown"
                                           and s.share.p_kw == pytest.approx(150.0) for s in sinks.values()), 15,
                               "the new split")
            finally:
                await client.close()
            for gateway, sink in sinks.items():
                applied = [s.p_kw for s, _, _ in sink.calls[marks[gateway]:] if s is not None]
                assert all(p <= 200.0 for p in applied), (gateway, applied)  # never a part of gwX's 350 kW

    asyncio.run(scenario())
