"""The config's JSON Schema as an editor uses it: plugin keys included, shipped beside the configs and
named by their ``#:schema`` line (taplo / Even Better TOML), always up to date with the code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from bessgw.config import config_json_schema
from bessgw.plugin.manager import build_plugin_manager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "config" / "bessgw.schema.json"
SHIPPED = sorted((ROOT / "config").rglob("*.toml"))


@pytest.fixture(scope="module")
def schema() -> dict:
    return config_json_schema(build_plugin_manager(load_entry_points=True).collect())


def test_the_shipped_schema_file_is_up_to_date(schema: dict) -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == schema, \
        "config/bessgw.schema.json is stale: run `bessgw config-schema > config/bessgw.schema.json`"


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_names_the_schema_and_passes_it(config: Path) -> None:
    first = config.read_text().splitlines()[0]
    assert first.startswith("#:schema "), f"{config} does not start with a #:schema line"
    assert (config.parent / first.split(maxsplit=1)[1]).resolve() == SCHEMA_FILE
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in
              validator.iter_errors(tomllib.loads(config.read_text()))]
    assert not errors, errors


def validate(schema: dict, data: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]


UNIT_A = {"id": "A-01", "driver": "vendor_a", "modbus": {"host": "10.0.0.1"}}


def test_unit_options_are_checked_against_the_driver_s_own_model(schema: dict) -> None:
    good = {"gateway": {"id": "gw1"}, "units": [dict(UNIT_A, options={"verify_writes": False})]}
    assert validate(schema, good) == []
    typo = {"gateway": {"id": "gw1"}, "units": [dict(UNIT_A, options={"verify_write": False})]}
    assert any("verify_write" in error for error in validate(schema, typo))
    # a key of another driver (vendor_c's rated_power_kw) is not a vendor_a key
    other = {"gateway": {"id": "gw1"}, "units": [dict(UNIT_A, options={"rated_power_kw": 100.0})]}
    assert any("rated_power_kw" in error for error in validate(schema, other))
    wrong_type = {"gateway": {"id": "gw1"}, "units": [dict(UNIT_A, options={"verify_writes": "yes"})]}
    assert any("is not of type 'boolean'" in error for error in validate(schema, wrong_type))


def test_plugin_tables_are_known_per_driver(schema: dict) -> None:
    assert set(schema["properties"]["plugins"]["properties"]) == {"vendor_a", "vendor_b", "vendor_c"}
    assert validate(schema, {"gateway": {"id": "gw1"}, "plugins": {"vendor_x": {}}})
    assert validate(schema, {"gateway": {"id": "gw1"}, "plugins": {"vendor_a": {"poll": 1}}})  # takes none
