"""Entry point of the vendor_c plugin: LFP containers whose BMS speaks CAN (see README.md)."""

from __future__ import annotations

from bessgw.plugin import DriverSpec, SimulatorSpec, hookimpl
from bessgw_vendor_c.driver import UnitOptions, VendorCDriver
from bessgw_vendor_c.simulator import SPEC as SIMULATOR

BESSGW_PLUGIN_API = "1.0"

DRIVER = DriverSpec(
    name="vendor_c",
    transport="can",
    factory=VendorCDriver,
    unit_options=UnitOptions,
    min_protocol_version="1",
    description="vendor_c LFP container, BMS on CAN (DBC protocol 1.x)",
)


@hookimpl
def register_drivers() -> list[DriverSpec]:
    return [DRIVER]


@hookimpl
def register_simulators() -> list[SimulatorSpec]:
    return [SIMULATOR]
