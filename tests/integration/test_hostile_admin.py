"""The admin socket under connection abuse from a local user: floods of idle connections, half-closed
sockets, unterminated lines, requests whose answers are never read. The gateway stays healthy (``bessgw
status`` answers during and after), holds a bounded number of descriptors, and logs a counted drop at most.

A real gateway subprocess with a lowered descriptor limit (512, as a small systemd ``LimitNOFILE``), so that
an unbounded admin socket would run it out of descriptors within the test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bessgw.daemon.admin import MAX_PENDING_CONNECTIONS
from tests.integration.daemon_harness import GatewayProcess, bessgw_command, wait_admin_socket

pytestmark = [pytest.mark.daemon, pytest.mark.chaos]

NOFILE = 512

CONFIG = """
[gateway]
id = "gw-hostile-admin"
state_dir = "{state}"
log_format = "json"

[defaults]
poll_interval_s = 0.05

[control]
period_s = 0.05

[[units]]
id = "m1"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 60
"""

#: the gateway, started with RLIMIT_NOFILE lowered to NOFILE
LIMITED = [sys.executable, "-c",
           "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
           f"({NOFILE}, {NOFILE})); sys.argv = ['bessgw', *sys.argv[1:]]; "
           "runpy.run_module('bessgw.cli', run_name='__main__', alter_sys=True)"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plugin_path):
    tmp_path = tmp_path_factory.mktemp("hostile-admin")
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"), encoding="utf-8")
    env = dict(os.environ, BESSGW_PLUGINS="bessgw_example",
               PYTHONPATH=os.pathsep.join([*plugin_path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("NOTIFY_SOCKET", None)
    process = GatewayProcess(config, env, tmp_path, command=LIMITED)
    process.wait_notify("READY")
    process.wait_log(lambda e: e.get("event") == "control_ready")
    wait_admin_socket(tmp_path / "state")
    process.config = config
    process.env = env
    process.socket = tmp_path / "state" / "admin.sock"
    yield process
    process.stop()


def status(gateway) -> dict:
    result = subprocess.run([*bessgw_command(), "status", "--config", str(gateway.config), "--json"],
                            env=gateway.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def connect(path: Path, deadline_s: float = 10.0) -> socket.socket:
    """Connect, waiting while the listen backlog is full (a flood outruns accept)."""
    deadline = time.monotonic() + deadline_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            assert time.monotonic() < deadline, "the admin socket accepted nothing for 10 s"
            time.sleep(0.005)
            continue
        sock.setblocking(True)
        return sock


def closed_by_gateway(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def no_errors(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e.get("level") in ("error", "critical") or "exception" in e]


def test_a_flood_of_idle_connections_is_bounded_and_status_answers_during_and_after(gateway) -> None:
    """3000 idle connections each held a descriptor for 5 s: with 512 descriptors the gateway ran out
    (EMFILE for every accept, its journal and device links), logging thousands of asyncio error lines."""
    before = len(gateway.log_lines)
    flood = [connect(gateway.socket) for _ in range(3000)]
    try:
        assert status(gateway)["gateway"] == "gw-hostile-admin"  # during the flood
        deadline = time.monotonic() + 10.0
        while sum(not closed_by_gateway(sock) for sock in flood) > MAX_PENDING_CONNECTIONS:
            assert time.monotonic() < deadline, "the gateway still holds more idle connections than its bound"
            time.sleep(0.05)
        # the journal still opens and writes: a setpoint is accepted, and released
        result = subprocess.run([*bessgw_command(), "setpoint", "--config", str(gateway.config), "--p-kw", "10",
                                 "--id", "during-flood", "--json"], env=gateway.env, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
    finally:
        for sock in flood:
            sock.close()
    assert status(gateway)["gateway"] == "gw-hostile-admin"  # after
    logged = gateway.log_lines[before:]
    assert not no_errors(logged), no_errors(logged)[:3]
    drops = [e for e in logged if e.get("event") == "admin_connections_dropped"]
    assert len(drops) == 1 and drops[0]["dropped"] >= 1, drops  # one counted line per interval
    release = subprocess.run([*bessgw_command(), "release", "--config", str(gateway.config)], env=gateway.env,
                             capture_output=True, text=True, timeout=30)
    assert release.returncode == 0, release.stderr


def read_reply(sock: socket.socket) -> dict:
    sock.settimeout(10.0)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data)


def test_half_closed_and_unterminated_requests_get_an_answer(gateway) -> None:
    before = len(gateway.log_lines)
    with connect(gateway.socket) as sock:  # request, then our side shut for writing: still answered
        sock.sendall(b'{"cmd":"status"}\n')
        sock.shutdown(socket.SHUT_WR)
        assert read_reply(sock)["ok"] is True
    with connect(gateway.socket) as sock:  # no newline before the end of the stream: one clear error
        sock.sendall(b'{"cmd":"stat')
        sock.shutdown(socket.SHUT_WR)
        reply = read_reply(sock)
        assert reply["ok"] is False and "not one JSON object" in reply["error"], reply
    with connect(gateway.socket) as sock:  # a length-prefix client: 1 GB announced, no line: refused at the bound
        sock.sendall((1 << 30).to_bytes(4, "big") + b"x" * 20_000)
        reply = read_reply(sock)
        assert reply["ok"] is False and "larger than" in reply["error"], reply
    # requests whose answers are never read, and connections closed at once
    for _ in range(200):
        sock = connect(gateway.socket)
        sock.sendall(b'{"cmd":"status"}\n')
        sock.close()
    assert status(gateway)["gateway"] == "gw-hostile-admin"
    logged = gateway.log_lines[before:]
    assert not no_errors(logged), no_errors(logged)[:3]
