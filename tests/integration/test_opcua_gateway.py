"""OPC UA in a real gateway process: commands go through the control plane (journal, arbitration).

The client logs in as an operator over the None policy (allowed by this test's config, as in the demo),
so no client certificate is needed; the security rules themselves are covered by test_opcua_server.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from asyncua import Client, ua

from bessgw.northbound.passwords import hash_password
from tests.integration.daemon_harness import GatewayProcess, bessgw_command, gateway_status
from tests.ports import free_tcp_port

pytestmark = pytest.mark.daemon

PASSWORD = "operator-secret"



CONFIG = """
[gateway]
id = "gw-ua"
state_dir = "{state}"
log_format = "json"
telemetry_log_interval_s = 0.5

[defaults]
poll_interval_s = 0.05

[control]
period_s = 0.05

[[control.sources]]
name = "scada"
priority = 200
heartbeat_timeout_s = 60

[northbound.opcua]
enabled = true
endpoint = "opc.tcp://127.0.0.1:{port}/bessgw"
security_policies = ["Basic256Sha256_SignAndEncrypt", "None"]
sampling_interval_s = 0.1

[[northbound.opcua.users]]
name = "operator"
password_hash = "{hash}"
role = "operator"

[[units]]
id = "m1"
driver = "in_memory"
[units.options]
soc_pct = 70

[[units]]
id = "m2"
driver = "in_memory"
[units.options]
soc_pct = 30
"""



def test_setpower_goes_through_control_and_the_journal(tmp_path: Path, subprocess_env) -> None:
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port, hash=hash_password(PASSWORD)))
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    gw = GatewayProcess(config, env, tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)
        gw.wait_log(lambda e: e.get("event") == "service_started" and e.get("service") == "opcua")

        async def scenario() -> None:
            client = Client(f"opc.tcp://127.0.0.1:{port}/bessgw", timeout=10)
            client.set_user("operator")
            client.set_password(PASSWORD)
            for _ in range(50):  # the server binds its port shortly after the service starts
                try:
                    await asyncio.wait_for(client.connect(), 10)
                    break
                except (OSError, asyncio.TimeoutError):
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("OPC UA server never accepted a connection")
            try:
                ns = await client.get_namespace_index("urn:bessgw:opcua")
                gateway = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:gw-ua"])
                await gateway.call_method(f"{ns}:SetPower", 400.0, 0.0, "ua-gw-1")
                unit = await gateway.get_child([f"{ns}:Units", f"{ns}:m2"])
                await unit.call_method(f"{ns}:SetPower", -50.0, 0.0, "ua-m2-1")
                with pytest.raises(ua.UaStatusCodeError) as info:
                    await unit.call_method(f"{ns}:SetPower", 99999.0, 0.0, "ua-m2-2")
                assert info.value.code == ua.StatusCodes.BadOutOfRange
            finally:
                await asyncio.wait_for(client.disconnect(), 10)

        asyncio.run(scenario())
        state = gateway_status(config, env)
        assert state["control"]["source"] == "scada" and state["control"]["target_p_kw"] == 400.0
        assert state["control"]["overrides"] == {"m2": -50.0}
        # m2 is held by its override, so m1 alone carries the gateway target
        gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == "m1" and e["p_kw"] == 400.0)
        tail = subprocess.run([*bessgw_command(), "journal", "tail", "--config", str(config), "--json"],
                              env=env, capture_output=True, text=True, timeout=30)
        entries = [json.loads(line) for line in tail.stdout.splitlines()]
        assert [(e["command_id"], e["unit_id"], e["source"], e["principal"]) for e in entries] == [
            ("ua-gw-1", "", "scada", "opcua:operator"), ("ua-m2-1", "m2", "scada", "opcua:operator")]
    finally:
        gw.stop()

    # after a restart the unit command's id is still known: a retry has no second effect
    gw = GatewayProcess(config, env, tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)

        async def retry() -> None:
            client = Client(f"opc.tcp://127.0.0.1:{port}/bessgw", timeout=10)
            client.set_user("operator")
            client.set_password(PASSWORD)
            await asyncio.wait_for(client.connect(), 20)
            try:
                ns = await client.get_namespace_index("urn:bessgw:opcua")
                unit = await client.nodes.objects.get_child(
                    [f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:gw-ua", f"{ns}:Units", f"{ns}:m2"])
                assert await unit.call_method(f"{ns}:SetPower", -50.0, 0.0, "ua-m2-1") == [-50.0, 0.0]
                with pytest.raises(ua.UaStatusCodeError) as reused:
                    await unit.call_method(f"{ns}:SetPower", -20.0, 0.0, "ua-m2-1")
                assert reused.value.code == ua.StatusCodes.BadInvalidArgument
            finally:
                await asyncio.wait_for(client.disconnect(), 10)

        asyncio.run(retry())
        tail = subprocess.run([*bessgw_command(), "journal", "tail", "--config", str(config), "--json"],
                              env=env, capture_output=True, text=True, timeout=30)
        assert [json.loads(line)["command_id"] for line in tail.stdout.splitlines()] == ["ua-gw-1", "ua-m2-1"]
    finally:
        gw.stop()
