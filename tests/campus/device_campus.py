"""A campus whose units are real vendor_a simulator processes, watched from outside every gateway.

Three ``bessgw run`` gateways (federation + ``[campus.coordination]``), each driving the containers of its
own ``bessgw sim vendor_a`` process. A :class:`DeviceSampler` thread reads every container's own registers
(measured P at 104, P setpoint at 200; v2 map, i32 little-endian, 0.1 kW) with its own pymodbus clients
every :data:`SAMPLE_PERIOD_S`, and, in a separate task so a slow etcd never delays the device samples,
polls the campus keys in etcd. The fault tests judge the campus from these samples only: what the devices
do, not what the gateways say they do.

:func:`network_namespace` runs a block inside a fresh network namespace (its own loopback): processes the
test starts in it, and sockets the calling thread opens, live there; the host's interfaces and firewall
are never touched.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import itertools
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from bessgw.campus.client import prefix_end
from bessgw.campus.protocol import Keys
from bessgw.campus.records import Share
from bessgw.errors import BessgwError
from tests.campus.etcd_cluster import EtcdCluster
from tests.campus.test_campus_gateways import Gateway, poll
from tests.integration.daemon_harness import GatewayProcess, bessgw_command
from tests.ports import free_tcp_port_run, free_udp_ports

#: the sampler reads every device this often (the issue asks for ≤ 100 ms)
SAMPLE_PERIOD_S = 0.05
STATE, P_MEASURED, P_SETPOINT = 101, 104, 200  # vendor_a v2 map: P is i32 little-endian words, 0.1 kW
RUNNING = 1  # register 101: 0 standby (e.g. its own watchdog stopped it), 1 running, 2 fault
#: containers per gateway (one simulator process each)
UNITS_PER_GATEWAY = 2
#: how far a sum of device readings may exceed what the devices were ever commanded together, and why:
#: each register holds a value rounded to 0.1 kW (≤ 0.05 kW off per device), and the devices of a sweep
#: are read a few ms apart, while a gateway rebalances milliwatts between its units (SOC drift) each period
SAMPLING_TOLERANCE_KW = 0.05 * 3 * UNITS_PER_GATEWAY + 0.1
#: Σ settles within this of the setpoint, below it: min_share_change_kw (1 kW) per gateway + rounding
SETTLED_KW = 3.0 + SAMPLING_TOLERANCE_KW
#: the containers' own watchdog: no heartbeat change for this long -> standby, setpoint zeroed. Shorter
#: than the earliest a dead gateway's lease can expire (TTL - keepalive interval = 2 - 0.67 s): a share
#: can only move once the dead gateway's devices have stopped by themselves
DEVICE_WATCHDOG_S = 0.8
LEASE_TTL_S = 2
ELECTION_TIMEOUT_S = 0.5

GATEWAY = """
[gateway]
id = "{gw}"
state_dir = "{state}"
log_format = "json"

[defaults]
poll_interval_s = 0.1
heartbeat_interval_s = 0.1

[control]
period_s = 0.1

[federation]
bind_host = "127.0.0.1"
bind_port = {gossip_port}
seeds = ["127.0.0.1:{seed_port}"]
keys = ["{key}"]
probe_interval_s = 0.5
probe_timeout_s = 0.2
push_pull_interval_s = 1.0

[campus.coordination]
endpoints = [{endpoints}]
key_prefix = "{prefix}"
lease_ttl_s = {ttl}
election_timeout_s = {election}
request_timeout_s = 0.5
allocation_interval_s = 0.2
min_share_change_kw = 1.0
"""

UNIT = """
[[units]]
id = "{unit}"
driver = "vendor_a"
[units.modbus]
host = "127.0.0.1"
port = {port}
unit_id = 1
"""




def decode_kw(low: int, high: int) -> float:
    raw = (high << 16) | low
    return (raw - (1 << 32) if raw & 0x80000000 else raw) * 0.1


@dataclass(frozen=True)
class DeviceSample:
    """One sweep over every device: measured P and P setpoint (kW) by device id, from the devices."""

    at_s: float  #: monotonic time the sweep began (no read of it started earlier)
    done_s: float  #: monotonic time every read of it had been answered
    measured: dict[str, float]
    commanded: dict[str, float]
    running: dict[str, bool]

    def total(self, devices: list[str] | None = None) -> float:
        return sum(p for d, p in self.measured.items() if devices is None or d in devices)

    def commanded_total(self, devices: list[str] | None = None) -> float:
        return sum(p for d, p in self.commanded.items() if devices is None or d in devices)


@dataclass(frozen=True)
class EtcdSample:
    """One linearizable read of the campus prefix: presence and share of every gateway."""

    sent_s: float
    revision: int
    present: frozenset[str]
    shares: dict[str, tuple[float, int]]  # gateway -> (p_kw, mod revision)


@dataclass
class DeviceSampler:
    """Samples every device (and etcd) from a thread of its own until :meth:`stop` (module docstring)."""

    devices: dict[str, int]  # device id -> TCP port
    etcd_endpoints: list[str]
    keys: Keys
    samples: list[DeviceSample] = field(default_factory=list)
    etcd: list[EtcdSample] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True, name="sampler")
        self._thread.start()
        poll(lambda: len(self.samples) > 2 and len(self.etcd) > 2, 15, "the sampler's first device and etcd reads")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def since(self, at_s: float) -> list[DeviceSample]:
        return [s for s in self.samples if s.at_s >= at_s]

    def latest(self) -> DeviceSample:
        return self.samples[-1]

    def max_gap_s(self, since_s: float = 0.0) -> float:
        times = [s.at_s for s in self.samples if s.at_s >= since_s]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def _run(self) -> None:
        clients = {d: AsyncModbusTcpClient("127.0.0.1", port=p, timeout=1, retries=0) for d, p in self.devices.items()}
        for client in clients.values():
            await client.connect()
        etcd_task = asyncio.create_task(self._etcd_loop())
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                replies = [r for r in await asyncio.gather(*(self._read(d, c) for d, c in clients.items()))
                           if r is not None]
                if len(replies) == len(clients):
                    self.samples.append(DeviceSample(
                        started, time.monotonic(), {d: m for d, m, _, _ in replies},
                        {d: c for d, _, c, _ in replies}, {d: r for d, _, _, r in replies}))
                await asyncio.sleep(max(0.0, started + SAMPLE_PERIOD_S - time.monotonic()))
        finally:
            etcd_task.cancel()
            await asyncio.gather(etcd_task, return_exceptions=True)
            for client in clients.values():
                client.close()

    #: registers read per sample, from STATE (a subclass that inspects more registers reads further)
    READ_COUNT = P_SETPOINT + 2 - STATE

    def _inspect(self, device: str, words: list[int]) -> None:
        """Hook for a subclass: every sample's registers of ``device`` (``words[0]`` is STATE)."""

    async def _read(self, device: str, client: AsyncModbusTcpClient) -> tuple[str, float, float, bool] | None:
        try:
            reply = await client.read_holding_registers(STATE, count=self.READ_COUNT, device_id=1)
        except Exception as err:  # a read that fails is recorded (the test fails on it), never a crash
            self.read_errors.append(f"{device}: {err}")
            if not client.connected:
                await client.connect()
            return None
        if reply.isError():
            self.read_errors.append(f"{device}: {reply}")
            return None
        words = list(reply.registers)
        self._inspect(device, words)
        measured, setpoint = P_MEASURED - STATE, P_SETPOINT - STATE
        return (device, decode_kw(words[measured], words[measured + 1]),
                decode_kw(words[setpoint], words[setpoint + 1]), words[0] == RUNNING)

    async def _etcd_loop(self) -> None:
        """Poll the prefix through etcd's JSON gateway: a plain socket of this thread (gRPC's own threads may
        live in another network namespace than the test's, once gRPC was used outside it)."""
        endpoint = 0
        while True:
            sent = time.monotonic()
            try:
                reply = await asyncio.to_thread(self._range, self.etcd_endpoints[endpoint])
            except (OSError, ValueError):
                endpoint = (endpoint + 1) % len(self.etcd_endpoints)
                await asyncio.sleep(SAMPLE_PERIOD_S)
                continue
            present, shares = set(), {}
            for kv in reply.get("kvs", []):
                kind, gateway = self.keys.parse(base64.b64decode(kv["key"]).decode())
                if kind == "gateways":
                    present.add(gateway)
                elif kind == "shares":
                    with contextlib.suppress(BessgwError, ValueError):
                        shares[gateway] = (Share.decode(base64.b64decode(kv.get("value", ""))).p_kw,
                                           int(kv["mod_revision"]))
            self.etcd.append(EtcdSample(sent, int(reply["header"]["revision"]), frozenset(present), shares))
            await asyncio.sleep(max(0.0, sent + SAMPLE_PERIOD_S - time.monotonic()))

    def _range(self, endpoint: str) -> dict:
        prefix = self.keys.prefix.encode()
        body = json.dumps({"key": base64.b64encode(prefix).decode(),
                           "range_end": base64.b64encode(prefix_end(prefix)).decode()}).encode()
        request = urllib.request.Request(f"http://{endpoint}/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=0.3) as response:
            return json.loads(response.read())


@dataclass
class DeviceCampus:
    """Three gateways, three simulators, one sampler (module docstring)."""

    gateways: list[Gateway]
    simulators: list[subprocess.Popen]
    devices_of: dict[str, list[str]]  # gateway id -> its device ids
    sampler: DeviceSampler
    env: dict[str, str]
    keys: Keys
    cluster: EtcdCluster

    def gateway(self, gateway_id: str) -> Gateway:
        return next(gw for gw in self.gateways if gw.id == gateway_id)

    def cli(self, *args: str, gateway: Gateway | None = None) -> subprocess.CompletedProcess:
        config = (gateway or self.gateways[0]).config
        return subprocess.run([*bessgw_command(), *args, "--config", str(config)], env=self.env,
                              capture_output=True, text=True, timeout=30)

    def setpoint(self, p_kw: float, command_id: str, gateway: Gateway | None = None) -> None:
        result = self.cli("campus", "setpoint", "--p-kw", str(p_kw), "--id", command_id, gateway=gateway)
        assert result.returncode == 0, result.stderr

    def wait_total(self, p_kw: float, timeout_s: float, what: str, devices: list[str] | None = None) -> None:
        """Wait until the devices' own Σ measured P is within :data:`SETTLED_KW` below ``p_kw``'s magnitude."""
        def settled() -> bool:
            total = self.sampler.latest().total(devices)
            return abs(total - p_kw) < SETTLED_KW
        poll(settled, timeout_s, f"{what} (Σ now {self.sampler.latest().total(devices):.1f} kW)")

    def over_delivery(self, bound_kw: float, since_s: float, *, low_kw: float = 0.0) -> list[tuple[float, float, str]]:
        """Samples since ``since_s`` whose Σ measured or Σ commanded leaves ``[low_kw, bound_kw]`` by more
        than the tolerance: ``(time, Σ, which)``."""
        bad = []
        for sample in self.sampler.since(since_s):
            for which, total in (("measured", sample.total()), ("commanded", sample.commanded_total())):
                if total > bound_kw + SAMPLING_TOLERANCE_KW or total < low_kw - SAMPLING_TOLERANCE_KW:
                    bad.append((round(sample.at_s - since_s, 3), round(total, 2), which))
        return bad


    def around(self, at_s: float, since_s: float, window_s: float = 0.4) -> str:
        """The samples within ``window_s`` of ``since_s + at_s``, per gateway (for failure messages)."""
        lines = []
        for sample in self.sampler.samples:
            if abs(sample.at_s - since_s - at_s) <= window_s:
                per_gateway = "  ".join(f"{g} {sample.total(ds):7.1f}/{sample.commanded_total(ds):7.1f}"
                                        for g, ds in self.devices_of.items())
                lines.append(f"t={sample.at_s - since_s:7.3f} Σ {sample.total():7.1f}/{sample.commanded_total():7.1f}"
                             f"  {per_gateway}  (measured/commanded kW)")
        for read in self.sampler.etcd:
            if abs(read.sent_s - since_s - at_s) <= window_s:
                lines.append(f"t={read.sent_s - since_s:7.3f} etcd rev {read.revision} present {sorted(read.present)} "
                             f"shares {({g: round(p, 1) for g, (p, _) in sorted(read.shares.items())})}")
        return "\n".join(sorted(lines))

    def assert_never_over(self, bound_kw: float, since_s: float, *, low_kw: float = 0.0) -> None:
        bad = self.over_delivery(bound_kw, since_s, low_kw=low_kw)
        assert not bad, f"{len(bad)} samples out of [{low_kw}, {bound_kw}] kW: {bad[:5]}\n" + self.around(
            bad[0][0], since_s)


def start_device_campus(tmp: Path, env: dict[str, str], cluster: EtcdCluster, *,
                        socs: tuple[float, ...] = (50.0, 60.0, 70.0),
                        endpoints_of: Callable[[str], list[str]] | None = None) -> DeviceCampus:
    """Start the simulators, then the gateways; return once every gateway is in etcd with an allocator and
    every unit is in every gateway's campus view. The caller stops it with :func:`stop_device_campus`."""
    env = dict(env, BESSGW_PLUGINS="bessgw_vendor_a")
    prefix = f"/t-{os.urandom(4).hex()}/"
    keys = Keys(prefix)
    key = base64.b64encode(os.urandom(32)).decode()
    gossip_ports = free_udp_ports(len(socs))
    simulators: list[subprocess.Popen] = []
    gateways: list[Gateway] = []
    devices: dict[str, int] = {}
    devices_of: dict[str, list[str]] = {}
    campus: DeviceCampus | None = None
    try:
        for index, soc in enumerate(socs):
            gw = f"gw{index + 1}"
            port = free_tcp_port_run(UNITS_PER_GATEWAY)
            sim = subprocess.Popen(
                [*bessgw_command(), "sim", "vendor_a", "--port", str(port), "--count", str(UNITS_PER_GATEWAY),
                 "--watchdog-s", str(DEVICE_WATCHDOG_S), "--soc-pct", str(soc), "--energy-kwh", "50000"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            simulators.append(sim)
            assert sim.stdout is not None and sim.stdout.readline().strip() == "ready"
            units = ""
            devices_of[gw] = []
            for offset in range(UNITS_PER_GATEWAY):
                unit = f"{gw}-a{offset + 1}"
                devices[unit] = port + offset
                devices_of[gw].append(unit)
                units += UNIT.format(unit=unit, port=port + offset)
            state = tmp / gw
            state.mkdir(parents=True)
            config = tmp / f"{gw}.toml"
            endpoints = endpoints_of(gw) if endpoints_of is not None else cluster.endpoints
            config.write_text(GATEWAY.format(
                gw=gw, state=state, gossip_port=gossip_ports[index], seed_port=gossip_ports[0], key=key,
                endpoints=", ".join(f'"{e}"' for e in endpoints), prefix=prefix, ttl=LEASE_TTL_S,
                election=ELECTION_TIMEOUT_S) + units)
            gateways.append(Gateway(gw, config, state, GatewayProcess(config, env, state)))
        for gateway in gateways:
            gateway.process.wait_notify("READY", timeout_s=60)
        sampler = DeviceSampler(devices, cluster.endpoints, keys)
        campus = DeviceCampus(gateways, simulators, devices_of, sampler, env, keys, cluster)
        units_total = len(devices)

        def ready() -> bool:
            status = gateways[0].ask("campus_status")["campus"]
            views = [len(gw.ask("view")["view"]["units"]) for gw in gateways]
            return (status["allocator"] is not None and len(status["gateways"]) == len(gateways)
                    and views == [units_total] * len(gateways))
        poll(ready, 60, "every gateway in etcd, an allocator, and every unit in every campus view")
        sampler.start()
        return campus
    except BaseException:
        stop_device_campus(campus, gateways, simulators)
        raise


def stop_device_campus(campus: DeviceCampus | None, gateways: list[Gateway] | None = None,
                       simulators: list[subprocess.Popen] | None = None) -> None:
    """Stop the sampler, SIGCONT + kill every gateway, stop every simulator (bounded)."""
    if campus is not None:
        campus.sampler.stop()
        gateways, simulators = campus.gateways, campus.simulators
    for gateway in gateways or []:
        with contextlib.suppress(ProcessLookupError):
            gateway.process.signal(signal.SIGCONT)
        gateway.process.stop()
    for sim in simulators or []:
        if sim.poll() is None:
            sim.terminate()
    for sim in simulators or []:
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(10)


# ----------------------------------------------------------------------------- network namespaces

_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def network_namespace_available() -> str | None:
    """``None`` if this process may create network namespaces and nftables tables in them, else why not."""
    name = f"bessgw-probe-{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"`ip netns add` cannot run: {err}"
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        nft = subprocess.run(["ip", "netns", "exec", name, "nft", "add", "table", "inet", "probe"],
                             capture_output=True, text=True, timeout=10)
        if nft.returncode != 0:
            return f"nft inside a network namespace failed: {nft.stderr.strip()}"
        return None
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nft cannot run: {err}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@contextlib.contextmanager
def network_namespace(name: str) -> Iterator[str]:
    """Create netns ``name`` with its loopback up and move the *calling thread* into it for the block.

    Processes the block starts, threads it creates and sockets it opens live in the namespace; on exit the
    thread returns to its original namespace and the namespace is deleted (the caller stops its processes
    first). Only ``ip netns`` and ``nft`` inside the namespace are used: the host is never touched.
    """
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield name
            finally:
                _setns(original)
        finally:
            os.close(target)
            os.close(original)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def nft(namespace: str, script: str) -> None:
    """Apply an nftables script inside ``namespace`` (never on the host)."""
    subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=script, text=True, check=True,
                   capture_output=True, timeout=10)
