"""Entry point of the vendor_a plugin: its Modbus driver and its container simulator.

Registered through the same hooks a third-party plugin uses (``bessgw`` entry-point group).
"""

from __future__ import annotations

from bessgw.plugin import DriverSpec, SimulatorSpec, hookimpl
from bessgw_vendor_a.driver import VendorAUnitOptions, make_driver
from bessgw_vendor_a.simulator import SPEC as SIMULATOR

BESSGW_PLUGIN_API = "1.0"


@hookimpl
def register_drivers() -> list[DriverSpec]:
    return [
        DriverSpec(
            name="vendor_a",
            transport="modbus",
            factory=make_driver,
            unit_options=VendorAUnitOptions,
            min_protocol_version="1",
            description="vendor_a LFP/NMC containers over Modbus TCP (firmware v1 and v2 register maps)",
        )
    ]


@hookimpl
def register_simulators() -> list[SimulatorSpec]:
    return [SIMULATOR]
