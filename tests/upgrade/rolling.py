"""A device campus whose gateways run either the previous release or the working tree, and what watches it.

Three vendor_a simulator processes (the devices, never restarted) and three ``bessgw run`` gateways
(federation + ``[campus.coordination]``) on the configs of :mod:`tests.campus.device_campus`, but with
the containers' own watchdog at the simulator's default (the demo's units). Two samplers run in threads
of their own:

- :class:`HeartbeatSampler` reads every device's registers every 50 ms (state, measured P, warnings,
  P setpoint, heartbeat): the time the *device* saw its gateway heartbeat change is what tells how long
  a unit went uncommanded, and the device's own ``heartbeat_lost`` warning bit is its watchdog's verdict;
- :class:`MembershipSampler` asks every gateway that is up for its member list and campus view over its
  admin socket, with the client of the gateway's own release.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bessgw import __version__
from bessgw.campus.protocol import Keys
from bessgw.daemon.admin import request, socket_path
from tests.campus.device_campus import (
    ELECTION_TIMEOUT_S,
    GATEWAY,
    LEASE_TTL_S,
    STATE,
    UNIT,
    DeviceSample,
    DeviceSampler,
)
from tests.campus.etcd_cluster import EtcdCluster
from tests.campus.test_campus_gateways import poll
from tests.integration.daemon_harness import GatewayProcess, bessgw_command
from tests.ports import free_tcp_port_run, free_udp_ports
from tests.upgrade.release import REPO_ROOT, Release

#: the demo's vendor_a containers: the simulator's default watchdog (``bessgw sim vendor_a --watchdog-s``)
DEVICE_WATCHDOG_S = 5.0
UNITS_PER_GATEWAY = 2
HEARTBEAT, WARNINGS = 206, 118  # vendor_a v2 map: gateway heartbeat (rw u16), warning bitfield (u32, low word first)
#: membership/view samples per gateway: every this often
MEMBERSHIP_PERIOD_S = 0.1


def _heartbeat_lost_bit() -> int:
    from bessgw_vendor_a.registermap import bit

    return int(bit("warnings", "heartbeat_lost"))


class HeartbeatSampler(DeviceSampler):
    """:class:`DeviceSampler` that also reads each device's heartbeat register and warning bits."""

    READ_COUNT = HEARTBEAT + 1 - STATE  #: through the heartbeat register (warnings are in between)

    def __init__(self, devices: dict[str, int], etcd_endpoints: list[str], keys: Keys) -> None:
        super().__init__(devices, etcd_endpoints, keys)
        self.heartbeat_changes: dict[str, list[float]] = {d: [] for d in devices}  #: monotonic times seen changed
        self.heartbeat_lost: list[tuple[float, str]] = []  #: (time, device) the device's watchdog had tripped
        self._last_heartbeat: dict[str, int] = {}
        self._lost_bit = _heartbeat_lost_bit()

    def _inspect(self, device: str, words: list[int]) -> None:
        now = time.monotonic()
        heartbeat = words[HEARTBEAT - STATE]
        if self._last_heartbeat.get(device, heartbeat) != heartbeat:
            self.heartbeat_changes[device].append(now)
        self._last_heartbeat[device] = heartbeat
        if words[WARNINGS - STATE] & self._lost_bit:
            self.heartbeat_lost.append((now, device))

    def silence_around(self, device: str, at_s: float) -> tuple[float, float]:
        """(last heartbeat change seen before ``at_s``, first one after it) of ``device``."""
        changes = self.heartbeat_changes[device]
        before = max((t for t in changes if t <= at_s), default=float("nan"))
        after = min((t for t in changes if t > at_s), default=float("nan"))
        return before, after

    def longest_silence_s(self, device: str, since_s: float) -> float:
        changes = [t for t in self.heartbeat_changes[device] if t >= since_s]
        return max((b - a for a, b in itertools.pairwise(changes)), default=float("inf"))


def _request_v0(path: Path, payload: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """The admin socket request as released: one JSON object per line each way, no version field."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@dataclass
class Gateway:
    """One gateway of the campus and the release it runs now (``None``: the working tree)."""

    id: str
    config: Path
    state: Path
    devices: list[str]
    release: Release | None
    process: GatewayProcess | None = None
    #: every process this gateway ran, with its version (their logs stay readable after they ended)
    processes: list[tuple[str, GatewayProcess]] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.release.version if self.release is not None else __version__

    def command(self) -> list[str]:
        return self.release.bessgw if self.release is not None else bessgw_command()

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return self.release.env(base) if self.release is not None else base

    def cwd(self) -> Path:
        return self.release.cwd if self.release is not None else REPO_ROOT

    def start(self, base_env: dict[str, str]) -> GatewayProcess:
        self.process = GatewayProcess(self.config, self.env(base_env), self.state, command=self.command(),
                                      cwd=self.cwd())
        self.processes.append((self.version, self.process))
        return self.process

    def log_problems(self) -> dict[str, int]:
        """``"<version> <level> <event>" -> count`` of every warning and error any of its processes logged."""
        counts: dict[str, int] = {}
        for version, process in self.processes:
            for entry in list(process.log_lines):
                if entry.get("level") in ("warning", "error", "critical") or entry.get("event") == "raw":
                    key = f"{version} {entry.get('level', '?')} {entry.get('event')}"
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def ask(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """An admin request with the client of the release this gateway runs."""
        payload = {"cmd": cmd, **fields}
        reply = request(socket_path(self.state), payload) if self.release is None else _request_v0(
            socket_path(self.state), payload)
        assert reply.get("ok"), f"{self.id} ({self.version}) {cmd}: {reply}"
        return reply

    def cli(self, base_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
        """The ``bessgw`` CLI of this gateway's release against this gateway."""
        return subprocess.run([*self.command(), *args, "--config", str(self.config)], env=self.env(base_env),
                              cwd=self.cwd(), capture_output=True, text=True, timeout=60)


@dataclass(frozen=True)
class MembershipSample:
    at_s: float
    observer: str
    statuses: dict[str, str]  #: gateway id -> alive / suspect / dead / left
    units: frozenset[tuple[str, str]]  #: (gateway id, unit id) in the observer's campus view


@dataclass
class MembershipSampler:
    """Samples every gateway not in :attr:`down` every :data:`MEMBERSHIP_PERIOD_S`, from a thread."""

    gateways: list[Gateway]
    samples: list[MembershipSample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  #: gateways being restarted: not asked, not required
    #: (gateway id, start, end) monotonic windows during which a gateway was down
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="membership")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    @contextlib.contextmanager
    def restarting(self, gateway_id: str) -> Iterator[None]:
        """While the block runs, ``gateway_id`` is down: neither asked nor required in others' samples."""
        with self.lock:
            self.down.add(gateway_id)
            begin = time.monotonic()
        try:
            yield
        finally:
            with self.lock:
                self.down.discard(gateway_id)
                self.windows.append((gateway_id, begin, time.monotonic()))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for gateway in self.gateways:
                with self.lock:
                    if gateway.id in self.down:
                        continue
                    at = time.monotonic()
                try:
                    members = gateway.ask("members")["members"]
                    view = gateway.ask("view")["view"]["units"]
                except (OSError, ValueError, AssertionError) as err:
                    with self.lock:
                        if gateway.id not in self.down:
                            self.errors.append(f"{gateway.id} at {at:.3f}: {type(err).__name__}: {err}")
                    continue
                self.samples.append(MembershipSample(
                    at, gateway.id, {m["gateway_id"]: m["status"] for m in members},
                    frozenset((u["gateway_id"], u["summary"]["unit_id"]) for u in view)))
            self._stop.wait(max(0.0, started + MEMBERSHIP_PERIOD_S - time.monotonic()))

    def was_down(self, gateway_id: str, at_s: float) -> bool:
        return gateway_id in self.down or any(g == gateway_id and a <= at_s <= b for g, a, b in self.windows)


@dataclass
class RollingCampus:
    gateways: list[Gateway]
    simulators: list[subprocess.Popen]
    sampler: HeartbeatSampler
    membership: MembershipSampler
    env: dict[str, str]
    keys: Keys

    @property
    def devices_of(self) -> dict[str, list[str]]:
        return {gw.id: gw.devices for gw in self.gateways}

    def gateway(self, gateway_id: str) -> Gateway:
        return next(gw for gw in self.gateways if gw.id == gateway_id)

    def latest(self) -> DeviceSample:
        return self.sampler.latest()


#: every gateway joins through the *other* gateways: a restarted gateway rejoins only through its seeds
#: (its peers do not call back a member that left), so a gateway whose only seed is itself stays alone
_SEEDS = 'seeds = ["127.0.0.1:{seed_port}"]'
assert _SEEDS in GATEWAY
GATEWAY_CONFIG = GATEWAY.replace(_SEEDS, "seeds = [{seeds}]")


def write_campus(tmp: Path, cluster: EtcdCluster, env: dict[str, str], release: Release,
                 count: int = 3) -> tuple[list[Gateway], list[subprocess.Popen], dict[str, int], Keys]:
    """Start ``count`` simulators and write one gateway config each (the gateways are not started)."""
    prefix = f"/t-{os.urandom(4).hex()}/"
    key = base64.b64encode(os.urandom(32)).decode()
    gossip_ports = free_udp_ports(count)
    gateways: list[Gateway] = []
    simulators: list[subprocess.Popen] = []
    devices: dict[str, int] = {}
    try:
        for index in range(count):
            gw = f"gw{index + 1}"
            port = free_tcp_port_run(UNITS_PER_GATEWAY)
            sim = subprocess.Popen(
                [*bessgw_command(), "sim", "vendor_a", "--port", str(port), "--count", str(UNITS_PER_GATEWAY),
                 "--watchdog-s", str(DEVICE_WATCHDOG_S), "--soc-pct", str(50.0 + 10 * index),
                 "--energy-kwh", "50000"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            simulators.append(sim)
            assert sim.stdout is not None and sim.stdout.readline().strip() == "ready"
            units, ids = "", []
            for offset in range(UNITS_PER_GATEWAY):
                unit = f"{gw}-a{offset + 1}"
                devices[unit] = port + offset
                ids.append(unit)
                units += UNIT.format(unit=unit, port=port + offset)
            state = tmp / gw
            state.mkdir(parents=True)
            config = tmp / f"{gw}.toml"
            seeds = ", ".join(f'"127.0.0.1:{p}"' for i, p in enumerate(gossip_ports) if i != index)
            config.write_text(GATEWAY_CONFIG.format(
                gw=gw, state=state, gossip_port=gossip_ports[index], seeds=seeds, key=key,
                endpoints=", ".join(f'"{e}"' for e in cluster.endpoints), prefix=prefix, ttl=LEASE_TTL_S,
                election=ELECTION_TIMEOUT_S) + units)
            gateways.append(Gateway(gw, config, state, ids, release))
    except BaseException:
        stop_simulators(simulators)
        raise
    return gateways, simulators, devices, Keys(prefix)


def stop_simulators(simulators: list[subprocess.Popen]) -> None:
    for sim in simulators:
        if sim.poll() is None:
            sim.terminate()
    for sim in simulators:
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(10)


def stop_campus(gateways: list[Gateway], simulators: list[subprocess.Popen]) -> None:
    for gateway in gateways:
        if gateway.process is not None:
            with contextlib.suppress(ProcessLookupError):
                gateway.process.signal(signal.SIGCONT)
            gateway.process.stop()
    stop_simulators(simulators)


def campus_whole(campus: RollingCampus, *, shares: bool = True) -> bool:
    """Every gateway sees every gateway alive and every unit; etcd has every gateway and an allocator, and
    (with ``shares``) every gateway has applied its share."""
    ids = {gw.id for gw in campus.gateways}
    units = {(gw.id, d) for gw in campus.gateways for d in gw.devices}
    for gateway in campus.gateways:
        statuses = {m["gateway_id"]: m["status"] for m in gateway.ask("members")["members"]}
        if set(statuses) != ids or set(statuses.values()) != {"alive"}:
            return False
        view = {(u["gateway_id"], u["summary"]["unit_id"]) for u in gateway.ask("view")["view"]["units"]}
        if view != units:
            return False
    status = campus.gateways[0].ask("campus_status")["campus"]
    rows = {row["gateway_id"]: row for row in status["gateways"]}
    if status["allocator"] is None or set(rows) != ids:
        return False
    return not shares or all(row["share_revision"] > 0 and row["applied_revision"] >= row["share_revision"]
                             for row in rows.values())


def wait_whole(campus: RollingCampus, timeout_s: float, what: str, *, shares: bool = True) -> None:
    poll(lambda: campus_whole(campus, shares=shares), timeout_s, what)


def wait_for(missing: Callable[[], str | None], timeout_s: float, what: str) -> None:
    """Check every 50 ms until ``missing()`` returns ``None``; fail after ``timeout_s`` with its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        reason = missing()
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {reason}")
        time.sleep(0.05)
