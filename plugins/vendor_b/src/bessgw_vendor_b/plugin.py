"""Entry point of the vendor_b plugin: its OPC UA driver and its container simulator."""

from __future__ import annotations

from bessgw.plugin import DriverSpec, SimulatorSpec, hookimpl
from bessgw_vendor_b.driver import VendorBUnitOptions, make_driver
from bessgw_vendor_b.simulator import SPEC as SIMULATOR

BESSGW_PLUGIN_API = "1.0"


@hookimpl
def register_drivers() -> list[DriverSpec]:
    return [
        DriverSpec(
            name="vendor_b",
            transport="opcua",
            factory=make_driver,
            unit_options=VendorBUnitOptions,
            min_protocol_version="2",
            description="vendor_b vanadium redox flow battery containers over OPC UA (subscriptions)",
        )
    ]


@hookimpl
def register_simulators() -> list[SimulatorSpec]:
    return [SIMULATOR]
