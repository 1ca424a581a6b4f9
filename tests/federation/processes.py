"""Federation nodes as separate OS processes (``python -m tests.federation.run_node``), driven over pipes."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.federation.conftest import FAST

#: the repository root: ``-m tests.federation.run_node`` is importable from there
REPO_ROOT = Path(__file__).resolve().parents[2]


class NodeProcess:
    """One node process: JSON command per line on stdin, JSON answer per line on stdout."""

    def __init__(self, node_id: str, key: str, seeds: list[str], units: int = 2, *, bind: str = "127.0.0.1:0",
                 args: tuple[str, ...] = (), root: Path = REPO_ROOT, **overrides: Any) -> None:
        """``root``: the source tree to run (another release's, exported by ``tests.upgrade.release``)."""
        self.id = node_id
        cmd = [sys.executable, "-m", "tests.federation.run_node", "--id", node_id, "--bind", bind,
               "--key", key, "--units", str(units), *args]
        for seed in seeds:
            cmd += ["--seed", seed]
        for name, value in {**FAST, **overrides}.items():
            cmd += ["--set", f"{name}={json.dumps(value)}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1, cwd=root,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1",
                                              **({"PYTHONPATH": str(root)} if root != REPO_ROOT else {})))
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)
        ready = self._read(20.0)["ready"]
        self.addr: str = ready["addr"]  #: where peers write to
        self.bound: str = ready["bound"]  #: the socket itself
        self.boot: int = ready["boot"]

    def _read(self, timeout_s: float) -> dict[str, Any]:
        if not self._selector.select(timeout_s):
            raise AssertionError(f"{self.id}: no answer within {timeout_s} s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"{self.id}: process exited ({self.proc.poll()})")
        return json.loads(line)

    def ask(self, cmd: str, timeout_s: float = 10.0, **fields: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.proc.stdin.flush()
        reply = self._read(timeout_s)
        assert "error" not in reply, reply
        return reply

    def statuses(self) -> dict[str, str]:
        return {m["gateway_id"]: m["status"] for m in self.ask("members")["members"]}

    def members(self) -> dict[str, dict[str, Any]]:
        return {m["gateway_id"]: m for m in self.ask("members")["members"]}

    def units(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(u["gateway_id"], u["summary"]["unit_id"]): u for u in self.ask("view")["view"]["units"]}

    def versions(self) -> dict[str, Any]:
        return self.ask("versions")["versions"]

    def kill(self) -> None:
        """``kill -9``: no leave, no goodbye."""
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait(5)
        self._selector.close()
        self.proc.stdout.close()


