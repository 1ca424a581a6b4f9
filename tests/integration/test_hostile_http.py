"""The HTTP listener of a real gateway process as hostile clients use it.

Numbers JSON allows but a float cannot hold, request lines and headers over aiohttp's limits, bodies of
other media types, and connections that send their headers slowly (slowloris): each gets a clear JSON
error or is closed, nothing reaches the log as an error with a stack, and ``/healthz`` keeps answering.
"""

from __future__ import annotations

import json
import os

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
