"""Start a real ``bessgw run`` subprocess with a real NOTIFY_SOCKET and wait on what it says."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bessgw.testing import wait_until_sync


def bessgw_command() -> list[str]:
    return [sys.executable, "-m", "bessgw.cli"]




def wait_admin_socket(state_dir: Path, timeout_s: float = 10.0) -> None:
    """Wait (bounded) until the gateway's admin socket exists: the admin service starts beside READY."""
    wait_until_sync(lambda: (state_dir / "admin.sock").exists(), timeout_s, what="the admin socket")


def gateway_status(config: Path, env: dict[str, str]) -> dict:
    """``bessgw status --json`` of the running gateway whose config is ``config``."""
    result = subprocess.run([*bessgw_command(), "status", "--config", str(config), "--json"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class GatewayProcess:
    """A gateway subprocess plus the systemd side of sd_notify (a datagram socket we read)."""

    def __init__(self, config: Path, env: dict[str, str], tmp_path: Path, *,
                 command: list[str] | None = None, cwd: Path | None = None) -> None:
        """``command`` runs another bessgw than the working tree's (e.g. a previous release's), from ``cwd``."""
        self.notify_path = tmp_path / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        env = dict(env, NOTIFY_SOCKET=str(self.notify_path), WATCHDOG_USEC="2000000")
        self.messages: list[dict[str, str]] = []
        self.log_lines: list[dict] = []
        self._lock = threading.Condition()
        self.proc = subprocess.Popen(
            [*(command or bessgw_command()), "run", "--config", str(config)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd,
        )
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_logs(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the gateway logs JSON lines on stdout (journald takes stdout)
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"event": "raw", "line": line.rstrip()}
            with self._lock:
                self.log_lines.append(entry)
                self._lock.notify_all()

    def wait_log(self, predicate, timeout_s: float = 10.0) -> dict:
        """The first log entry satisfying ``predicate``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._lock:
            while True:
                for entry in self.log_lines[seen:]:
                    if predicate(entry):
                        return entry
                seen = len(self.log_lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching log line within {timeout_s} s; got {self.log_lines[-15:]}")
                self._lock.wait(remaining)

    def wait_notify(self, key: str, timeout_s: float = 10.0) -> dict[str, str]:
        """The next sd_notify datagram carrying ``key`` (others are kept in ``messages``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                events = [line.get("event") for line in self.log_lines[-25:]]
                raise AssertionError(f"no {key} notification within {timeout_s} s; got {self.messages[-10:]}; "
                                     f"last log events {events}; last log lines {self.log_lines[-3:]}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536).decode()
            except TimeoutError:
                continue
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append(message)
            if key in message:
                return message

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sock.close()
        try:
            os.unlink(self.notify_path)
        except FileNotFoundError:
            pass
