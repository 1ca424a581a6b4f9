"""An independent OPC UA client (node-opcua) against a real ``bessgw run`` gateway.

asyncua is both our server and our other tests' client, so a shared misreading of the spec would pass
unnoticed; node-opcua is a separate implementation. The flow is the one an operator follows with any new
client (docs/opcua.md): the first connection is refused and the client's certificate lands in
``pki/rejected``; the admin moves it to ``pki/trusted``; the client connects with
Basic256Sha256/SignAndEncrypt, logs in as an operator, browses ``Objects/Campus``, reads a unit's SocPct,
subscribes to its PowerKw and calls its SetPower, which must reach the device (checked through ``bessgw
status --json``) and come back to the client as a data change notification.

The main test starts with another client's certificate already trusted (a site whose SCADA was trusted
first); a second test starts from an empty ``trusted/`` (a fresh install), where asyncua's own trust store
cannot even be loaded, so the gateway must refuse and file the first client itself.

node-opcua is installed into ``tests/interop/node_modules`` from the pinned ``package-lock.json`` when it
is missing; the test is skipped only when ``node``/``npm`` are not on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bessgw.northbound.certificates import CertificateFiles, ensure_certificate
from bessgw.northbound.passwords import hash_password
from tests.integration.daemon_harness import GatewayProcess, gateway_status
from tests.ports import free_tcp_port

pytestmark = [pytest.mark.interop, pytest.mark.daemon]

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "node_opcua_client.mjs"
PASSWORD = "operator-secret"
WRITE_BIT = 1 << 1  # AccessLevel CurrentWrite
NODE_TIMEOUT_S = 40.0  # one run of the script: certificate creation + connect + a handful of services
INSTALL_TIMEOUT_S = 300.0

CONFIG = """
[gateway]
id = "gw-node"
state_dir = "{state}"
log_format = "json"
telemetry_log_interval_s = 0.5

[defaults]
poll_interval_s = 0.05

[northbound.opcua]
enabled = true
endpoint = "opc.tcp://127.0.0.1:{port}/bessgw"
security_policies = {policies}
anonymous = "{anonymous}"
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



@pytest.fixture(scope="module")
def node_opcua() -> Path:
    """The node executable, with node-opcua installed next to the script (``npm ci`` if needed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the node-opcua interop check (install Node.js >= 18)")
    if not (HERE / "node_modules" / "node-opcua" / "package.json").exists():
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT_S)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return Path(node)


def run_client(node: Path, **arguments: object) -> tuple[int, dict]:
    """Run the node-opcua script once; its exit code and the one JSON line it printed."""
    result = subprocess.run([str(node), str(SCRIPT), json.dumps(dict(arguments, timeout_s=NODE_TIMEOUT_S - 5))],
                            cwd=HERE, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"node-opcua client printed no JSON (rc {result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.returncode, json.loads(lines[-1])



@contextmanager
def gateway(tmp_path: Path, env: dict[str, str], trust_other_client: bool,
            demo: bool = False) -> Iterator[tuple[GatewayProcess, Path]]:
    """A running ``bessgw run`` serving OPC UA on a free port; yields it and its config file.

    With ``trust_other_client`` the trust list already holds another client's certificate before the
    gateway starts, as on a site where SCADA was trusted first. ``demo`` also offers the None policy and
    anonymous read access, as config/demo.toml does.
    """
    state = tmp_path / "state"
    if trust_other_client:
        trusted = state / "pki" / "trusted"
        ensure_certificate(CertificateFiles(trusted / "scada.der", tmp_path / "scada-key.pem"), "urn:site:scada",
                           "site scada", client=True, hostnames=("localhost",))
    config = tmp_path / "gw.toml"
    policies = '["Basic256Sha256_SignAndEncrypt", "None"]' if demo else '["Basic256Sha256_SignAndEncrypt"]'
    config.write_text(CONFIG.format(state=state, port=free_tcp_port(), hash=hash_password(PASSWORD), policies=policies,
                                    anonymous="read" if demo else "off"))
    gw = GatewayProcess(config, dict(env, BESSGW_PLUGINS="bessgw_example"), tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)
        gw.wait_log(lambda e: e.get("event") == "opcua_started", timeout_s=30)
        yield gw, config
    finally:
        gw.stop()


def client_arguments(tmp_path: Path, gw: GatewayProcess) -> dict[str, object]:
    started = gw.wait_log(lambda e: e.get("event") == "opcua_started")
    return dict(endpoint=started["endpoint"], pki_dir=str(tmp_path / "node-pki"), user="operator", password=PASSWORD,
                gateway="gw-node", unit="m1", p_kw=-120.5, q_kvar=0.0, command_id="node-opcua-1")


def refused_and_filed(node: Path, gw: GatewayProcess, state: Path, arguments: dict[str, object]) -> Path:
    """First contact: the client is refused and its certificate is filed in ``rejected/`` (returned)."""
    rc, first = run_client(node, **arguments)
    assert rc == 2 and not first["ok"] and first["stage"] == "session", first
    assert "BadCertificateUntrusted" in first["error"], first
    rejected_log = gw.wait_log(lambda e: e.get("event") == "opcua_certificate_rejected", timeout_s=10)
    rejected = sorted((state / "pki" / "rejected").iterdir())
    assert [path.name for path in rejected] == [rejected_log["certificate"]], (rejected, rejected_log)
    return rejected[0]


def test_node_opcua_client_browses_reads_and_commands(tmp_path: Path, subprocess_env, node_opcua: Path) -> None:
    state = tmp_path / "state"
    with gateway(tmp_path, subprocess_env, trust_other_client=True) as (gw, config):
        arguments = client_arguments(tmp_path, gw)

        # 1. not trusted yet: refused, and the certificate is kept for the admin
        rejected = refused_and_filed(node_opcua, gw, state, arguments)

        # 2. the admin trusts it, exactly as docs/opcua.md says: move rejected/<file> to trusted/
        rejected.rename(state / "pki" / "trusted" / rejected.name)

        # 3. connect again: the trusted directory is re-read when it changes, no restart
        rc, seen = run_client(node_opcua, **arguments)
        assert rc == 0 and seen["ok"], seen
        assert seen["security"] == {"policy": "Basic256Sha256", "mode": "SignAndEncrypt"}
        assert "Gateways" in seen["campus_children"], seen["campus_children"]
        assert seen["gateways"] == ["gw-node"]
        assert seen["units"] == ["m1", "m2"]
        assert {"SocPct", "PowerKw", "SetPower", "ResetFault", "PowerSetpointKw"} <= set(seen["unit_children"])
        assert seen["translated_status"] == "Good"
        soc = seen["soc"]
        assert soc["status"] == "Good" and soc["data_type"] == "Double", soc
        assert soc["value"] == 70.0, soc  # the configured start; an idle in-memory battery holds it
        assert soc["engineering_units"] == "%" and soc["source_timestamp"], soc
        assert seen["set_power"] == {"status": "Good", "outputs": [-120.5, 0.0]}
        assert seen["setpoint_access"]["user_access_level"] & WRITE_BIT  # an operator may write setpoints
        subscription = seen["subscription"]
        assert subscription["first"]["status"] == "Good" and subscription["first"]["value"] == 0.0, subscription
        assert subscription["reached_p_kw"] and subscription["values"][-1] == -120.5, subscription

        # 4. SetPower reached the device: the in-memory battery reports the power it was told (wait for the
        #    gateway's telemetry log line, then ask the running gateway itself)
        gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == "m1" and e.get("p_kw") == -120.5,
                    timeout_s=10)
        units = {unit["id"]: unit for unit in gateway_status(config, subprocess_env)["units"]}
        assert units["m1"]["p_kw"] == -120.5, units["m1"]
        assert units["m2"]["p_kw"] == 0.0, units["m2"]  # nothing else was commanded


def test_first_client_on_a_fresh_install_is_filed_in_rejected(tmp_path: Path, subprocess_env,
                                                             node_opcua: Path) -> None:
    with gateway(tmp_path, subprocess_env, trust_other_client=False) as (gw, _config):
        refused_and_filed(node_opcua, gw, tmp_path / "state", client_arguments(tmp_path, gw))


def test_node_opcua_browses_anonymously_on_none_with_its_own_certificate(tmp_path: Path, subprocess_env,
                                                                         node_opcua: Path) -> None:
    """A first-time visitor on the demo: the None policy, no login, a client that sends its certificate.

    On a fresh install (nothing trusted) the certificate is neither validated nor filed; the client
    browses ``Objects/Campus``, reads Good values with engineering units, sees no write bit on setpoints,
    and its SetPower and setpoint write are refused per item.
    """
    state = tmp_path / "state"
    with gateway(tmp_path, subprocess_env, trust_other_client=False, demo=True) as (gw, config):
        arguments = dict(client_arguments(tmp_path, gw), security="None", user=None, password=None,
                         command_id="node-anonymous-1")
        rc, seen = run_client(node_opcua, **arguments)
        assert rc == 0 and seen["ok"], seen
        assert seen["security"] == {"policy": "None", "mode": "None"} and seen["user"] == "anonymous"
        assert "Gateways" in seen["campus_children"] and seen["units"] == ["m1", "m2"], seen
        assert seen["soc"]["status"] == "Good" and seen["soc"]["engineering_units"] == "%", seen["soc"]
        access = seen["setpoint_access"]
        assert access["access_level"] & WRITE_BIT and not access["user_access_level"] & WRITE_BIT, access
        first = seen["subscription"]["first"]  # an anonymous session may subscribe: the initial value arrives
        assert first["status"] == "Good" and first["value"] == 0.0 and first["source_timestamp"], first
        assert seen["write_status"] == "BadUserAccessDenied", seen
        assert seen["set_power"] == {"status": "BadUserAccessDenied", "outputs": []}, seen
        assert list((state / "pki" / "rejected").iterdir()) == []  # the certificate was not even looked at
        units = {unit["id"]: unit for unit in gateway_status(config, subprocess_env)["units"]}
        assert units["m1"]["p_kw"] == 0.0, units["m1"]  # nothing reached the device
