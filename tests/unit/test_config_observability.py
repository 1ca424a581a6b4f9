"""``[http]`` and ``[tracing]``: what check-config accepts and how it names what is wrong."""

from __future__ import annotations

import pytest

from bessgw.config import parse_config
from bessgw.errors import ConfigError

GATEWAY = {"gateway": {"id": "gw"}}


def problems(extra: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config({**GATEWAY, **extra}, "site.toml")
    return err.value.problems


def test_http_is_off_unless_configured_and_parses_its_listen_address() -> None:
    assert parse_config(GATEWAY, "site.toml").http is None
    config = parse_config({**GATEWAY, "http": {"listen": "127.0.0.1:9108"}}, "site.toml")
    assert (config.http.host, config.http.port) == ("127.0.0.1", 9108)
    assert parse_config({**GATEWAY, "http": {"listen": "[::1]:0"}}, "site.toml").http.host == "::1"


@pytest.mark.parametrize(("table", "key"), [
    ({"listen": "localhost"}, "http.listen"),
    ({"listen": "127.0.0.1:70000"}, "http.listen"),
    ({"listen": "127.0.0.1:9108", "lisen": 1}, "http.lisen"),
    ({"listen": "127.0.0.1:9108", "tokens": [{"name": "ops", "token_hash": "secret", "role": "operator"}]},
     "http.tokens[0].token_hash"),
    ({"listen": "127.0.0.1:9108", "tokens": [{"name": "a.b", "token_hash": "pbkdf2_sha256$1$AA==$AA==",
                                               "role": "operator"}]}, "http.tokens[0].name"),
    ({"listen": "127.0.0.1:9108", "max_body_bytes": 10}, "http.max_body_bytes"),
])
def test_http_errors_name_the_key(table: dict, key: str) -> None:
    found = problems({"http": table})
    assert any(line.startswith(f"site.toml: {key}:") for line in found), found


def test_duplicate_token_names_are_refused() -> None:
    token = {"name": "ops", "token_hash": "pbkdf2_sha256$1$AA==$AA==", "role": "operator"}
    found = problems({"http": {"listen": "127.0.0.1:1", "tokens": [token, token]}})
    assert any("http.tokens" in line and "ops" in line for line in found), found


def test_tracing_defaults_off_and_checks_its_endpoint() -> None:
    assert parse_config(GATEWAY, "site.toml").tracing.enabled is False
    found = problems({"tracing": {"enabled": True, "endpoint": "localhost:4318"}})
    assert any(line.startswith("site.toml: tracing.endpoint:") for line in found), found
    found = problems({"tracing": {"sample_ratio": 2}})
    assert any(line.startswith("site.toml: tracing.sample_ratio:") for line in found), found
