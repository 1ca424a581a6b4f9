"""Campus dispatch under faults: a gateway killed, the etcd leader killed mid-change, a gateway paused
past its lease, a gateway cut off from etcd. Real etcd members, real gateways, real simulator processes.

The campus is judged only from the devices' own registers (measured P, P setpoint, running state), read
every 50 ms by the test's own Modbus clients (:mod:`tests.campus.device_campus`), and from etcd read by the
test: never from what a gateway reports. The invariant checked at every sample: Σ measured P and Σ
commanded P of all devices stay within the setpoint(s) in force, up to
:data:`~tests.campus.device_campus.SAMPLING_TOLERANCE_KW` (register rounding and the few ms between the
reads of one sweep). The etcd cluster runs with a 50 ms heartbeat and a 500 ms election timeout, so the
gateways' lease TTL can be 2 s (the config rule: TTL ≥ 3 x election timeout).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bessgw.campus.client import EtcdClient, WatchEvent
from bessgw.campus.protocol import Keys
from bessgw.campus.records import Share
from tests.campus.device_campus import (
    LEASE_TTL_S,
    SAMPLING_TOLERANCE_KW,
    DeviceCampus,
    network_namespace,
    network_namespace_available,
    nft,
    start_device_campus,
    stop_device_campus,
)
from tests.campus.etcd_cluster import EtcdCluster
from tests.campus.test_campus_gateways import poll

pytestmark = [pytest.mark.campus, pytest.mark.daemon, pytest.mark.federation, pytest.mark.chaos,
              pytest.mark.timeout(240)]

SETPOINT_KW = 3000.0  # 6 containers of 2500 kW: every gateway's share is far from its units' limits


def _etcd(base: Path, **kwargs: object) -> EtcdCluster:
    if shutil.which("etcd") is None and not Path("/usr/bin/etcd").exists():
        pytest.fail("etcd is not installed (apt-get install etcd-server; .ci/run does it)")
    return EtcdCluster(base, heartbeat_ms=50, election_ms=500, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fast_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = _etcd(tmp_path_factory.mktemp("etcd-fast"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def campus(fast_etcd: EtcdCluster, subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[DeviceCampus]:
    for member in fast_etcd.members:  # a test that killed a member gives the next one a whole cluster
        if member.process is None or member.process.poll() is not None:
            fast_etcd.restart(member)
    rig = start_device_campus(tmp_path, subprocess_env, fast_etcd)
    try:
        yield rig
    finally:
        stop_device_campus(rig)
        assert not rig.sampler.read_errors, rig.sampler.read_errors[:5]


def _history(endpoints: list[str], keys: Keys, start_revision: int) -> list[WatchEvent]:
    """Every change under the campus prefix from ``start_revision`` to now (etcd keeps the history)."""
    async def read() -> list[WatchEvent]:
        client = EtcdClient(endpoints, request_timeout_s=0.5)
        try:
            now, _ = await client.get_prefix(keys.prefix)
            events: list[WatchEvent] = []
            if now < start_revision:
                return events
            async with asyncio.timeout(10):
                async for event in client.watch_prefix(keys.prefix, start_revision):
                    events.append(event)
                    if event.kv.mod_revision >= now:
                        break
            return events
        finally:
            await client.close()
    return asyncio.run(read())


def _allocator(campus: DeviceCampus) -> str:
    allocator = campus.gateways[0].ask("campus_status")["campus"]["allocator"]
    assert allocator is not None
    return allocator


def test_a_killed_gateways_units_stop_by_their_own_watchdog_before_its_share_moves(campus: DeviceCampus) -> None:
    sampler = campus.sampler
    begin = time.monotonic()
    campus.setpoint(SETPOINT_KW, "before-kill")
    campus.wait_total(SETPOINT_KW, 30, "Σ measured ≈ the campus setpoint")
    victim = _allocator(campus)  # the allocator: its share and the allocator role both have to move
    others = [g for g in campus.devices_of if g != victim]
    victim_devices = campus.devices_of[victim]
    other_devices = [d for g in others for d in campus.devices_of[g]]
    assert sampler.latest().total(victim_devices) > 100.0  # it delivers a real share
    before = sampler.etcd[-1]
    others_before = sampler.latest().commanded_total(other_devices)

    campus.gateway(victim).process.proc.kill()  # SIGKILL: no goodbye, the lease just stops being renewed
    killed = time.monotonic()
    poll(lambda: all(abs(sampler.latest().measured[d]) < 0.05 and not sampler.latest().running[d]
                     for d in victim_devices), 10, "the dead gateway's units stopped by their own watchdog")
    campus.wait_total(SETPOINT_KW, 30, "the survivors taking over the whole setpoint", devices=other_devices)

    after_kill = sampler.since(killed)
    stopped_at = next(s.at_s for s in after_kill if abs(s.total(victim_devices)) < 0.05)
    rose_at = next(s.at_s for s in after_kill
                   if s.commanded_total(other_devices) > others_before + SAMPLING_TOLERANCE_KW)
    assert stopped_at < rose_at, "the survivors were commanded more while the dead gateway's units still ran"

    # in etcd: the survivors' shares rose only after the dead gateway's presence and share keys were deleted
    events = _history(campus.cluster.endpoints, campus.keys, before.revision + 1)
    gone = {e.kv.key: e.kv.mod_revision for e in events if e.kind == "delete"}
    assert campus.keys.gateway(victim) in gone and campus.keys.share(victim) in gone, sorted(gone)
    gone_at = max(gone[campus.keys.gateway(victim)], gone[campus.keys.share(victim)])
    raised = [e.kv.mod_revision for e in events if e.kind == "put" and any(
        e.kv.key == campus.keys.share(g) and Share.decode(e.kv.value).p_kw > before.shares[g][0] + 1e-6
        for g in others)]
    assert raised and min(raised) > gone_at, (gone_at, raised[:5])

    campus.assert_never_over(SETPOINT_KW, begin)


def test_killing_the_etcd_leader_mid_change_over_delivers_nothing_and_the_campus_converges(
        campus: DeviceCampus) -> None:
    sampler, cluster = campus.sampler, campus.cluster
    begin = time.monotonic()
    campus.setpoint(SETPOINT_KW, "discharge")
    campus.wait_total(SETPOINT_KW, 30, "Σ measured ≈ +3000 kW")
    leader = cluster.leader()
    # discharge -> charge: every share goes to 0 (acknowledged through etcd) before any goes negative, so the
    # transition needs several txns and acknowledgements: the leader dies while they are under way
    campus.setpoint(-SETPOINT_KW / 2, "charge")
    cluster.kill(leader)
    try:
        campus.wait_total(-SETPOINT_KW / 2, 40, "Σ measured ≈ -1500 kW with two etcd members")
        # the campus commits again: a new setpoint goes through the surviving majority and is delivered
        campus.setpoint(-SETPOINT_KW / 3, "charge-less", gateway=campus.gateways[1])
        campus.wait_total(-SETPOINT_KW / 3, 30, "Σ measured ≈ -1000 kW after the leader change")
        samples = sampler.since(begin)
        # neither direction is ever over-delivered, at no sample, in total or by the devices on each side
        campus.assert_never_over(SETPOINT_KW, begin, low_kw=-SETPOINT_KW / 2)
        for sample in samples:
            for values in (sample.measured, sample.commanded):
                assert sum(p for p in values.values() if p > 0) <= SETPOINT_KW + SAMPLING_TOLERANCE_KW, sample
                assert sum(p for p in values.values() if p < 0) >= -SETPOINT_KW / 2 - SAMPLING_TOLERANCE_KW, sample
    finally:
        cluster.restart(leader)


def test_a_gateway_paused_past_its_lease_writes_nothing_old_when_it_wakes(campus: DeviceCampus) -> None:
    sampler = campus.sampler
    begin = time.monotonic()
    campus.setpoint(SETPOINT_KW, "before-pause")
    campus.wait_total(SETPOINT_KW, 30, "Σ measured ≈ the campus setpoint")
    victim = next(g for g in campus.devices_of if g != _allocator(campus))
    victim_devices = campus.devices_of[victim]
    other_devices = [d for g, ds in campus.devices_of.items() if g != victim for d in ds]
    assert sampler.latest().commanded_total(victim_devices) > 100.0

    process = campus.gateway(victim).process
    process.signal(signal.SIGSTOP)
    paused = time.monotonic()
    try:
        poll(lambda: all(abs(sampler.latest().commanded[d]) < 0.05 for d in victim_devices), 10,
             "the paused gateway's units stopped by their own watchdog")
        campus.wait_total(SETPOINT_KW, 30, "the others taking over the paused gateway's share", devices=other_devices)
        time.sleep(max(0.0, paused + 3 * LEASE_TTL_S - time.monotonic()))  # the pause itself (the fault)
        revision_at_wake = sampler.etcd[-1].revision
    finally:
        process.signal(signal.SIGCONT)
    woke = time.monotonic()
    poll(lambda: victim in sampler.etcd[-1].present and victim in sampler.etcd[-1].shares
         and sampler.etcd[-1].shares[victim][1] > revision_at_wake, 30, "the woken gateway back with a new share")
    poll(lambda: abs(sampler.latest().total() - SETPOINT_KW) < 3.5 and sampler.latest().total(victim_devices) > 1.0,
         30, "Σ ≈ the setpoint again, the woken gateway included")

    # after the wake, its devices were only ever commanded what a share committed *after* the wake said:
    # the first etcd read sent after a device sweep sees every share committed before that sweep's reads
    for sample in sampler.since(woke):
        commanded = sample.commanded_total(victim_devices)
        if abs(commanded) < 0.05:
            continue
        seen = next((e for e in sampler.etcd if e.sent_s >= sample.done_s), None)
        if seen is None:
            break  # the last sweep, after the last etcd read
        share = seen.shares.get(victim)
        assert share is not None and share[1] > revision_at_wake, \
            f"{victim} woke and its units were commanded {commanded:.1f} kW with no new share in etcd ({share})"
        assert commanded <= share[0] + SAMPLING_TOLERANCE_KW
    campus.assert_never_over(SETPOINT_KW, begin)


def test_a_gateway_cut_off_from_etcd_stops_its_share_and_the_campus_recovers_after_heal(
        subprocess_env: dict[str, str], tmp_path: Path) -> None:
    why = network_namespace_available()
    if why is not None:
        pytest.skip(f"network namespaces are not available here: {why}")
    victim = "gw2"
    with network_namespace(f"bessgw-campus-{os.getpid()}") as namespace:
        # every member also serves clients on 127.0.0.2; only the victim uses that address, so one nftables
        # rule inside this namespace cuts exactly the victim from all of etcd while its units (127.0.0.1)
        # and gossip keep working
        (tmp_path / "etcd").mkdir()
        cluster = _etcd(tmp_path / "etcd", extra_client_hosts=("127.0.0.2",))
        cluster.start()
        campus = None
        try:
            campus = start_device_campus(
                tmp_path / "campus", subprocess_env, cluster,
                endpoints_of=lambda gw: [f"127.0.0.2:{m.client_port}" for m in cluster.members] if gw == victim
                else cluster.endpoints)
            sampler = campus.sampler
            victim_devices = campus.devices_of[victim]
            other_devices = [d for g, ds in campus.devices_of.items() if g != victim for d in ds]
            begin = time.monotonic()
            campus.setpoint(SETPOINT_KW, "before-cut")
            campus.wait_total(SETPOINT_KW, 30, "Σ measured ≈ the campus setpoint")
            assert sampler.latest().commanded_total(victim_devices) > 100.0
            ports = ", ".join(str(m.client_port) for m in cluster.members)
            nft(namespace, f"""table inet bessgw_cut {{
                chain out {{
                    type filter hook output priority 0; policy accept;
                    ip daddr 127.0.0.2 tcp dport {{ {ports} }} drop
                    ip saddr 127.0.0.2 tcp sport {{ {ports} }} drop
                }}
            }}""")
            cut = time.monotonic()
            # the victim's own fence stops its units: they stay running (its heartbeat goes on), at 0 kW
            poll(lambda: all(abs(sampler.latest().measured[d]) < 0.05 and sampler.latest().running[d]
                             for d in victim_devices), 15, "the cut-off gateway's units at 0 kW, still running")
            campus.wait_total(SETPOINT_KW, 30, "the majority side taking over the cut-off share", devices=other_devices)
            assert all(s.running[d] for s in sampler.since(cut) for d in victim_devices), \
                "the cut-off gateway's units went to standby: their link to it was cut too"
            nft(namespace, "delete table inet bessgw_cut")
            healed = time.monotonic()
            poll(lambda: victim in sampler.etcd[-1].present and sampler.latest().total(victim_devices) > 1.0
                 and abs(sampler.latest().total() - SETPOINT_KW) < 3.5, 40,
                 "the healed gateway back in etcd, with a share delivered, and Σ ≈ the setpoint")
            assert sampler.since(healed)  # sampled through the heal
            campus.assert_never_over(SETPOINT_KW, begin)
        finally:
            stop_device_campus(campus)
            cluster.stop()
        assert not campus.sampler.read_errors, campus.sampler.read_errors[:5]
