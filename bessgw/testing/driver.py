"""Conformance tests every VendorDriver must pass against its device (or the plugin's simulator).

The subclass provides ``driver_spec`` (the :class:`DriverSpec` under test) and ``open_driver``: an async
context manager factory that starts whatever the driver talks to (typically the plugin's simulator on
loopback and the gateway transport) and yields a ready driver instance, all inside the test's event loop::

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver_spec(self):
            return MY_SPEC

        @pytest.fixture
        def open_driver(self):
            @contextlib.asynccontextmanager
            async def open_():
                async with my_simulator() as device:
                    yield MyDriver(DriverContext(unit_id="u1", link=device.link, options=...))
            return open_
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from bessgw.model import Capability, Setpoint, Telemetry
from bessgw.plugin import DriverSpec, VendorDriver

OpenDriver = Callable[[], AbstractAsyncContextManager[VendorDriver]]
TIMEOUT_S = 20.0


def run(coroutine) -> object:
    """Run one scenario in a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT_S))


class DriverConformance:
    """Subclass with ``driver_spec`` and ``open_driver`` fixtures."""

    @pytest.fixture
    def driver_spec(self) -> DriverSpec:  # pragma: no cover - the subclass provides it
        raise NotImplementedError("provide a `driver_spec` fixture")

    @pytest.fixture
    def open_driver(self) -> OpenDriver:  # pragma: no cover - the subclass provides it
        raise NotImplementedError("provide an `open_driver` fixture")

    def test_spec(self, driver_spec: DriverSpec) -> None:
        assert re.fullmatch(r"[a-z][a-z0-9_]{1,31}", driver_spec.name)
        assert driver_spec.transport in {"none", "modbus", "can", "opcua"}
        assert callable(driver_spec.factory)
        for model in (driver_spec.unit_options, driver_spec.plugin_options):
            if model is not None:
                assert model.model_config.get("extra") == "forbid", "option tables must refuse unknown keys"

    def test_identify_offers_a_capability(self, open_driver: OpenDriver) -> None:
        async def scenario() -> Capability:
            async with open_driver() as driver:
                return await driver.identify()

        offer = run(scenario())
        assert isinstance(offer, Capability)
        assert offer.energy_kwh > 0 and (offer.max_charge_kw > 0 or offer.max_discharge_kw > 0)

    def test_read_returns_telemetry_for_the_unit(self, open_driver: OpenDriver) -> None:
        async def scenario() -> tuple[VendorDriver, Telemetry]:
            async with open_driver() as driver:
                await driver.identify()
                return driver, await driver.read()

        driver, telemetry = run(scenario())
        assert isinstance(telemetry, Telemetry)
        assert telemetry.unit_id == driver.context.unit_id
        assert math.isfinite(telemetry.timestamp)

    def test_zero_setpoint_is_accepted(self, open_driver: OpenDriver) -> None:
        async def scenario() -> None:
            async with open_driver() as driver:
                await driver.identify()
                await driver.write_setpoint(Setpoint(p_kw=0.0, q_kvar=0.0, command_id="conformance-0"))
                await driver.heartbeat()

        run(scenario())

    def test_close_is_idempotent(self, open_driver: OpenDriver) -> None:
        async def scenario() -> None:
            async with open_driver() as driver:
                await driver.identify()
                await driver.close()
                await driver.close()

        run(scenario())
