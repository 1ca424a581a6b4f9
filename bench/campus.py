"""Benchmark: campus dispatch through a real three-member etcd on loopback.

Set-up: three etcd members (Debian's ``etcd-server``; 50 ms heartbeat, 500 ms election timeout) and N
gateways, each a real :class:`~bessgw.campus.CampusService` (lease, keepalives, watch, fencing reads,
election, allocator) with its own etcd client, **in this process** on one event loop. What each gateway
hands its control loop is recorded by a **recording sink** (the time a share arrives): the figures cover
the campus path (commit, allocator, guarded txns, watches, acknowledgements) and not the control step that
then writes the units, which ``bench/dispatch.py`` measures (one poked control period). Sharing one loop
makes the in-process figures pessimistic, not optimistic: N gateways' watch handling is serialised here.
Every gateway sees the same fixed campus view (one unit per gateway, 2,000 kW each way).

Figures:

1. campus setpoint -> last gateway's sink holding its new share, p50 / p99, N = 3 and 10 (alternating
   setpoints, so both decreases and increases; goal p99 < 100 ms at 10);
2. gateway kill -> share reassigned: one gateway is a **child process** (the same service, a real lease),
   killed with SIGKILL; time until the survivors' sinks receive the larger shares (goal <= TTL + 2.5 s);
3. etcd leader kill -> the campus commits again: SIGKILL the leader, then submit a new setpoint in a loop
   (each try bounded by request_timeout_s) until it commits, and until every sink holds it (etcd alone:
   1.0-1.8 s with a 1 s election timeout; 0.5 s here);
4. idle cost per gateway (N = 10, a setpoint in force, nothing changing, 10 s): bytes/s to and from etcd
   (the members' gRPC byte counters / N) and CPU (this process's CPU time / N, loop overhead included).

    .venv/bin/python bench/campus.py [--trials 200]

Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the etcd cluster helper of the tests

from bessgw.campus import CampusService, Share  # noqa: E402
from bessgw.campus.client import EtcdClient  # noqa: E402
from bessgw.campus.protocol import Keys  # noqa: E402
from bessgw.config.campus import CoordinationSection  # noqa: E402
from bessgw.federation.view import CampusAggregate, CampusUnit, CampusView, UnitSummary  # noqa: E402
from bessgw.model import Quality, UnitState  # noqa: E402
from tests.campus.etcd_cluster import EtcdCluster  # noqa: E402

TTL_S = 2
ELECTION_S = 0.5
UNIT_KW = 2000.0


def settings(endpoints: list[str], prefix: str) -> CoordinationSection:
    return CoordinationSection(endpoints=endpoints, key_prefix=prefix, lease_ttl_s=TTL_S,
                               election_timeout_s=ELECTION_S, request_timeout_s=0.5, allocation_interval_s=0.2,
                               min_share_change_kw=1.0)


def view_of(gateway_ids: list[str]) -> CampusView:
    """A fixed campus view: one Good unit per gateway, SOC 40..60 %."""
    units = tuple(
        CampusUnit(gw, False, UnitSummary(f"{gw}-u", UnitState.RUNNING, Quality.GOOD,
                                          40.0 + 20.0 * i / len(gateway_ids), 0.0, UNIT_KW, UNIT_KW, 4000.0,
                                          time.time()), 0.0, Quality.GOOD, "")
        for i, gw in enumerate(gateway_ids))
    aggregate = CampusAggregate(0.0, 0.0, 0.0, math.nan, len(units), (), (), len(units), 0, 0)
    return CampusView(gateway_ids[0], time.time(), (), units, aggregate)


class Recorder:
    """The recording sink of one gateway: the share it holds and when it arrived."""

    def __init__(self) -> None:
        self.share: Share | None = None
        self.at = 0.0
        self.changed = asyncio.Event()

    async def __call__(self, share: Share | None, deadline: float) -> None:
        if share != self.share:
            self.share, self.at = share, time.perf_counter()
            self.changed.set()


class Campus:
    def __init__(self, endpoints: list[str], gateway_ids: list[str], view_ids: list[str] | None = None) -> None:
        self.prefix = f"/bench-{os.urandom(4).hex()}/"
        self.keys = Keys(self.prefix)
        view = view_of(view_ids or gateway_ids)
        self.sinks = {gw: Recorder() for gw in gateway_ids}
        self.services = {gw: CampusService(settings(endpoints, self.prefix), gw, lambda: view, self.sinks[gw])
                         for gw in gateway_ids}
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> Campus:
        self.tasks = [asyncio.create_task(s.run()) for s in self.services.values()]
        await self.until(lambda: all(s.side.lease_id for s in self.services.values())
                         and next(iter(self.services.values())).status().allocator is not None, 20, "leases")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @property
    def first(self) -> CampusService:
        return next(iter(self.services.values()))

    async def until(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"bench: {what} not reached within {timeout_s} s")
            await asyncio.sleep(0.002)

    async def settle(self, command_id: str, p_kw: float, timeout_s: float, more=lambda: True) -> None:
        """Wait until :meth:`holding` (and ``more()``) is true."""
        await self.until(lambda: self.holding(command_id, p_kw) and more(), timeout_s, f"{command_id} held")

    def holding(self, command_id: str, p_kw: float, gateways: list[str] | None = None) -> bool:
        """Every sink holds a share of ``command_id`` and together they are within 1 kW / gateway of p_kw."""
        sinks = [self.sinks[g] for g in gateways or self.sinks]
        if any(s.share is None or s.share.command_id != command_id for s in sinks):
            return False
        return abs(sum(s.share.p_kw for s in sinks) - p_kw) <= len(self.services) * 1.0 + 1e-6


async def setpoint_latency(endpoints: list[str], n: int, trials: int) -> dict[str, float]:
    gateways = [f"gw{i}" for i in range(n)]
    async with Campus(endpoints, gateways) as campus:
        latencies = []
        for trial in range(trials + 5):
            p_kw = (1000.0 if trial % 2 else 700.0) * n
            command_id = f"lat-{n}-{trial}"
            start = time.perf_counter()
            await campus.first.submit_setpoint(p_kw, command_id=command_id, source="bench")
            await campus.settle(command_id, p_kw, 10)
            last = max(s.at for s in campus.sinks.values())
            if trial >= 5:  # warm-up excluded
                latencies.append((last - start) * 1000.0)
            await asyncio.sleep(0.05)  # let the acknowledgements land: the next change starts from rest
    latencies.sort()
    return {"p50_ms": statistics.median(latencies), "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
            "max_ms": latencies[-1], "trials": len(latencies)}


def child(endpoints: list[str], prefix: str, gateway_id: str) -> None:
    """A lone gateway in its own process (for the kill): prints ``ready`` once it holds a share."""
    async def run() -> None:
        service = CampusService(settings(endpoints, prefix), gateway_id, lambda: None, Recorder())
        task = asyncio.create_task(service.run())
        while not service.side.lease_id:
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await task
    asyncio.run(run())


async def kill_reassign(endpoints: list[str], trials: int) -> list[float]:
    figures = []
    for trial in range(trials):
        survivors = ["gw0", "gw1"]
        async with Campus(endpoints, survivors, view_ids=[*survivors, "victim"]) as campus:
            victim = subprocess.Popen([sys.executable, __file__, "--child", "victim", "--prefix", campus.prefix,
                                       "--endpoints", ",".join(endpoints)], stdout=subprocess.PIPE, text=True)
            try:
                assert victim.stdout is not None and victim.stdout.readline().strip() == "ready"
                p_kw = 3000.0
                command_id = f"kill-{trial}"
                await campus.first.submit_setpoint(p_kw, command_id=command_id, source="bench")
                client = EtcdClient(endpoints, 0.5)
                try:
                    deadline = time.monotonic() + 20
                    while True:
                        _, kv = await client.get(campus.keys.share("victim"))
                        held = Share.decode(kv.value).p_kw if kv is not None else 0.0
                        if held > 100.0 and campus.holding(command_id, p_kw - held):
                            break
                        if time.monotonic() > deadline:
                            raise TimeoutError("bench: the victim never held a share")
                        await asyncio.sleep(0.05)
                finally:
                    await client.close()
                before = sum(s.share.p_kw for s in campus.sinks.values() if s.share is not None)
                await asyncio.sleep(0.5)  # a keepalive phase that is not aligned with the trial's start
                victim.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                await campus.settle(command_id, p_kw, TTL_S + 15, more=lambda before=before, sinks=campus.sinks: sum(
                    s.share.p_kw for s in sinks.values() if s.share) > before + 1)
                figures.append(max(s.at for s in campus.sinks.values()) - killed)
            finally:
                if victim.poll() is None:
                    victim.kill()
                victim.wait(10)
    return figures


async def leader_kill(cluster: EtcdCluster, trials: int) -> list[tuple[float, float]]:
    figures = []
    gateways = ["gw0", "gw1", "gw2"]
    for trial in range(trials):
        async with Campus(cluster.endpoints, gateways) as campus:
            await campus.first.submit_setpoint(3000.0, command_id=f"before-{trial}", source="bench")
            await campus.settle(f"before-{trial}", 3000.0, 10)
            leader = cluster.leader()
            await asyncio.sleep(0.3)
            cluster.kill(leader)
            killed = time.perf_counter()
            try:
                command_id = f"after-{trial}"
                for _attempt in range(200):
                    try:
                        await campus.services["gw1"].submit_setpoint(2400.0, command_id=command_id, source="bench")
                        break
                    except Exception:  # a try during the election: go again (bounded loop)
                        await asyncio.sleep(0.01)
                committed = time.perf_counter() - killed
                await campus.settle(command_id, 2400.0, 20)
                delivered = max(s.at for s in campus.sinks.values()) - killed
                figures.append((committed, delivered))
            finally:
                await asyncio.to_thread(cluster.restart, leader)
    return figures


def etcd_bytes(cluster: EtcdCluster) -> float:
    total = 0.0
    for member in cluster.members:
        with urllib.request.urlopen(f"http://{member.endpoint}/metrics", timeout=2) as response:
            text = response.read().decode()
        for name in ("etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"):
            match = re.search(rf"^{name} (\S+)$", text, re.M)
            total += float(match.group(1)) if match else 0.0
    return total


async def idle_cost(cluster: EtcdCluster, n: int, window_s: float) -> dict[str, float]:
    gateways = [f"gw{i}" for i in range(n)]
    async with Campus(cluster.endpoints, gateways) as campus:
        await campus.first.submit_setpoint(700.0 * n, command_id="idle", source="bench")
        await campus.settle("idle", 700.0 * n, 10)
        await asyncio.sleep(1.0)
        bytes_before, cpu_before, wall_before = etcd_bytes(cluster), time.process_time(), time.monotonic()
        await asyncio.sleep(window_s)
        bytes_after, cpu_after, wall_after = etcd_bytes(cluster), time.process_time(), time.monotonic()
    wall = wall_after - wall_before
    return {"bytes_per_s": (bytes_after - bytes_before) / wall / n,
            "cpu_pct": 100.0 * (cpu_after - cpu_before) / wall / n}


async def bench(cluster: EtcdCluster, trials: int) -> dict:
    figures: dict = {}
    for n in (3, 10):
        figures[f"setpoint_n{n}"] = await setpoint_latency(cluster.endpoints, n, trials)
    kills = await kill_reassign(cluster.endpoints, 3)
    figures["gateway_kill_reassign_s"] = {"median": statistics.median(kills), "max": max(kills), "trials": kills}
    leaders = await leader_kill(cluster, 3)
    figures["leader_kill_commit_s"] = {"median": statistics.median(c for c, _ in leaders),
                                       "max": max(c for c, _ in leaders), "trials": [c for c, _ in leaders]}
    figures["leader_kill_delivered_s"] = {"median": statistics.median(d for _, d in leaders),
                                          "max": max(d for _, d in leaders), "trials": [d for _, d in leaders]}
    figures["idle_n10"] = await idle_cost(cluster, 10, 10.0)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    if args.child:
        child(args.endpoints.split(","), args.prefix, args.child)
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-campus-") as tmp:
        cluster = EtcdCluster(Path(tmp), heartbeat_ms=50, election_ms=int(ELECTION_S * 1000))
        cluster.start()
        try:
            figures = asyncio.run(bench(cluster, args.trials))
        finally:
            cluster.stop()
    s3, s10 = figures["setpoint_n3"], figures["setpoint_n10"]
    kill, lead, deliv, idle = (figures["gateway_kill_reassign_s"], figures["leader_kill_commit_s"],
                               figures["leader_kill_delivered_s"], figures["idle_n10"])
    rows = [
        ("setpoint -> last gateway's share, N=3", f"p50 {s3['p50_ms']:.1f} ms  p99 {s3['p99_ms']:.1f} ms", ""),
        ("setpoint -> last gateway's share, N=10", f"p50 {s10['p50_ms']:.1f} ms  p99 {s10['p99_ms']:.1f} ms",
         "goal p99 < 100 ms"),
        ("gateway kill -9 -> share reassigned", f"median {kill['median']:.2f} s  max {kill['max']:.2f} s",
         f"goal <= TTL + 2.5 = {TTL_S + 2.5:g} s"),
        ("etcd leader kill -9 -> setpoint commits", f"median {lead['median']:.2f} s  max {lead['max']:.2f} s",
         f"election timeout {ELECTION_S:g} s"),
        ("etcd leader kill -9 -> every share held", f"median {deliv['median']:.2f} s  max {deliv['max']:.2f} s", ""),
        ("idle, per gateway (N=10)", f"{idle['bytes_per_s']:.0f} B/s to+from etcd, CPU {idle['cpu_pct']:.2f} %", ""),
    ]
    print(f"campus dispatch, 3 etcd members, lease TTL {TTL_S} s, election timeout {ELECTION_S} s, "
          f"load before {load_before[0]:.2f}")
    for name, value, goal in rows:
        print(f"  {name:<42} {value:<36} {goal}")
    print(json.dumps({"bench": "campus", "ttl_s": TTL_S, "election_timeout_s": ELECTION_S,
                      "load_before": load_before[0], **figures}, default=float))


if __name__ == "__main__":
    main()
