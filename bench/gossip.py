"""Gossip benchmark: bessgw federation vs HashiCorp Serf on loopback, in one run.

Rows (``N`` and datagram loss) default to N = 10, 50, 100 without loss and N = 50 with 5 % and 10 % loss.
For each row the script starts N Serf agents (one process each, encrypted, LAN profile) and then N bessgw
federation nodes (default timing; ``NODES_PER_PROCESS`` nodes share one Python process, every kill victim
runs alone in its own process) and measures for both:

- update spread: a Serf user event / a bessgw versioned key written on one random node, time until every
  other node has it (median and worst over ``--updates`` updates, one per second);
- failure detection over ``--kills`` kills, one after the other (``kill -9`` of one node, then wait until
  every remaining node declares it failed/dead, then the next): per kill the median over observers and the
  time until all agree; the row shows the median over kills of the per-kill median and the worst kill's
  time until all agree. The campus shrinks by one per kill (N is the size at the first kill);
- false positives: any node that was not killed declared failed/dead by anyone after the cluster converged;
- bytes/s per node sent (encrypted UDP payload + Serf's TCP push-pull), idle and during the updates.
  Serf's from its own memberlist metrics (statsd sink), bessgw's from its transport counters.

bessgw's rows in the JSON also carry, per kill, when the first member suspected the victim and the five
worst local-health (Lifeguard awareness) scores at the kill: where detection time goes.

Loss: when run as root with ``nft`` available, the script re-executes itself inside a private network
namespace (``unshare -n``), so ports are its own, and loss is an nftables rule dropping that share of all UDP
gossip datagrams for both systems alike. Otherwise the Serf loss rows are skipped and bessgw's loss comes
from its transport's fault injection.

Serf: the script runs ``serf`` from PATH and skips it when absent. On Debian 12 it builds offline from
the packaged sources::

    apt-get install -y golang-go golang-github-hashicorp-serf-dev
    GO111MODULE=off GOPATH=/usr/share/gocode go build -o ~/bin/serf github.com/hashicorp/serf/cmd/serf
    PATH=~/bin:$PATH python bench/gossip.py

Options: ``--rows 100:0,50:10`` (N:loss-percent), ``--quick`` (N = 20 at 0, 5 and 10 % loss), ``--kills K``,
``--updates U``, ``--no-serf``. The full default run takes about 15 to 20 minutes on two cores.

Prints a table with ratios bessgw/Serf (below 1 is better for times and bytes) and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import msgpack

ROWS = ((10, 0.0), (50, 0.0), (100, 0.0), (50, 0.05), (50, 0.10))
QUICK_ROWS = ((20, 0.0), (20, 0.05), (20, 0.10))
NODES_PER_PROCESS = 25
UPDATES = 5
KILLS = 5
IDLE_S = 15.0
STATSD_PORT = 19999
NETNS_ENV = "BESSGW_BENCH_NETNS"


# ---------------------------------------------------------------------------------------------- helpers


_HANDED_OUT: set[int] = set()


_NEXT_FIXED = [10000]


def free_port() -> int:
    """A port free for both UDP and TCP (Serf binds both), never the same one twice in a run.

    In our private namespace: sequential ports below the ephemeral range, so that the agents' own outgoing
    connections can never take one before its owner binds it. Elsewhere: ask the kernel.
    """
    if os.environ.get(NETNS_ENV) == "1":
        _NEXT_FIXED[0] += 1
        if _NEXT_FIXED[0] == STATSD_PORT:
            _NEXT_FIXED[0] += 1
        return _NEXT_FIXED[0]
    for _ in range(2000):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket(socket.AF_INET) as t:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port in _HANDED_OUT or port == STATSD_PORT:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port")


def summary(samples: list[float]) -> tuple[float | None, float | None]:
    return (statistics.median(samples), max(samples)) if samples else (None, None)


class Statsd(asyncio.DatagramProtocol):
    """Sums Serf's memberlist byte counters (all agents report to this one port)."""

    def __init__(self) -> None:
        self.sent = 0.0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        for line in data.decode(errors="replace").splitlines():
            name, _, rest = line.partition(":")
            if name.endswith(("memberlist.udp.sent", "memberlist.tcp.sent")):
                self.sent += float(rest.split("|")[0])


class SerfRpc:
    """Minimal Serf RPC client (msgpack over TCP): handshake, event, members, stream."""

    def __init__(self) -> None:
        self.seq = 0
        self.pending: dict[int, tuple[asyncio.Future[Any], bool]] = {}
        self.streams: dict[int, Any] = {}
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.task = asyncio.create_task(self._read())
        await self.call("handshake", {"Version": 1})

    async def call(self, command: str, body: dict[str, Any] | None = None, wants_body: bool = False) -> Any:
        self.seq += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.seq] = (future, wants_body)
        data = msgpack.packb({"Command": command, "Seq": self.seq})
        if body is not None:
            data += msgpack.packb(body, use_bin_type=False)
        self.writer.write(data)
        return await asyncio.wait_for(future, 10)

    async def stream(self, types: str, callback: Any) -> None:
        self.streams[self.seq + 1] = callback
        await self.call("stream", {"Type": types})

    async def _read(self) -> None:
        body_for: Any = None
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.unpacker.feed(data)
            for obj in self.unpacker:
                if body_for is not None:
                    target, body_for = body_for, None
                    target(obj)
                    continue
                if not isinstance(obj, dict):
                    continue  # not a header: resynchronise on the next one
                seq = obj.get("Seq")
                if seq in self.pending:
                    future, wants_body = self.pending.pop(seq)
                    if wants_body:
                        body_for = future.set_result
                    else:
                        future.set_result(obj)
                elif seq in self.streams:
                    body_for = self.streams[seq]

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


# ---------------------------------------------------------------------------------------------- Serf


async def serf_phase(n: int, loss: float, plan: Plan, key16: str, workdir: str, statsd: Statsd) -> dict[str, Any]:
    config = os.path.join(workdir, "serf.json")
    with open(config, "w") as f:
        json.dump({"statsd_addr": f"127.0.0.1:{STATSD_PORT}"}, f)
    agents, clients = [], []
    ports = [(free_port(), free_port()) for _ in range(n)]
    seen: dict[int, dict[str, float]] = {}
    failed: list[tuple[str, str, float]] = []  # (subject, observer, time)
    names = [f"s{i}" for i in range(n)]
    try:
        for index, (port, rpc) in enumerate(ports):
            cmd = ["serf", "agent", f"-node={names[index]}", f"-bind=127.0.0.1:{port}", f"-rpc-addr=127.0.0.1:{rpc}",
                   f"-encrypt={key16}", "-log-level=err", f"-config-file={config}"]
            if index:  # retry-join: an overloaded seed must not make an agent give up and exit
                cmd += [f"-retry-join=127.0.0.1:{ports[random.randrange(min(index, 5))][0]}", "-retry-interval=1s"]
            log = open(os.path.join(workdir, f"{names[index]}.log"), "wb")  # noqa: SIM115 - closed with the agent
            agents.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            log.close()
            await wait_tcp(rpc)
        for index, (_, rpc) in enumerate(ports):
            client = SerfRpc()
            await client.connect(rpc)
            name = names[index]

            def on_event(record: dict[str, Any], name: str = name) -> None:
                now = time.time()
                if record.get("Event") == "user":
                    seen.setdefault(int(record["Payload"]), {}).setdefault(name, now)
                elif record.get("Event") == "member-failed":
                    for member in record.get("Members", []):
                        failed.append((member["Name"], name, now))

            await client.stream("user,member-failed", on_event)
            clients.append(client)

        async def converged() -> bool:
            for client in clients:
                reply = await client.call("members", wants_body=True)
                if sum(1 for m in reply["Members"] if m["Status"] == "alive") != n:
                    return False
            return True

        await wait_for_async(converged, 120, "serf convergence")
        converged_at = time.time()
        nft_loss(loss)
        await asyncio.sleep(2.0)
        idle = await measure_bytes(lambda: statsd.sent, IDLE_S) / n
        start_bytes, start = statsd.sent, time.monotonic()
        spreads = []
        for trial in range(plan.updates):
            origin = random.randrange(n)
            sent_at = time.time()
            await clients[origin].call("event", {"Name": "bench", "Payload": str(trial), "Coalesce": False})
            others = set(names) - {names[origin]}
            await wait_for(lambda t=trial, o=others: o <= set(seen.get(t, {})), 30, "serf update")
            spreads.append(max(seen[trial][x] for x in others) - sent_at)
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - sent_at)))
        busy = (statsd.sent - start_bytes) / (time.monotonic() - start) / n
        gone: set[str] = set()
        detect = []
        for victim in range(n - plan.kills, n):
            killed_at = time.time()
            agents[victim].kill()
            gone.add(names[victim])
            detect.append(await detection(failed, names[victim], set(names) - gone, killed_at, "serf"))
            await asyncio.sleep(1.0)
        return result("serf", n, loss, spreads, detect, false_positives(failed, gone, converged_at), idle, busy)
    except Exception as err:
        dead = [(names[i], agent.returncode) for i, agent in enumerate(agents) if agent.poll() is not None]
        if dead:
            with open(os.path.join(workdir, f"{dead[0][0]}.log"), errors="replace") as f:
                tail = f.read()[-300:]
            raise RuntimeError(f"{err}; agents exited: {dead[:5]}; {dead[0][0]} said: {tail!r}") from err
        raise
    finally:
        nft_loss(0.0)
        for client in clients:
            client.close()
        for agent in agents:
            agent.kill()
        for agent in agents:
            agent.wait(10)


async def wait_tcp(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------- bessgw


def bess_worker(conn: Any, events: Any, ids: list[str], ports: list[int], seeds: list[str], key: str,
                drop_rate: float) -> None:
    """One process running several nodes; reports first sightings and deaths with wall-clock times."""
    asyncio.run(_bess_worker(conn, events, ids, ports, seeds, key, drop_rate))


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None

    def bind(self, **kw: Any) -> _Quiet:
        return self


async def _bess_worker(conn: Any, events: Any, ids: list[str], ports: list[int], seeds: list[str], key: str,
                       drop_rate: float) -> None:
    from bessgw.config import FederationSection
    from bessgw.federation.node import GossipNode
    from bessgw.federation.wire import Status

    nodes = []
    for node_id, port in zip(ids, ports, strict=True):
        settings = FederationSection(bind_host="127.0.0.1", bind_port=port, keys=[key], seeds=seeds)
        node = GossipNode(node_id, settings, log=_Quiet())
        node.faults.drop_rate = drop_rate

        def on_state(entry: Any, me: str = node_id) -> None:
            if entry.key == "bench" and entry.value is not None:
                events.put(("seen", me, entry.value["t"], time.time()))

        def on_change(change: Any, me: str = node_id) -> None:
            if change.new == Status.DEAD:
                events.put(("dead", me, change.node, time.time()))
            elif change.new == Status.SUSPECT:
                events.put(("suspect", me, change.node, time.time()))

        node.on_state.append(on_state)
        node.changes.append(on_change)
        nodes.append(node)
    for node in nodes:
        await node.start()
    tasks = [asyncio.create_task(node.run()) for node in nodes]
    loop = asyncio.get_running_loop()
    by_id = {node.id: node for node in nodes}
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command[0] == "set":
            by_id[command[1]].set("bench", {"t": command[2]})  # as small as Serf's event "bench" / "3"
            conn.send(time.time())
        elif command[0] == "bytes":
            conn.send(sum(node.transport.counters.sent_bytes for node in nodes))
        elif command[0] == "awareness":
            conn.send([node.membership.awareness for node in nodes])
        elif command[0] == "alive":
            conn.send([len(node.membership.peers(Status.ALIVE)) for node in nodes])
        elif command[0] == "stop":
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def bess_phase(n: int, loss: float, plan: Plan, netns: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    key = base64.b64encode(os.urandom(32)).decode()
    ids = [f"b{i}" for i in range(n)]
    ports = [free_port() for _ in range(n)]
    seeds = [f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"]
    drop_rate = 0.0 if netns else loss
    events = ctx.Queue()
    survivors = n - plan.kills
    groups = [list(range(i, min(i + NODES_PER_PROCESS, survivors))) for i in range(0, survivors, NODES_PER_PROCESS)]
    groups += [[victim] for victim in range(survivors, n)]  # each victim alone, so kill -9 kills nothing else
    workers, killed = [], []
    for group in groups:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=bess_worker, args=(child, events, [ids[i] for i in group],
                                                     [ports[i] for i in group], seeds, key, drop_rate), daemon=True)
        proc.start()
        workers.append((proc, parent, group))
    seen: dict[int, dict[str, float]] = {}
    dead: list[tuple[str, str, float]] = []  # (subject, observer, time)
    suspected: list[tuple[str, str, float]] = []

    def drain() -> None:
        while not events.empty():
            kind, observer, subject, at = events.get_nowait()
            if kind == "seen":
                seen.setdefault(subject, {}).setdefault(observer, at)
            elif kind == "suspect":
                suspected.append((subject, observer, at))
            else:
                dead.append((subject, observer, at))

    def ask(worker: Any, *command: Any) -> Any:
        worker[1].send(command)
        if not worker[1].poll(30):
            raise RuntimeError("bessgw worker did not answer")
        return worker[1].recv()

    def total_bytes() -> int:
        return sum(ask(w, "bytes") for w in workers)

    try:
        await wait_for(lambda: all(c == n - 1 for w in workers for c in ask(w, "alive")), 120, "bessgw convergence")
        drain()
        converged_at = time.time()
        nft_loss(loss if netns else 0.0)
        await asyncio.sleep(2.0)
        idle = await measure_bytes(total_bytes, IDLE_S) / n
        start_bytes, start = total_bytes(), time.monotonic()
        spreads = []
        for trial in range(plan.updates):
            origin = random.randrange(n)
            worker = next(w for w in workers if origin in w[2])
            sent_at = ask(worker, "set", ids[origin], trial)
            others = set(ids) - {ids[origin]}

            def spread_done(t: int = trial, o: set[str] = others) -> bool:
                drain()
                return o <= set(seen.get(t, {}))

            await wait_for(spread_done, 30, "bessgw update")
            spreads.append(max(seen[trial][x] for x in others) - sent_at)
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - sent_at)))
        busy = (total_bytes() - start_bytes) / (time.monotonic() - start) / n
        gone: set[str] = set()
        detect, first_suspect, health = [], [], []
        for victim in range(survivors, n):
            worker = next(w for w in workers if w[2] == [victim])
            health.append(sorted(a for w in workers for a in ask(w, "awareness"))[-5:])
            killed_at = time.time()
            os.kill(worker[0].pid, signal.SIGKILL)
            workers.remove(worker)
            killed.append(worker)
            gone.add(ids[victim])
            detect.append(await detection(dead, ids[victim], set(ids) - gone, killed_at, "bessgw", drain))
            first_suspect.append(min((at - killed_at for subject, _, at in suspected
                                      if subject == ids[victim] and at >= killed_at), default=None))
            await asyncio.sleep(1.0)
        drain()
        row = result("bessgw", n, loss, spreads, detect, false_positives(dead, gone, converged_at), idle, busy)
        row["first_suspect_s"] = [None if t is None else round(t, 3) for t in first_suspect]
        row["worst_awareness_at_kill"] = health
        return row
    finally:
        nft_loss(0.0)
        for proc, _, _ in killed:
            proc.join(10)
        for proc, conn, _ in workers:
            try:
                conn.send(("stop",))
            except OSError:
                pass
            proc.join(10)
            if proc.is_alive():
                proc.kill()


# ---------------------------------------------------------------------------------------------- common


async def detection(events: list[tuple[str, str, float]], victim: str, observers: set[str], killed_at: float,
                    what: str, drain: Any = lambda: None) -> list[float]:
    """Per observer, how long after the kill it declared the victim dead."""
    first: dict[str, float] = {}

    def done() -> bool:
        drain()
        for subject, observer, at in events:
            if subject == victim and at >= killed_at and observer in observers:
                first.setdefault(observer, at - killed_at)
        return observers <= set(first)

    await wait_for(done, 120, f"{what} failure detection")
    return list(first.values())


def false_positives(events: list[tuple[str, str, float]], killed: set[str], converged_at: float) -> int:
    """Declarations, after convergence, that a node nobody killed is dead."""
    return sum(1 for subject, _, at in events if subject not in killed and at > converged_at)


async def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def wait_for_async(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def measure_bytes(read: Any, seconds: float) -> float:
    before, started = read(), time.monotonic()
    await asyncio.sleep(seconds)
    return (read() - before) / (time.monotonic() - started)


def result(system: str, n: int, loss: float, spreads: list[float], detect: list[list[float]], false_pos: int,
           idle: float | None, busy: float | None) -> dict[str, Any]:
    """One row. ``detect`` holds, per kill, every observer's detection time."""
    spread_med, spread_max = summary(spreads)
    kills = [(statistics.median(times), max(times)) for times in detect if times]
    detect_med = statistics.median(k[0] for k in kills) if kills else None
    detect_all_med = statistics.median(k[1] for k in kills) if kills else None
    detect_max = max(k[1] for k in kills) if kills else None
    return {"system": system, "n": n, "loss": loss, "spread_median_s": spread_med, "spread_worst_s": spread_max,
            "detect_median_s": detect_med, "detect_all_median_s": detect_all_med, "detect_worst_s": detect_max,
            "kills": [[round(a, 3), round(b, 3)] for a, b in kills], "false_positives": false_pos,
            "idle_bytes_per_s_per_node": idle, "update_bytes_per_s_per_node": busy}


_NFT_ACTIVE = {"on": False, "enabled": False}


def nft_loss(rate: float) -> None:
    """Drop ``rate`` of UDP gossip datagrams in our private namespace (no-op outside it)."""
    if not _NFT_ACTIVE["enabled"]:
        return
    subprocess.run(["nft", "delete", "table", "inet", "bench"], stderr=subprocess.DEVNULL, check=False)
    if rate > 0:
        percent = round(rate * 100)
        rules = ("add table inet bench\n"
                 "add chain inet bench out { type filter hook output priority 0; }\n"
                 f"add rule inet bench out meta l4proto udp udp dport != {STATSD_PORT} "
                 f"numgen random mod 100 < {percent} drop\n")
        subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=True)


def print_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    fields = ["spread_median_s", "spread_worst_s", "detect_median_s", "detect_all_median_s", "detect_worst_s",
              "false_positives", "idle_bytes_per_s_per_node", "update_bytes_per_s_per_node"]
    print("dead: median over kills of the median observer / median over kills of all-agree / worst kill all-agree")
    print(f"{'system':<7} {'N':>4} {'loss':>5} {'spread med/worst s':>19} {'dead med/all/worst s':>22} {'FP':>3} "
          f"{'idle B/s':>9} {'upd B/s':>9}")

    def fmt(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    for row in rows:
        print(f"{row['system']:<7} {row['n']:>4} {row['loss']:>5.2f} "
              f"{fmt(row['spread_median_s'], '.3f'):>9}/{fmt(row['spread_worst_s'], '.3f'):<9} "
              f"{fmt(row['detect_median_s'], '.2f'):>7}/{fmt(row['detect_all_median_s'], '.2f')}/"
              f"{fmt(row['detect_worst_s'], '.2f'):<7} "
              f"{row['false_positives']:>3} {fmt(row['idle_bytes_per_s_per_node'], '.0f'):>9} "
              f"{fmt(row['update_bytes_per_s_per_node'], '.0f'):>9}")
    ratios: dict[str, Any] = {}
    print("\nratios bessgw / serf (< 1: bessgw faster or leaner)")
    for row in rows:
        if row["system"] != "bessgw":
            continue
        serf = next((r for r in rows if r["system"] == "serf" and r["n"] == row["n"] and r["loss"] == row["loss"]),
                    None)
        if serf is None:
            continue
        key = f"n{row['n']}_loss{round(row['loss'] * 100)}"
        ratios[key] = {f: (row[f] / serf[f] if row[f] is not None and serf[f] else None)
                       for f in fields if f != "false_positives"}
        print(key, " ".join(f"{f}={fmt(v, '.2f')}" for f, v in ratios[key].items()))
    return ratios


async def run(netns: bool, plan: Plan) -> None:
    loop = asyncio.get_running_loop()
    statsd = Statsd()
    transport, _ = await loop.create_datagram_endpoint(lambda: statsd, local_addr=("127.0.0.1", STATSD_PORT))
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    key16 = base64.b64encode(os.urandom(16)).decode()
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir:
        for n, loss in plan.rows:
            phases = [("bessgw", lambda n=n, loss=loss: bess_phase(n, loss, plan, netns))]
            if plan.serf and shutil.which("serf") and (loss == 0 or netns):
                phases.insert(0, ("serf", lambda n=n, loss=loss: serf_phase(n, loss, plan, key16, workdir, statsd)))
            for system, phase in phases:
                try:
                    row = await phase()
                except Exception as err:  # one failed phase must not lose the others' figures
                    row = {**result(system, n, loss, [], [], -1, None, None), "error": f"{type(err).__name__}: {err}"}
                rows.append(row)
                print(f"# {system:<6} n={n} loss={loss} at {time.monotonic() - started:.0f} s: {json.dumps(row)}",
                      flush=True)
                await asyncio.sleep(3.0)  # let the previous phase's processes go before the next one starts
    transport.close()
    print()
    ratios = print_table(rows)
    how = "nftables in a private netns" if netns else "transport fault injection"
    print(f"\nbessgw: {NODES_PER_PROCESS} nodes per Python process (+ each kill victim alone); serf: one agent per "
          f"process; serf version: {serf_version()}; loss via {how}; {plan.kills} kills and {plan.updates} "
          f"updates per row")
    print(json.dumps({"bench": "gossip", "rows": rows, "ratios": ratios, "nodes_per_process": NODES_PER_PROCESS,
                      "kills": plan.kills, "updates": plan.updates, "elapsed_s": round(time.monotonic() - started, 1)}))


def serf_version() -> str:
    if not shutil.which("serf"):
        return "not installed"
    out = subprocess.run(["serf", "version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "?"


@dataclass(frozen=True)
class Plan:
    """What to run: rows of (N, loss share), kills and updates per row, whether to run Serf too."""

    rows: tuple[tuple[int, float], ...]
    kills: int
    updates: int
    serf: bool


def parse_rows(text: str) -> tuple[tuple[int, float], ...]:
    """``"100:0,50:10"`` -> ((100, 0.0), (50, 0.1)): N and loss in percent."""
    rows = []
    for part in text.split(","):
        n, _, loss = part.partition(":")
        rows.append((int(n), float(loss or 0) / 100))
    return tuple(rows)


def parse_plan(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=parse_rows, help="N:loss-percent,... (default: 10:0,50:0,100:0,50:5,50:10)")
    parser.add_argument("--quick", action="store_true", help="N = 20 at 0, 5 and 10 %% loss")
    parser.add_argument("--kills", type=int, default=KILLS, help="nodes killed one after the other per row")
    parser.add_argument("--updates", type=int, default=UPDATES, help="updates spread per row")
    parser.add_argument("--no-serf", dest="serf", action="store_false", help="bessgw only")
    args = parser.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else ROWS)
    for n, loss in rows:
        if n - args.kills < 3 or not 0 <= loss < 1:
            parser.error(f"row {n}:{loss * 100:g}: N must exceed --kills by 3 or more and loss be 0..99 %")
    return Plan(rows, args.kills, args.updates, args.serf)


def main() -> None:
    plan = parse_plan(sys.argv[1:])
    if os.environ.get(NETNS_ENV) is None and os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nft"):
        env = dict(os.environ, **{NETNS_ENV: "1"})
        os.execvpe("unshare", ["unshare", "-n", "--", sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    netns = os.environ.get(NETNS_ENV) == "1"
    if netns:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        _NFT_ACTIVE["enabled"] = True
    asyncio.run(run(netns, plan))


if __name__ == "__main__":
    main()
