"""A real three-member etcd cluster on loopback for the campus tests (Debian's etcd-server package).

Free ports, a temporary data directory per member, a bounded wait for health, and helpers to kill,
restart and find the leader. Members are plain subprocesses of the test; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_tcp_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    base: Path
    size: int = 3
    heartbeat_ms: int = 100
    election_ms: int = 1000
    #: more loopback addresses every member also serves clients on (same port), e.g. ``("127.0.0.2",)`` so a
    #: test inside its own network namespace can cut one client off by destination address
    extra_client_hosts: tuple[str, ...] = ()
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        for index in range(self.size):
            name = f"m{index}"
            self.members.append(
                Member(name, free_tcp_port(), free_tcp_port(), self.base / name, self.base / f"{name}.log"))

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    def _command(self, member: Member, state: str) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        listen = ",".join([f"http://{member.endpoint}",
                           *(f"http://{host}:{member.client_port}" for host in self.extra_client_hosts)])
        return [
            ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
            "--listen-client-urls", listen, "--advertise-client-urls", f"http://{member.endpoint}",
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", state,
            "--initial-cluster-token", f"bessgw-test-{self.base.name}",
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--log-level", "warn", "--logger", "zap",
        ]

    def start(self, timeout_s: float = 30.0) -> None:
        for member in self.members:
            self.start_member(member, "new")
        self.wait_healthy(timeout_s)

    def start_member(self, member: Member, state: str = "existing") -> None:
        log = member.log.open("ab")
        member.process = subprocess.Popen(self._command(member, state), stdout=log, stderr=log,
                                          env={**os.environ, "ETCD_UNSUPPORTED_ARCH": ""})
        log.close()

    def kill(self, member: Member) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.send_signal(signal.SIGKILL)
            member.process.wait(timeout=10)

    def restart(self, member: Member, timeout_s: float = 30.0) -> None:
        self.kill(member)
        self.start_member(member, "existing")
        self.wait_healthy(timeout_s, [member])

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
        for member in self.members:
            if member.process is not None:
                try:
                    member.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    member.process.kill()
                    member.process.wait(timeout=10)

    def status(self, member: Member) -> dict | None:
        """The member's ``/v3/maintenance/status`` via the JSON gateway (``None`` if it does not answer)."""
        request = urllib.request.Request(f"http://{member.endpoint}/v3/maintenance/status", data=b"{}",
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def healthy(self, member: Member) -> bool:
        try:
            with urllib.request.urlopen(f"http://{member.endpoint}/health", timeout=1.0) as response:
                return json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout_s: float, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(members or self.members)
        while waiting:
            waiting = [m for m in waiting if not self.healthy(m)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                logs = {m.name: m.log.read_text(errors="replace")[-2000:] for m in waiting if m.log.exists()}
                raise TimeoutError(f"etcd members not healthy after {timeout_s} s: {logs}")
            time.sleep(0.1)

    def leader(self, timeout_s: float = 10.0) -> Member:
        """The member that is leader now (bounded wait for one to be elected)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for member in self.members:
                if member.process is None or member.process.poll() is not None:
                    continue
                status = self.status(member)
                if status and status.get("leader") and status["leader"] == status.get("header", {}).get("member_id"):
                    return member
            time.sleep(0.05)
        raise TimeoutError("no etcd leader")
