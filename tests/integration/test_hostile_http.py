"""The HTTP listener of a real gateway process as hostile clients use it.

Numbers JSON allows but a float cannot hold, request lines and headers over aiohttp's limits: each gets a
clear error, nothing reaches the log as an error with a stack, and ``/healthz`` keeps answering.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.integration.daemon_harness import GatewayProcess
from tests.integration.http_client import http
from tests.integration.test_http_api import CONFIG, OPERATOR, _token_table
from tests.ports import free_tcp_port

pytestmark = pytest.mark.daemon

WAIT_S = 30.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    tmp_path = tmp_path_factory.mktemp("hostile-http")
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port, tokens=_token_table(OPERATOR, "operator")),
                      encoding="utf-8")
    env = dict(os.environ, BESSGW_PLUGINS="bessgw_example")
    env["PYTHONPATH"] = os.pathsep.join([*plugin_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NOTIFY_SOCKET", None)
    gw = GatewayProcess(config, env, tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)
        yield gw, port
    finally:
        gw.stop()


def _post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    status, raw = http("POST", f"http://127.0.0.1:{port}/api/v1/setpoint", body, token=OPERATOR,
                       headers={"Content-Type": content_type})
    return status, json.loads(raw)


def _errors_logged(gw: GatewayProcess) -> list[dict]:
    return [line for line in gw.log_lines if line.get("level") in ("error", "critical") or "exception" in line]


def test_an_integer_too_large_for_a_float_is_a_400_not_a_500(gateway) -> None:
    gw, port = gateway
    for body in (b'{"p_kw": 1' + b"0" * 400 + b"}", b'{"p_kw": 0, "q_kvar": -1' + b"0" * 400 + b"}"):
        status, answer = _post(port, body)
        assert status == 400, answer
        assert answer["error"]["code"] == "invalid" and "finite number" in answer["error"]["message"]
    assert _errors_logged(gw) == []


def test_request_lines_and_headers_over_the_limits_are_answered_and_logged_once_as_a_warning(gateway) -> None:
    gw, port = gateway
    before = len(gw.log_lines)
    for request in (
        b"GET /api/v1/units/" + b"x" * 20_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /healthz?" + b"a=b&" * 20_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 20_000 + b"\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
            sock.sendall(request)
            assert sock.recv(64).startswith((b"HTTP/1.0 4", b"HTTP/1.1 4"))
    status, _ = http("GET", f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    warning = gw.wait_log(lambda line: line.get("event") == "http_bad_requests", timeout_s=WAIT_S)
    assert warning["level"] == "warning" and "exception" not in warning
    assert _errors_logged(gw) == [], gw.log_lines[before:]
