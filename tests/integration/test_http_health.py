"""``/healthz`` and ``/readyz`` of a real gateway process: ready means what READY=1 means, plus control stepping."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bessgw.testing.wait import wait_until_sync
from tests.integration.daemon_harness import GatewayProcess
from tests.integration.http_client import get_json
from tests.ports import free_tcp_port

pytestmark = pytest.mark.daemon

CONFIG = """
[gateway]
id = "gw-http"
state_dir = "{state}"
log_format = "json"
shutdown_grace_s = 4

[control]
journal_file = "{journal}"

[http]
listen = "127.0.0.1:{port}"

[[units]]
id = "mem-1"
driver = "in_memory"
"""


def test_readyz_turns_503_with_a_reason_when_control_stops_and_back_healthz_stays_200(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    state = tmp_path / "state"
    config.write_text(CONFIG.format(state=state, port=port, journal="commands.sqlite3"), encoding="utf-8")
    gw = GatewayProcess(config, dict(subprocess_env, BESSGW_PLUGINS="bessgw_example"), tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        gw.wait_notify("READY", timeout_s=30)
        # READY=1 was sent: the listener serves, and says ready
        assert get_json(f"{base}/readyz") == (200, {"status": "ready"})
        assert get_json(f"{base}/healthz") == (200, {"status": "ok"})

        # a reload whose journal cannot be opened (a directory): control stops, the process runs on
        (state / "not-a-file").mkdir(parents=True)
        config.write_text(CONFIG.format(state=state, port=port, journal="not-a-file"), encoding="utf-8")
        gw.signal(signal.SIGHUP)
        _status, body = wait_until_sync(lambda: (lambda r: r if r[0] == 503 else None)(get_json(f"{base}/readyz")),
                                       timeout_s=20, what="/readyz 503")
        assert body["status"] == "not ready"
        assert any(reason.startswith("control: not running") for reason in body["reasons"]), body
        assert get_json(f"{base}/healthz") == (200, {"status": "ok"})

        # fixed: control is back and so is readiness
        config.write_text(CONFIG.format(state=state, port=port, journal="commands.sqlite3"), encoding="utf-8")
        gw.signal(signal.SIGHUP)
        wait_until_sync(lambda: get_json(f"{base}/readyz")[0] == 200, timeout_s=20, what="/readyz 200 again")
        assert get_json(f"{base}/healthz") == (200, {"status": "ok"})

        gw.signal(signal.SIGTERM)
        assert gw.proc.wait(15) == 0
    finally:
        gw.stop()


def test_no_listener_unless_configured(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """Without ``[http]`` nothing listens on a port (the admin socket is the only local door)."""
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    text = CONFIG.format(state=tmp_path / "state", port=port, journal="commands.sqlite3")
    config.write_text(text.replace(f'[http]\nlisten = "127.0.0.1:{port}"\n', ""), encoding="utf-8")
    gw = GatewayProcess(config, dict(subprocess_env, BESSGW_PLUGINS="bessgw_example"), tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)
        with pytest.raises(OSError):
            get_json(f"http://127.0.0.1:{port}/healthz")
        gw.signal(signal.SIGTERM)
        assert gw.proc.wait(15) == 0
    finally:
        gw.stop()
