"""Federation in real gateway processes: `bessgw run` x 3 with [federation], asked with `bessgw members`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bessgw.testing import wait_until_sync
from tests.integration.daemon_harness import GatewayProcess, bessgw_command
from tests.ports import free_udp_ports

pytestmark = pytest.mark.federation

KEY = base64.b64encode(os.urandom(32)).decode()

CONFIG = """
[gateway]
id = "{gw}"
state_dir = "{state}"
log_format = "json"

[defaults]
poll_interval_s = 0.2

[federation]
bind_host = "127.0.0.1"
bind_port = {port}
seeds = [{seeds}]
keys = ["{key}"]
probe_interval_s = 0.5
probe_timeout_s = 0.2
push_pull_interval_s = 2.0

[[units]]
id = "{gw}-m1"
driver = "in_memory"
"""




def members(config: Path, env: dict[str, str]) -> list[dict]:
    result = subprocess.run([*bessgw_command(), "members", "--config", str(config), "--json"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_members(config: Path, env: dict[str, str], predicate, timeout_s: float = 30.0) -> list[dict]:
    def matching() -> list[dict] | None:
        rows = members(config, env)
        return rows if predicate(rows) else None

    return wait_until_sync(matching, timeout_s, "membership to match", step_s=0.3)  # polling a CLI


def test_three_gateways_form_a_campus_and_see_a_stop(tmp_path: Path, subprocess_env) -> None:
    ports = free_udp_ports(3)
    seeds = ", ".join(f'"127.0.0.1:{port}"' for port in ports[:1])
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    gateways, configs = [], []
    try:
        for index, port in enumerate(ports):
            gw = f"gw{index + 1}"
            config = tmp_path / f"{gw}.toml"
            config.write_text(CONFIG.format(gw=gw, state=tmp_path / gw, port=port, seeds=seeds, key=KEY))
            configs.append(config)
            (tmp_path / gw).mkdir()
            gateways.append(GatewayProcess(config, env, tmp_path / gw))
        for gateway in gateways:
            gateway.wait_notify("READY", timeout_s=30)
        for config in configs:  # every gateway sees all three alive, each with its unit
            rows = wait_members(config, env, lambda r: len(r) == 3 and all(m["status"] == "alive" for m in r))
            assert sorted(m["gateway_id"] for m in rows) == ["gw1", "gw2", "gw3"]
        text = subprocess.run([*bessgw_command(), "members", "--config", str(configs[0])], env=env,
                              capture_output=True, text=True, timeout=30).stdout
        assert text.splitlines()[0].split()[:3] == ["GATEWAY", "ADDRESS", "STATUS"] and "gw1 *" in text

        gateways[2].signal(signal.SIGTERM)  # a planned stop: it leaves, the others see it at once
        assert gateways[2].proc.wait(timeout=10) == 0
        for config in configs[:2]:
            wait_members(config, env, lambda r: any(m["gateway_id"] == "gw3" and m["status"] in ("left", "dead")
                                                    for m in r))
    finally:
        for gateway in gateways:
            gateway.stop()
