"""The demo config as a service manager runs it: READY only once OPC UA accepts, SIGTERM exits 0 in time.

The demo's simulators run inside the gateway process (Modbus servers, a virtual CAN bus, an OPC UA
server), which is what made a stop hang before: library tasks that swallow cancellation. The config is
the shipped ``config/demo.toml`` with every fixed port moved to a free one and a private state dir.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.daemon_harness import GatewayProcess
from tests.ports import free_tcp_port_run as _free_run

pytestmark = pytest.mark.daemon

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 20
#: a vendor_a unit behind a port that accepts connections and never answers (a hung device), for
#: the tests that run the demo config with a fault in it
SILENT_UNIT = """
[[units]]
id = "A9-silent"
driver = "vendor_a"
chemistry = "lfp"
[units.modbus]
host = "127.0.0.1"
port = {port}
unit_id = 1
"""




def demo_config(tmp_path: Path) -> tuple[Path, int, float]:
    """``config/demo.toml`` on free ports with its own state dir; returns (path, OPC UA port, grace)."""
    text = (ROOT / "config" / "demo.toml").read_text(encoding="utf-8")
    modbus4, modbus1, vendor_b, opcua, http = _free_run(4), _free_run(1), _free_run(1), _free_run(1), _free_run(1)
    moves = {15020: modbus4, 15021: modbus4 + 1, 15022: modbus4 + 2, 15023: modbus4 + 3, 15030: modbus1,
             4850: vendor_b, 4840: opcua, 9108: http}
    # one pass: a new port may equal another old one (15021) or contain one (14840), and must stay as drawn
    text = re.sub(r"\b(" + "|".join(map(str, moves)) + r")\b", lambda m: str(moves[int(m.group(1))]), text)
    text = text.replace('state_dir = "../state/demo"', f'state_dir = "{tmp_path / "state"}"')
    text = text.replace('log_format = "auto"', 'log_format = "json"')
    left = [old for old in moves if old not in moves.values() and re.search(rf"\b{old}\b", text)]
    assert not left and all(re.search(rf"\b{new}\b", text) for new in moves.values()), \
        f"fixed demo ports left in the test config: {left}"
    grace = float(re.search(r"shutdown_grace_s = ([0-9.]+)", text).group(1))
    path = tmp_path / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path, opcua, grace


@pytest.mark.timeout(420)
def test_demo_ready_only_when_opcua_accepts_and_sigterm_exits_0_every_time(tmp_path: Path,
                                                                            subprocess_env) -> None:
    config, opcua_port, grace_s = demo_config(tmp_path)
    for cycle in range(CYCLES):
        notify_dir = tmp_path / f"cycle{cycle}"
        notify_dir.mkdir()
        gw = GatewayProcess(config, subprocess_env, notify_dir)
        try:
            gw.wait_notify("READY", timeout_s=60)
            # READY=1 promises a serving OPC UA endpoint: one connect, no retry
            with socket.create_connection(("127.0.0.1", opcua_port), timeout=5):
                pass
            gw.signal(signal.SIGTERM)
            try:
                code = gw.proc.wait(grace_s + 10)  # the daemon's own hard deadline exits 1 at grace_s
            except subprocess.TimeoutExpired:
                pytest.fail(f"cycle {cycle}: still running {grace_s + 10} s after SIGTERM")
            assert code == 0, f"cycle {cycle}: exit {code}; last log lines {gw.log_lines[-8:]}"
            assert not any(e.get("event") == "shutdown_grace_exceeded" for e in gw.log_lines)
        finally:
            gw.stop()
