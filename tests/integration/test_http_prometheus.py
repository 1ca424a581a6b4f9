"""A real Prometheus scrapes a real gateway (the demo on free ports, plus one unit whose device never answers).

PromQL then answers what an operator would ask: a unit's state of charge, a transport's request rate,
and that the circuit breaker of the silent device is open. ``promtool check metrics`` lints a scrape.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from bessgw.testing.wait import wait_until_sync
from tests.integration.daemon_harness import GatewayProcess
from tests.integration.http_client import http
from tests.integration.test_daemon_demo import SILENT_UNIT, demo_config
from tests.ports import free_tcp_port

pytestmark = [pytest.mark.daemon, pytest.mark.integration]

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None,
                                      reason="Debian's prometheus package is not installed (scripts/bootstrap)")

FAST_BREAKER = """
[southbound.modbus]
request_timeout_s = 0.3
breaker_failures = 2
breaker_open_s = 300
"""


def _http_port(config: Path) -> int:
    return int(re.search(r'listen = "127\.0\.0\.1:(\d+)"', config.read_text()).group(1))


@pytest.fixture
def silent_device():
    """A TCP port that accepts connections (the kernel's backlog) and never answers a request."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def gateway_with_silent_unit(tmp_path: Path, subprocess_env: dict[str, str], silent_device: int):
    config, _opcua, _grace = demo_config(tmp_path)
    text = config.read_text(encoding="utf-8")
    text = text.replace("\n[defaults]", FAST_BREAKER + "\n[defaults]", 1) + SILENT_UNIT.format(port=silent_device)
    config.write_text(text, encoding="utf-8")
    gw = GatewayProcess(config, subprocess_env, tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=90)
        yield gw, _http_port(config)
    finally:
        gw.stop()


def _query(prom_port: int, promql: str) -> list[dict]:
    status, body = http("GET", f"http://127.0.0.1:{prom_port}/api/v1/query?"
                        + urllib.parse.urlencode({"query": promql}))
    assert status == 200, body
    reply = json.loads(body)
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def _value(prom_port: int, promql: str) -> float | None:
    result = _query(prom_port, promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def _scraped(prom_port: int) -> bool:
    """Prometheus is up (it may still be starting: connection refused) and has scraped the gateway."""
    try:
        return _value(prom_port, 'up{job="bessgw"}') == 1.0
    except OSError:
        return False


@needs_prometheus
@pytest.mark.timeout(240)
def test_prometheus_scrapes_the_gateway_and_promql_answers(tmp_path: Path, gateway_with_silent_unit,
                                                           silent_device: int) -> None:
    _gw, http_port = gateway_with_silent_unit
    prom_port = free_tcp_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bessgw
    static_configs:
      - targets: ["127.0.0.1:{http_port}"]
""", encoding="utf-8")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_sync(lambda: _scraped(prom_port), timeout_s=60,
                        what="Prometheus scraped the gateway", step_s=0.5)

        # the demo's NMC container starts at 70 % SOC and idles (no setpoint): 0.70 as a ratio
        soc = wait_until_sync(lambda: _value(prom_port, 'bessgw_unit_state_of_charge_ratio{unit="A5-nmc"}'),
                              timeout_s=30, what="A5-nmc SOC in Prometheus", step_s=0.5)
        assert soc == pytest.approx(0.70, abs=0.01)

        # the vendor_a endpoints are polled every 0.5 s (requests coalesced; slower on a loaded machine):
        # every endpoint shows a steady request rate, none an absurd one
        rate_query = 'rate(bessgw_transport_requests_total{transport="modbus",endpoint=~".*"}[5s])'
        # (waits for all five: on a loaded machine one endpoint's series may have one sample in the window yet)
        def endpoint_rates() -> list[float] | None:
            rates = [float(r["value"][1]) for r in _query(prom_port, rate_query)
                     if r["metric"]["endpoint"] != f"127.0.0.1:{silent_device}" and float(r["value"][1]) > 0]
            return rates if len(rates) == 5 else None  # the demo's five vendor_a endpoints

        rates = wait_until_sync(endpoint_rates, timeout_s=30, what="a request rate for each modbus endpoint",
                                step_s=0.5)
        assert all(0.3 <= rate <= 20.0 for rate in rates), rates

        # the silent device timed out twice: its breaker is open, and only its breaker
        open_query = f'bessgw_transport_breaker_state{{endpoint="127.0.0.1:{silent_device}",state="open"}}'
        wait_until_sync(lambda: _value(prom_port, open_query) == 1.0, timeout_s=30,
                        what="the silent device's breaker open in Prometheus", step_s=0.5)
        opened = _query(prom_port, 'bessgw_transport_breaker_state{state="open"} == 1')
        assert [r["metric"]["endpoint"] for r in opened] == [f"127.0.0.1:{silent_device}"]
        assert _value(prom_port, f'bessgw_transport_breaker_trips_total{{endpoint="127.0.0.1:{silent_device}"}}') >= 1
    finally:
        prometheus.terminate()
        prometheus.wait(20)


@needs_prometheus
@pytest.mark.timeout(180)
def test_promtool_check_metrics_reports_nothing_on_a_scrape(gateway_with_silent_unit) -> None:
    _gw, http_port = gateway_with_silent_unit
    # let every family have samples: a breaker trip, CAN frames, a control step, a journal commit
    open_breaker = re.compile(rb'^bessgw_transport_breaker_state\{[^}]*state="open"[^}]*\} 1\.0$', re.MULTILINE)
    wait_until_sync(lambda: open_breaker.search(http("GET", f"http://127.0.0.1:{http_port}/metrics")[1]),
                    timeout_s=30, what="an open breaker in the scrape")
    status, scrape = http("GET", f"http://127.0.0.1:{http_port}/metrics")
    assert status == 200
    for family in (b"bessgw_unit_state_of_charge_ratio", b"bessgw_transport_request_duration_seconds_bucket",
                   b"bessgw_can_frames_total", b"bessgw_control_step_duration_seconds_bucket",
                   b"bessgw_journal_appends_total", b"bessgw_opcua_sessions", b"bessgw_control_write_timeouts_total"):
        assert family in scrape, family
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
