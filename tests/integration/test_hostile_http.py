"""The HTTP listener of a real gateway process as hostile clients use it.

Numbers JSON allows but a float cannot hold, request lines and headers over aiohttp's limits, and
connections that send their headers slowly (slowloris): each gets a clear error or is closed, nothing
reaches the log as an error with a stack, and ``/healthz`` keeps answering.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from bessgw.northbound.http import connections
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


def test_a_journal_page_before_a_sequence_number_beyond_64_bits_is_a_400(gateway) -> None:
    gw, port = gateway
    for before_seq in (2**63, 10**30):
        status, raw = http("GET", f"http://127.0.0.1:{port}/api/v1/journal?before_seq={before_seq}",
                           token=OPERATOR)
        assert status == 400, raw
        assert "before_seq" in json.loads(raw)["error"]["message"]
    status, raw = http("GET", f"http://127.0.0.1:{port}/api/v1/journal?before_seq={2**63 - 1}", token=OPERATOR)
    assert status == 200, raw
    assert _errors_logged(gw) == []


def test_errors_say_what_was_wrong_and_what_is_expected(gateway) -> None:
    _gw, port = gateway
    base = f"http://127.0.0.1:{port}/api/v1"
    status, raw = http("POST", f"{base}/setpoint", b'{"p_kw": 0}', headers={"Authorization": "Basic b3BzOng="})
    message = json.loads(raw)["error"]["message"]
    assert status == 401 and "Bearer" in message and "Basic" in message, message
    status, raw = http("DELETE", f"{base}/units")
    message = json.loads(raw)["error"]["message"]
    assert status == 405 and "DELETE" in message and "GET" in message, message
    status, raw = http("GET", f"{base}/unitz")
    message = json.loads(raw)["error"]["message"]
    assert status == 404 and "/api/v1/unitz" in message and "openapi.json" in message, message


def test_every_answer_is_one_the_openapi_document_describes(gateway) -> None:
    """What a client generated from the document meets: each status documented, each body of its schema."""
    import jsonschema

    _gw, port = gateway
    base = f"http://127.0.0.1:{port}/api/v1"
    document = json.loads(http("GET", f"{base}/openapi.json")[1])
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    calls = [
        ("GET", "/status", None, {}), ("GET", "/status", None, operator), ("GET", "/units", None, operator),
        ("GET", "/units/mem-1", None, operator), ("GET", "/units/nope", None, operator),
        ("GET", "/campus", None, operator), ("GET", "/members", None, operator),
        ("GET", "/journal", None, operator), ("GET", "/journal?limit=0", None, operator),
        ("GET", "/journal?limit=x", None, operator),
        ("POST", "/setpoint", b'{"p_kw": 1e308}', operator), ("POST", "/setpoint", b'{"p_kw": "1"}', operator),
        ("POST", "/setpoint", b'{"p_kw": 0, "unit_id": "nope"}', operator), ("POST", "/setpoint", b"[", operator),
        ("POST", "/setpoint", b'{"p_kw": 0, "command_id": "openapi-1"}', operator),
        ("POST", "/setpoint", b'{"p_kw": 0}', {}), ("POST", "/setpoint", b"x" * 20_000, operator),
        ("POST", "/release", b'{"command_id": "openapi-2"}', operator), ("POST", "/release", b'{"x": 1}', operator),
        ("GET", "/openapi.json", None, {}),
    ]
    for method, path, body, headers in calls:
        status, raw = http(method, base + path, body, headers={"Content-Type": "application/json", **headers})
        operation = document["paths"][path.split("?")[0].replace("/units/mem-1", "/units/{unit_id}")
                                      .replace("/units/nope", "/units/{unit_id}")][method.lower()]
        assert str(status) in operation["responses"], (method, path, status, raw[:200])
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        # the document's components beside the schema: its $refs resolve as in the document
        validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
        errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(json.loads(raw))]
        assert not errors, (method, path, status, errors[:3])


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
    assert _metric(port, "bessgw_http_bad_requests_total") >= 3


def _metric(port: int, name: str) -> float:
    status, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout_s=WAIT_S)
    assert status == 200
    samples = [line.split()[-1] for line in body.decode().splitlines() if line.startswith(name + " ")]
    assert len(samples) == 1, f"{name} not exposed once"
    return float(samples[0])


def _slow_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")  # and never the blank line
    return sock


def _closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_connection_that_never_finishes_its_headers_is_closed(gateway) -> None:
    _gw, port = gateway
    sock = _slow_connection(port)
    try:
        started = time.monotonic()
        assert _closed_by_server(sock, connections.IDLE_TIMEOUT_S + WAIT_S)
        assert time.monotonic() - started >= connections.IDLE_TIMEOUT_S * 0.5
    finally:
        sock.close()


def test_slowloris_connections_over_the_cap_make_room_and_healthz_answers(gateway) -> None:
    _gw, port = gateway
    flood = [_slow_connection(port) for _ in range(connections.MAX_CONNECTIONS + 20)]
    try:
        # the oldest slow connections were closed to make room for the newer ones
        assert _closed_by_server(flood[0], WAIT_S)
        status, body = http("GET", f"http://127.0.0.1:{port}/healthz", timeout_s=WAIT_S)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, _ = http("GET", f"http://127.0.0.1:{port}/metrics", timeout_s=WAIT_S)
        assert status == 200
        assert _metric(port, "bessgw_http_connections_evicted_total") >= 20
    finally:
        for sock in flood:
            sock.close()


def test_the_connection_bounds_are_documented() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text(encoding="utf-8")
    assert f"{connections.MAX_CONNECTIONS} connections" in text
    assert f"{connections.IDLE_TIMEOUT_S:g} s" in text
