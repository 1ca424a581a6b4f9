"""Malformed admin socket requests get a clear error reply, never a traceback (issue 12.8).

A real gateway subprocess (in-memory units from the docs example plugin); requests are raw bytes on
the admin socket, as a hostile local user could send them.
"""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from bessgw.daemon.admin import MAX_REQUEST_BYTES
from tests.integration.daemon_harness import GatewayProcess, wait_admin_socket

pytestmark = pytest.mark.daemon

CONFIG = """
[gateway]
id = "gw-admin"
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


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plugin_path):
    import os

    tmp_path = tmp_path_factory.mktemp("admin")
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    env = dict(os.environ, BESSGW_PLUGINS="bessgw_example",
               PYTHONPATH=os.pathsep.join([*plugin_path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("NOTIFY_SOCKET", None)
    process = GatewayProcess(config, env, tmp_path)
    process.wait_notify("READY")
    process.wait_log(lambda e: e.get("event") == "control_ready")
    wait_admin_socket(tmp_path / "state")
    process.config = config
    process.env = env
    yield process, tmp_path / "state"
    process.stop()


def raw_request(state: Path, data: bytes, timeout_s: float = 10.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(state / "admin.sock"))
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway may answer and close before reading everything
        chunks = b""
        while not chunks.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks += chunk
    assert chunks, "no reply"
    return json.loads(chunks)


BAD_REQUESTS = {
    "nested-5000": b"[" * 5000 + b"]" * 5000 + b"\n",
    "nested-object-5000": b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"\n",
    "nested-inside-request": b'{"cmd":"status","x":' + b"[" * 3000 + b"]" * 3000 + b"}\n",
    "p_kw-1e400": b'{"cmd":"setpoint","p_kw":1e400}\n',
    "p_kw-huge-int": b'{"cmd":"setpoint","p_kw":1' + b"0" * 400 + b"}\n",
    "q_kvar-huge-int": b'{"cmd":"setpoint","p_kw":1,"q_kvar":-1' + b"0" * 400 + b"}\n",
    "expires-1e308": b'{"cmd":"setpoint","p_kw":1,"expires_in_s":1e308,"command_id":"x-expiry"}\n',
    "expires-negative": b'{"cmd":"setpoint","p_kw":1,"expires_in_s":-5,"command_id":"x-negative"}\n',
    "p_kw-NaN": b'{"cmd":"setpoint","p_kw":NaN}\n',
    "p_kw-string": b'{"cmd":"setpoint","p_kw":"500"}\n',
    "command_id-int": b'{"cmd":"setpoint","p_kw":1,"command_id":12}\n',
    "command_id-newline": b'{"cmd":"setpoint","p_kw":1,"command_id":"a\\nb"}\n',
    "command_id-nul": b'{"cmd":"setpoint","p_kw":1,"command_id":"a\\u0000b"}\n',
    "lone-surrogate": b'{"cmd":"st\\ud800atus"}\n',
    "invalid-utf8": b'{"cmd":"\xff\xfe"}\n',
    "huge-number-text": b'{"cmd":"status","n":' + b"9" * 5000 + b"}\n",
    "too-large": b'{"cmd":"status","pad":"' + b"x" * (MAX_REQUEST_BYTES * 2) + b'"}\n',
    "array": b"[1,2,3]\n",
    "empty-line": b"\n",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_gets_a_clear_error_and_no_traceback(gateway, name: str) -> None:
    process, state = gateway
    before = len(process.log_lines)
    reply = raw_request(state, BAD_REQUESTS[name])
    assert reply["ok"] is False
    assert reply["error"] and not reply["error"].startswith("internal error"), reply
    # the gateway still answers, and logged no traceback for it
    assert raw_request(state, b'{"cmd":"status"}\n')["ok"] is True
    logged = process.log_lines[before:]
    assert not [e for e in logged if "exception" in e or "Traceback" in json.dumps(e)], logged


def test_valid_setpoint_still_works(gateway) -> None:
    _process, state = gateway
    reply = raw_request(state, b'{"cmd":"setpoint","p_kw":100.5,"command_id":"ok-1"}\n')
    assert reply["ok"] is True and reply["result"]["command_id"] == "ok-1"
    assert raw_request(state, b'{"cmd":"release"}\n')["ok"] is True


def test_state_files_are_not_readable_by_other_users(gateway) -> None:
    _process, state = gateway
    assert stat.S_IMODE(state.stat().st_mode) & 0o007 == 0, oct(state.stat().st_mode)
    journal = state / "commands.sqlite3"
    for path in (journal, journal.with_name(journal.name + "-wal")):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, (path, oct(path.stat().st_mode))


def test_a_second_gateway_on_the_same_state_dir_is_refused_with_exit_78(gateway) -> None:
    import subprocess

    from tests.integration.daemon_harness import bessgw_command

    process, state = gateway
    result = subprocess.run([*bessgw_command(), "run", "--config", str(process.config)], env=process.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert result.stderr == (f"{process.config}: gateway.state_dir: a gateway is already running with {state}"
                             " (its admin.sock answers); stop it first\n")
    assert raw_request(state, b'{"cmd":"status"}\n')["ok"] is True  # the first one was not disturbed


def test_protocol_versions_answer_each_client_in_its_own_or_say_clearly_why_not(gateway) -> None:
    """Release 0.2.0's client (no "v") gets its reply unchanged; this release's gets "v" and the release; a
    client of a later protocol only, or one requiring a field we do not know, is refused with exit code 70."""
    from bessgw.daemon.admin import ADMIN_CURRENT, ADMIN_MAX, ADMIN_MIN

    _process, state = gateway
    old = raw_request(state, b'{"cmd":"status"}\n')
    assert old["ok"] is True and "v" not in old and "release" not in old
    current = raw_request(state, json.dumps({"cmd": "status", "v": ADMIN_CURRENT, "vmin": ADMIN_MIN}).encode() + b"\n")
    assert current["ok"] is True and current["v"] == ADMIN_CURRENT and current["release"] == current["version"]
    # a later client that still reads ours is answered in ours
    later = raw_request(state, json.dumps({"cmd": "status", "v": ADMIN_MAX + 3, "vmin": ADMIN_MIN}).encode() + b"\n")
    assert later["ok"] is True and later["v"] == ADMIN_CURRENT
    future = raw_request(state, json.dumps({"cmd": "status", "v": ADMIN_MAX + 3, "vmin": ADMIN_MAX + 1}).encode()
                         + b"\n")
    assert future["ok"] is False and future["exit_code"] == 70
    assert f"speaks admin protocol {ADMIN_MIN}..{ADMIN_MAX}" in future["error"], future
    assert "use the bessgw command of the gateway's release" in future["error"]
    required = raw_request(state, b'{"cmd":"status","v":2,"!dry_run":true}\n')
    assert required["ok"] is False and "!dry_run" in required["error"] and required["exit_code"] == 70
    optional = raw_request(state, b'{"cmd":"status","v":2,"dry_run":true}\n')
    assert optional["ok"] is True
    for bad in (b'{"cmd":"status","v":true}\n', b'{"cmd":"status","v":"2"}\n', b'{"cmd":"status","v":0}\n',
                b'{"cmd":"status","v":2,"vmin":3}\n'):
        reply = raw_request(state, bad)
        assert reply["ok"] is False and reply["exit_code"] == 70, (bad, reply)
