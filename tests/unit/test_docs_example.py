"""The complete minimal plugin in docs/plugins.md works as written."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from pydantic import ValidationError

from bessgw.model import Setpoint
from bessgw.plugin import DriverContext
from bessgw.plugin.manager import build_plugin_manager


def test_example_plugin_registers_its_driver(plugin_path) -> None:
    registry = build_plugin_manager(load_entry_points=False, modules=["bessgw_example"]).collect()
    assert registry.failures == []
    assert list(registry.drivers) == ["in_memory"]


def test_example_driver_integrates_power_into_soc(plugin_path) -> None:
    module = importlib.import_module("bessgw_example")
    now = [1000.0]
    options = module.InMemoryOptions(energy_kwh=1000, power_kw=500, soc_pct=50)
    driver = module.InMemoryBattery(DriverContext(unit_id="m", link=None, options=options, clock=lambda: now[0]))

    async def scenario() -> tuple[float, float]:
        offer = await driver.identify()
        await driver.write_setpoint(Setpoint(p_kw=500.0, command_id="c1"))
        now[0] += 360.0  # a tenth of an hour at 500 kW = 50 kWh = 5 % of 1000 kWh
        telemetry = await driver.read()
        return offer.max_discharge_kw, telemetry.soc_pct

    power, soc = asyncio.run(scenario())
    assert power == 500.0
    assert soc == pytest.approx(45.0)


def test_example_options_reject_bad_values(plugin_path) -> None:
    module = importlib.import_module("bessgw_example")
    with pytest.raises(ValidationError):
        module.InMemoryOptions(energy_kwh=-1)
    with pytest.raises(ValidationError):
        module.InMemoryOptions(colour="red")
