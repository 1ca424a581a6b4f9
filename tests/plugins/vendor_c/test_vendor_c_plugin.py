"""The vendor_c plugin as core sees it: registration, options, package data, the conformance kit."""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources

import pytest
from bessgw_vendor_c.driver import UnitOptions, VendorCDriver

from bessgw.plugin import BessgwError
from bessgw.testing import DeviceUnderTest, DriverConformance, can_unit, check_config, installed_plugins
from tests.plugins.vendor_c.harness import CanGateway, can_config, simulator, unique_channel

pytestmark = pytest.mark.integration  # the simulator on a python-can virtual bus


def test_entry_point_registers_the_driver_and_the_simulator() -> None:
    registry = installed_plugins()
    spec = registry.drivers["vendor_c"]
    assert spec.transport == "can" and spec.unit_options is UnitOptions
    assert registry.owner[("driver", "vendor_c")] == "vendor_c"
    assert registry.owner[("simulator", "vendor_c")] == "vendor_c"
    assert "vendor_c" in registry.simulators
    assert not [f for f in registry.failures if f.name == "vendor_c"]


def test_dbc_ships_as_package_data() -> None:
    dbc = resources.files("bessgw_vendor_c").joinpath("vendor_c.dbc")
    assert dbc.is_file() and "BO_ 2550140928 BMS_Status" in dbc.read_text(encoding="utf-8")


def test_unit_options_are_validated_with_key_paths() -> None:
    registry = installed_plugins()
    check_config({"gateway": {"id": "g"}, "units": [
        {"id": "c1", "driver": "vendor_c", "can": {"node_id": 1}, "options": {"rated_power_kw": 2000}}]},
        "site.toml", registry)
    bad = {"gateway": {"id": "g"}, "units": [
        {"id": "c1", "driver": "vendor_c", "can": {"node_id": 1}, "options": {"rated_power_kw": -1, "bogus": 1}}]}
    with pytest.raises(BessgwError) as info:
        check_config(bad, "site.toml", registry)
    text = str(info.value)
    assert "site.toml: units[0].options.rated_power_kw" in text and "units[0].options.bogus" in text


def test_a_bms_speaking_another_protocol_major_is_refused_with_the_reason() -> None:
    async def scenario() -> None:
        channel = unique_channel()
        async with simulator(channel, count=1, protocol_version=2), \
                CanGateway(can_config(channel, [1])) as gw:
            unit = await gw.wait_for("c1", lambda u: bool(u.refused_reason), 5.0)
            assert "speaks protocol 2" in unit.refused_reason and unit.limits is None
            assert isinstance(unit.driver, VendorCDriver)

    asyncio.run(scenario())


class TestVendorCConformance(DriverConformance):
    driver_name = "vendor_c"

    @pytest.fixture
    def open_device(self):
        @contextlib.asynccontextmanager
        async def open_():
            channel = unique_channel()
            async with simulator(channel, count=1) as sim, can_unit("vendor_c", channel, node_id=1) as unit:
                yield DeviceUnderTest(unit, stop=sim.stop, start=sim.start)

        return open_
