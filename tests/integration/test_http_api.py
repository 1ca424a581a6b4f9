"""The REST API of a real gateway process: every path of its OpenAPI document, roles, the one command path.

Writes need a bearer token (none: 401, viewer: 403, operator: accepted and journaled — ``bessgw journal
tail`` shows it); bad bodies of every kind get a 4xx JSON error and nothing reaches the journal.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bessgw.northbound.passwords import hash_password
from tests.integration.daemon_harness import GatewayProcess, bessgw_command
from tests.integration.http_client import get_json, http
from tests.ports import free_tcp_port

pytestmark = pytest.mark.daemon

OPERATOR, VIEWER, ADMIN = "ops.operator-secret-1", "look.viewer-secret-1", "root.admin-secret-1"

CONFIG = """
[gateway]
id = "gw-rest"
state_dir = "{state}"
log_format = "json"
shutdown_grace_s = 4

[http]
listen = "127.0.0.1:{port}"
max_body_bytes = 4096
{tokens}

[[units]]
id = "mem-1"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 60

[[units]]
id = "mem-2"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 40
"""


def _token_table(token: str, role: str) -> str:
    name, _, secret = token.partition(".")
    return f'[[http.tokens]]\nname = "{name}"\ntoken_hash = "{hash_password(secret)}"\nrole = "{role}"\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    import os

    tmp_path = tmp_path_factory.mktemp("rest")
    port = free_tcp_port()
    config = tmp_path / "gw.toml"
    tokens = "".join(_token_table(t, r) for t, r in ((OPERATOR, "operator"), (VIEWER, "viewer"), (ADMIN, "admin")))
    config.write_text(CONFIG.format(state=tmp_path / "state", port=port, tokens=tokens), encoding="utf-8")
    env = dict(os.environ, BESSGW_PLUGINS="bessgw_example")
    env["PYTHONPATH"] = os.pathsep.join([*plugin_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NOTIFY_SOCKET", None)
    gw = GatewayProcess(config, env, tmp_path)
    try:
        gw.wait_notify("READY", timeout_s=30)
        gw.wait_log(lambda e: e.get("event") == "telemetry" or e.get("event") == "ready", timeout_s=10)
        yield gw, f"http://127.0.0.1:{port}/api/v1", config, env
    finally:
        gw.stop()


def _journal(config: Path, env: dict[str, str]) -> list[dict]:
    result = subprocess.run([*bessgw_command(), "journal", "tail", "--config", str(config), "--json", "-n", "500"],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _wait_commandable(base: str) -> None:
    from bessgw.testing.wait import wait_until_sync

    wait_until_sync(lambda: all(u["commandable"] for u in get_json(f"{base}/units", VIEWER)[1]["units"]),
                    timeout_s=20, what="both units commandable")


def test_every_path_of_the_openapi_document_answers(gateway) -> None:
    _gw, base, _config, _env = gateway
    status, document = get_json(f"{base}/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    _wait_commandable(base)
    exercised: dict[tuple[str, str], int] = {}
    for path, operations in document["paths"].items():
        for method in operations:
            url = base + path.replace("{unit_id}", "mem-1")
            if method == "get":
                code, body = http("GET", url, token=VIEWER)
            else:
                payload = {"p_kw": 10.0} if path == "/setpoint" else {}
                code, body = http("POST", url, json.dumps(payload).encode(), token=OPERATOR)
            exercised[(method, path)] = code
            assert body and json.loads(body) is not None
    # every path answered as documented: federation is not enabled here (404), everything else works
    expected = {("get", "/campus"): 404, ("get", "/members"): 404}
    assert {key: code for key, code in exercised.items()} == {
        key: expected.get(key, 200) for key in exercised}
    assert len(exercised) == 9
    code, unit = get_json(f"{base}/units/mem-1", VIEWER)
    assert code == 200 and unit["id"] == "mem-1" and unit["soc_pct"] == pytest.approx(60, abs=1)
    assert get_json(f"{base}/units/nope", VIEWER)[0] == 404
    code, page = get_json(f"{base}/journal?limit=1", VIEWER)
    assert code == 200 and len(page["entries"]) == 1 and page["next_before_seq"] == page["entries"][0]["seq"]


def test_writes_need_an_operator_token_and_go_through_the_journal(gateway) -> None:
    _gw, base, config, env = gateway
    _wait_commandable(base)
    body = json.dumps({"command_id": "rest-roles-1", "p_kw": 20.0}).encode()
    assert http("POST", f"{base}/setpoint", body)[0] == 401
    assert http("POST", f"{base}/setpoint", body, token="ops.wrong-secret")[0] == 401
    assert http("POST", f"{base}/setpoint", body, token="nobody.x")[0] == 401
    code, reply = http("POST", f"{base}/setpoint", body, token=VIEWER)
    assert code == 403 and json.loads(reply)["error"]["code"] == "forbidden"
    assert "rest-roles-1" not in {entry["command_id"] for entry in _journal(config, env)}
    code, reply = http("POST", f"{base}/setpoint", body, token=OPERATOR)
    assert code == 200, reply
    result = json.loads(reply)["result"]
    assert (result["source"], result["principal"], result["applied_p_kw"]) == ("scada", "rest:ops", 20.0)
    # idempotent by id: the same id gives the first result back
    again = json.loads(http("POST", f"{base}/setpoint", body, token=ADMIN)[1])["result"]
    assert again["seq"] == result["seq"]
    entries = {entry["command_id"]: entry for entry in _journal(config, env)}
    assert entries["rest-roles-1"]["principal"] == "rest:ops" and entries["rest-roles-1"]["kind"] == "setpoint"
    # reads need a token (anonymous_read is off)
    assert get_json(f"{base}/units")[0] == 401
    code, reply = http("POST", f"{base}/release", json.dumps({"command_id": "rest-roles-2"}).encode(), token=OPERATOR)
    assert code == 200 and json.loads(reply)["result"]["kind"] == "release"
    # the same id with other arguments is a conflict
    other = json.dumps({"command_id": "rest-roles-1", "p_kw": 30.0}).encode()
    code, reply = http("POST", f"{base}/setpoint", other, token=OPERATOR)
    assert code == 409 and json.loads(reply)["error"]["code"] == "conflict"


BAD_BODIES = [
    b"", b"{", b"[]", b"null", b'"text"', b"{p_kw: 1}", b'{"p_kw": NaN}', b'{"p_kw": Infinity}',
    b'{"p_kw": -Infinity}', b'{"p_kw": 1e999}', b'{"p_kw": "10"}', b'{"p_kw": true}', b'{"p_kw": null}',
    b'{"p_kw": [1]}', b'{"p_kw": {"a": 1}}', b'{"p_kw": 1, "extra": 2}', b'{"p_kw": 1, "q_kvar": "x"}',
    b'{"p_kw": 1, "expires_in_s": -1}', b'{"p_kw": 1, "command_id": ""}', b'{"p_kw": 1, "command_id": 7}',
    b'{"p_kw": 1, "command_id": "' + b"x" * 500 + b'"}', b'{"p_kw": 1, "unit_id": "no-such-unit"}',
    b'{"p_kw": 1, "source": "campus"}', b'{"p_kw": 1, "source": "nobody"}', b'{"p_kw": 1e12}',
    b"\xff\xfe{}", b'{"p_kw": 1, "command_id": "a\\u0000b"}', b"[" * 5000 + b"]" * 5000,
    b'{"p_kw": 1, "pad": "' + b"x" * 10_000 + b'"}',
]


def test_bad_bodies_get_a_4xx_json_error_and_nothing_is_journaled(gateway) -> None:
    _gw, base, config, env = gateway
    _wait_commandable(base)
    before = len(_journal(config, env))
    for body in BAD_BODIES:
        code, reply = http("POST", f"{base}/setpoint", body, token=OPERATOR)
        assert 400 <= code < 500, (body[:60], code, reply[:200])
        assert "error" in json.loads(reply), reply
    assert http("POST", f"{base}/setpoint", b"x" * 100_000, token=OPERATOR)[0] == 413
    assert len(_journal(config, env)) == before


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=4), max_leaves=12)
bodies = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["p_kw", "q_kvar", "expires_in_s", "command_id", "unit_id", "source", "x"]),
                    json_values, max_size=5).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/setpoint", "/release"]))
def test_fuzzed_bodies_never_500(gateway, body: bytes, path: str) -> None:
    _gw, base, _config, _env = gateway
    code, reply = http("POST", base + path, body, token=OPERATOR)
    assert code < 500, (body[:80], code, reply[:200])
    assert "error" in json.loads(reply) or code == 200
