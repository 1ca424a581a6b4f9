"""``[federation]`` config: keys, seeds and timing are validated with clear messages."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from bessgw.config import FederationSection, parse_config
from bessgw.errors import ConfigError

KEY = base64.b64encode(os.urandom(32)).decode()


def load(table: dict) -> object:
    return parse_config({"gateway": {"id": "gw1"}, "federation": table}, "gw1.toml")


def problems(table: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load(table)
    return "\n".join(info.value.problems)


def test_defaults_and_optional_section() -> None:
    assert parse_config({"gateway": {"id": "gw1"}}).federation is None
    section = load({"bind_host": "127.0.0.1", "keys": [KEY]}).federation
    assert section.max_datagram_bytes == 1400 and section.bind_port == 7946
    assert section.campus_keys() == [base64.b64decode(KEY)]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"bind_host": "127.0.0.1", "keys": ["not base64!"]}, "keys[0]: campus key is not valid base64"),
        ({"bind_host": "127.0.0.1", "keys": [base64.b64encode(b"short").decode()]}, "must decode to 32 bytes (got 5)"),
        ({"bind_host": "127.0.0.1"}, "set keys"),
        ({"keys": [KEY]}, "set advertise_host"),
        ({"bind_host": "127.0.0.1", "keys": [KEY], "seeds": ["gw2"]}, "seed 'gw2' must be host:port"),
        ({"bind_host": "127.0.0.1", "keys": [KEY], "probe_timeout_s": 2.0}, "probe_timeout_s must be shorter"),
        ({"bind_host": "127.0.0.1", "keys": [KEY], "max_datagram_bytes": 100}, "federation.max_datagram_bytes"),
        ({"bind_host": "127.0.0.1", "keys": [KEY], "gossip": 1}, "federation.gossip: unknown key"),
    ],
)
def test_errors_name_the_key(table: dict, message: str) -> None:
    assert message in problems(table)


def test_key_file_rotation_order_and_errors(tmp_path: Path) -> None:
    new, old = os.urandom(32), os.urandom(32)
    path = tmp_path / "campus.keys"
    path.write_text(f"# primary first\n{base64.b64encode(new).decode()}\n\n{base64.b64encode(old).decode()}\n")
    section = FederationSection(bind_host="127.0.0.1", key_file=path)
    assert section.campus_keys() == [new, old]
    path.write_text("AAAA\n")
    with pytest.raises(ConfigError, match="line 1: campus key must decode to 32 bytes"):
        section.campus_keys()
    with pytest.raises(ConfigError, match="cannot read"):
        FederationSection(bind_host="127.0.0.1", key_file=tmp_path / "missing").campus_keys()
