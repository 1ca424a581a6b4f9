"""Traces of the command path, exported by a real gateway to an OTLP/HTTP receiver the test runs.

The receiver decodes the real protobuf (``ExportTraceServiceRequest``). One REST setpoint — and one OPC UA
SetPower from a real asyncua client — is one trace: accept → control.submit → journal.append, and
control.step → one unit.write per unit; the journal keeps the command's traceparent, and the log lines of
the trace carry its trace_id. Off: no exporter thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asyncua import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bessgw.northbound.passwords import hash_password
from bessgw.testing.wait import wait_until_sync
from tests.integration.daemon_harness import GatewayProcess, bessgw_command, gateway_status
from tests.integration.http_client import get_json, http
from tests.ports import free_tcp_port

pytestmark = pytest.mark.daemon

TOKEN = "ops.trace-secret-1"

CONFIG = """
[gateway]
id = "gw-trace"
state_dir = "{state}"
log_format = "json"
shutdown_grace_s = 4

[tracing]
enabled = true
endpoint = "http://127.0.0.1:{otlp}"

[http]
listen = "127.0.0.1:{port}"
[[http.tokens]]
name = "ops"
token_hash = "{hash}"
role = "operator"

{opcua}
[[units]]
id = "mem-1"
driver = "in_memory"
[units.options]
power_kw = 500

[[units]]
id = "mem-2"
driver = "in_memory"
[units.options]
power_kw = 500
"""


class OtlpReceiver:
    """POST /v1/traces with ``application/x-protobuf``: decoded and kept as (trace id, span) tuples."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.service_names: set[str] = set()
        lock = self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    for resource_spans in request.resource_spans:
                        service = next((a.value.string_value for a in resource_spans.resource.attributes
                                        if a.key == "service.name"), "")
                        receiver.service_names.add(service)
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                receiver.spans.append({"service": service,
                                    "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(), "name": span.name,
                                    "attributes": {a.key: a.value for a in span.attributes}})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


OPCUA = """
[northbound.opcua]
enabled = true
endpoint = "opc.tcp://127.0.0.1:{port}/bessgw"
security_policies = ["None"]
[[northbound.opcua.users]]
name = "otto"
password_hash = "{hash}"
role = "operator"
"""
OPCUA_PASSWORD = "otto-trace-pass"


def command_trace(receiver: OtlpReceiver, root_name: str, units: set[str]) -> list[dict] | None:
    """The spans of the first trace rooted at ``root_name``, once they include a write to each of ``units``."""
    with receiver.lock:
        roots = [s for s in receiver.spans if s["name"] == root_name]
        if not roots:
            return None
        spans = [s for s in receiver.spans if s["trace_id"] == roots[0]["trace_id"]]
    writes = {s["attributes"]["unit"].string_value for s in spans if s["name"] == "unit.write"}
    return spans if writes == units else None


def assert_command_path(spans: list[dict], root_name: str) -> dict:
    """accept → control.submit → journal.append; control.step under submit; every write under the step."""
    by_name: dict[str, list[dict]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    ids = {span["span_id"]: span for span in spans}
    root = by_name[root_name][0]
    submit = by_name["control.submit"][0]
    assert submit["parent"] == root["span_id"]
    assert by_name["journal.append"][0]["parent"] == submit["span_id"]
    step = by_name["control.step"][0]
    assert ids[step["parent"]]["name"] == "control.submit"
    assert all(write["parent"] == step["span_id"] and write["attributes"]["result"].string_value == "ok"
               for write in by_name["unit.write"])
    assert {write["attributes"]["transport"].string_value for write in by_name["unit.write"]} == {"none"}
    return root


@pytest.fixture
def receiver():
    otlp = OtlpReceiver()
    yield otlp
    otlp.close()


def test_one_rest_setpoint_is_one_trace_down_to_every_device_write(tmp_path: Path, subprocess_env: dict[str, str],
                                                                   receiver: OtlpReceiver) -> None:
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port, otlp=receiver.port, opcua="",
                                    hash=hash_password(TOKEN.partition(".")[2])), encoding="utf-8")
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example", OTEL_SERVICE_NAME="bessgw-under-test")
    gw = GatewayProcess(config, env, tmp_path)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        gw.wait_notify("READY", timeout_s=30)
        wait_until_sync(lambda: all(u["commandable"] for u in get_json(f"{base}/units", TOKEN)[1]["units"]),
                        timeout_s=20, what="units commandable")
        code, reply = http("POST", f"{base}/setpoint", json.dumps({"command_id": "traced-1", "p_kw": 200}).encode(),
                           token=TOKEN)
        assert code == 200, reply

        spans = wait_until_sync(lambda: command_trace(receiver, "rest.setpoint", {"mem-1", "mem-2"}),
                                timeout_s=20, what="the command's trace with both unit writes")
        root = assert_command_path(spans, "rest.setpoint")
        ids = {span["span_id"] for span in spans}
        assert receiver.service_names == {"bessgw-under-test"}
        # log lines written inside the trace carry its ids
        logged = gw.wait_log(lambda e: e.get("trace_id") == root["trace_id"], timeout_s=10)
        assert logged["span_id"] in ids

        # the journal keeps the command's trace context (W3C traceparent of the accept span's trace)
        result = subprocess.run([*bessgw_command(), "journal", "tail", "--config", str(config), "--json"],
                                env=env, capture_output=True, text=True, timeout=30)
        entry = next(json.loads(line) for line in result.stdout.splitlines() if "traced-1" in line)
        assert entry["traceparent"].split("-")[1] == root["trace_id"]
        gw.signal(__import__("signal").SIGTERM)
        assert gw.proc.wait(15) == 0
    finally:
        gw.stop()


def test_one_opcua_set_power_is_one_trace_down_to_every_device_write(
        tmp_path: Path, subprocess_env: dict[str, str], receiver: OtlpReceiver) -> None:
    port, ua_port = free_tcp_port(), free_tcp_port()
    config = tmp_path / "gw.toml"
    opcua = OPCUA.format(port=ua_port, hash=hash_password(OPCUA_PASSWORD))
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port, otlp=receiver.port, opcua=opcua,
                                    hash=hash_password(TOKEN.partition(".")[2])), encoding="utf-8")
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example", OTEL_SERVICE_NAME="bessgw-under-test")
    gw = GatewayProcess(config, env, tmp_path)
    base = f"http://127.0.0.1:{port}/api/v1"

    async def set_power() -> list:
        client = Client(f"opc.tcp://127.0.0.1:{ua_port}/bessgw", timeout=8)
        client.set_user("otto")
        client.set_password(OPCUA_PASSWORD)
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            gateway = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:gw-trace"])
            return await asyncio.wait_for(gateway.call_method(f"{ns}:SetPower", 300.0, 0.0, "ua-traced-1"), 15)
        finally:
            await asyncio.wait_for(client.disconnect(), 10)

    try:
        gw.wait_notify("READY", timeout_s=30)
        wait_until_sync(lambda: all(u["commandable"] for u in get_json(f"{base}/units", TOKEN)[1]["units"]),
                        timeout_s=20, what="units commandable")
        assert asyncio.run(set_power()) == [300.0, 0.0]
        spans = wait_until_sync(lambda: command_trace(receiver, "opcua.SetPower", {"mem-1", "mem-2"}),
                                timeout_s=20, what="the SetPower's trace with both unit writes")
        root = assert_command_path(spans, "opcua.SetPower")
        assert root["attributes"]["command.id"].string_value == "ua-traced-1"
        result = subprocess.run([*bessgw_command(), "journal", "tail", "--config", str(config), "--json"],
                                env=env, capture_output=True, text=True, timeout=30)
        entry = next(json.loads(line) for line in result.stdout.splitlines() if "ua-traced-1" in line)
        assert entry["traceparent"].split("-")[1] == root["trace_id"]
    finally:
        gw.stop()


def test_tracing_off_installs_nothing_and_runs_no_exporter_thread() -> None:
    """In a fresh interpreter: configure_tracing with the default section leaves the no-op API in place."""
    code = """
import threading
from opentelemetry import trace
from bessgw.config import TracingSection
from bessgw.daemon.tracing import configure_tracing
assert configure_tracing(TracingSection()) is False
tracer = trace.get_tracer("x")
with tracer.start_as_current_span("s") as span:
    assert not span.get_span_context().is_valid
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
print(sorted(t.name for t in threading.enumerate()))
"""
    result = subprocess.run([bessgw_command()[0], "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['MainThread']"


RECONNECT_CONFIG = """
[gateway]
id = "gw-reconnect"
state_dir = "{state}"
log_format = "json"
shutdown_grace_s = 4

[tracing]
enabled = true
endpoint = "http://127.0.0.1:{otlp}"

[defaults]
poll_interval_s = 0.1
heartbeat_interval_s = 0.5
retry_min_s = 0.1
retry_max_s = 0.5

[southbound.modbus]
request_timeout_s = 0.5
connect_timeout_s = 0.5
reconnect_min_s = 0.1
reconnect_max_s = 0.5
breaker_failures = 1000

[[units]]
id = "A1"
driver = "vendor_a"
[units.modbus]
host = "127.0.0.1"
port = {port}
unit_id = 1
"""


def _start_simulator(port: int, env: dict[str, str]) -> subprocess.Popen:
    sim = subprocess.Popen([*bessgw_command(), "sim", "vendor_a", "--port", str(port), "--count", "1"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert sim.stdout is not None and sim.stdout.readline().strip() == "ready"
    return sim


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _reconnects(receiver: OtlpReceiver) -> list[dict]:
    with receiver.lock:
        return [span for span in receiver.spans if span["name"] == "unit.reconnect"]


def test_a_unit_reconnect_is_traced_attempt_by_attempt(tmp_path: Path, subprocess_env: dict[str, str],
                                                       receiver: OtlpReceiver) -> None:
    """A real Modbus simulator stopped and started again: failed reconnect attempts, then one that succeeds,
    each a ``unit.reconnect`` span with the unit, transport, endpoint, attempt number, result and error type.
    The first connection at start-up is not a reconnect."""
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    config.write_text(RECONNECT_CONFIG.format(state=tmp_path / "state", otlp=receiver.port, port=port))
    sim = _start_simulator(port, subprocess_env)
    gw = GatewayProcess(config, subprocess_env, tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)
        gw.wait_log(lambda e: e.get("event") == "ready", timeout_s=10)
        wait_until_sync(lambda: gateway_status(config, subprocess_env)["units"][0]["quality"] == "good",
                        timeout_s=20, what="unit A1 good")
        assert _reconnects(receiver) == []  # connecting at start-up is not a reconnect

        _stop(sim)
        gw.wait_log(lambda e: e.get("event") == "unit_down" and e.get("unit") == "A1", timeout_s=15)
        failed = wait_until_sync(lambda: [s for s in _reconnects(receiver)
                                          if s["attributes"]["result"].string_value == "error"][:2] or None,
                                 timeout_s=20, what="failed reconnect spans")
        sim = _start_simulator(port, subprocess_env)
        spans = wait_until_sync(lambda: _reconnects(receiver) if any(
            s["attributes"]["result"].string_value == "ok" for s in _reconnects(receiver)) else None,
            timeout_s=20, what="a successful reconnect span")
        attributes = [{key: value.string_value or value.int_value for key, value in s["attributes"].items()}
                      for s in spans]
        ok = next(a for a in attributes if a["result"] == "ok")
        assert ok["unit"] == "A1" and ok["transport"] == "modbus" and ok["endpoint"] == f"127.0.0.1:{port}"
        assert "error.type" not in ok
        errors = [a for a in attributes if a["result"] == "error"]
        assert errors and all(a["error.type"].endswith("Error") for a in errors), errors
        # attempts count from 1 since the loss; the successful one comes last, after the failures
        assert [a["attempt"] for a in attributes[:len(errors) + 1]] == list(range(1, len(errors) + 2))
        assert attributes.index(ok) == len(errors)
        assert all(s["parent"] == "" for s in spans)  # each attempt is a trace of its own
        assert len({s["trace_id"] for s in spans}) == len(spans)
        assert failed[0]["attributes"]["unit"].string_value == "A1"
    finally:
        gw.stop()
        _stop(sim)
