"""The vendor_c plugin as core sees it: registration, options, package data, public-API-only imports."""

from __future__ import annotations

import ast
import asyncio
from importlib import resources
from pathlib import Path

import bessgw_vendor_c
import pytest
from bessgw_vendor_c.driver import UnitOptions, VendorCDriver

from bessgw.config import check_against_plugins, parse_config
from bessgw.errors import ConfigError
from bessgw.plugin.manager import build_plugin_manager
from tests.plugins.vendor_c.harness import CanGateway, can_config, simulator, unique_channel


def test_entry_point_registers_the_driver_and_the_simulator() -> None:
    registry = build_plugin_manager().collect()
    spec = registry.drivers["vendor_c"]
    assert spec.transport == "can" and spec.unit_options is UnitOptions
    assert registry.owner[("driver", "vendor_c")] == "vendor_c"
    assert registry.owner[("simulator", "vendor_c")] == "vendor_c"
    assert "vendor_c" in registry.simulators
    assert not [f for f in registry.failures if f.name == "vendor_c"]


def test_dbc_ships_as_package_data() -> None:
    dbc = resources.files("bessgw_vendor_c").joinpath("vendor_c.dbc")
    assert dbc.is_file() and "BO_ 2550140928 BMS_Status" in dbc.read_text(encoding="utf-8")


def test_plugin_imports_only_the_public_plugin_api() -> None:
    package = Path(bessgw_vendor_c.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("bessgw.") or name == "bessgw":
                    assert name == "bessgw.plugin", f"{source.name} imports {name}"


def test_unit_options_are_validated_with_key_paths() -> None:
    registry = build_plugin_manager().collect()
    good = parse_config({"gateway": {"id": "g"}, "units": [
        {"id": "c1", "driver": "vendor_c", "can": {"node_id": 1}, "options": {"rated_power_kw": 2000}}]})
    check_against_plugins(good, registry, "site.toml")
    bad = parse_config({"gateway": {"id": "g"}, "units": [
        {"id": "c1", "driver": "vendor_c", "can": {"node_id": 1}, "options": {"rated_power_kw": -1, "bogus": 1}}]})
    with pytest.raises(ConfigError) as info:
        check_against_plugins(bad, registry, "site.toml")
    text = str(info.value)
    assert "site.toml: units[0].options.rated_power_kw" in text and "units[0].options.bogus" in text


def test_a_bms_speaking_another_protocol_major_is_refused_with_the_reason() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1, protocol_version=2), \
                CanGateway(can_config(channel, [1])) as gw:
            unit = await gw.wait_for("c1", lambda u: bool(u.refused_reason), 5.0)
            assert "speaks protocol 2" in unit.refused_reason and unit.limits is None
            assert isinstance(unit._driver, VendorCDriver)

    asyncio.run(scenario())
