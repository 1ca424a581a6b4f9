"""bench/soak.py at a tiny size: it runs a real gateway, loads it, samples it and reports one JSON line.

Only the harness is checked here (figures parse, commands were sent and accepted, the flapper flapped,
the gateway reported its task count and stopped cleanly); the growth figures themselves belong to the
full-size run, never to a timed assert.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.daemon]

ROOT = Path(__file__).resolve().parents[2]


def test_soak_bench_smoke() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.4", "--units", "10",
         "--flap-period-s", "8", "--flap-down-s", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert (figures["minutes"], figures["units"]) == (0.4, 10)
    assert len(figures["rss_mb"]) >= 6 and all(rss > 0 for rss in figures["rss_mb"])
    assert all(isinstance(count, int) and count > 0 for count in figures["tasks"]["samples"])
    assert all(count > 0 for count in figures["fds"]["samples"] + figures["threads"]["samples"])
    assert figures["commands_sent"] >= 15, figures
    assert figures["commands_failed"] == 0, figures["errors"]
    assert set(figures["commands_by_kind"]) == {"admin", "ua_gateway", "ua_unit", "repeat"}
    assert figures["repeats"] >= 1 and figures["repeats_failed"] == 0
    assert figures["flaps"] >= 1 and figures["flap_restart_failures"] == 0
    assert figures["monitored_items"] > 10 * 20 and figures["notifications_per_s"] > 0
    assert figures["gateway_exit_code"] == 0
    assert isinstance(figures["rss_growth_pct_per_h"], float)
    # the figures' own temporary directory is gone
    assert "kept" not in result.stderr
