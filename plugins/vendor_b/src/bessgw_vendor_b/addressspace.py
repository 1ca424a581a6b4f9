"""The vendor_b container address space: browse names shared by the driver and the simulator.

Every container is an object ``Objects/Containers/<name>`` in namespace :data:`NAMESPACE_URI` with three
folders (see the plugin README for types and units).
"""

from __future__ import annotations

NAMESPACE_URI = "urn:vendor-b:vrfb"
CONTAINERS = "Containers"

#: identity block: browse name -> OPC UA type
IDENTITY = {
    "Vendor": "string",
    "Model": "string",
    "SerialNumber": "string",
    "FirmwareVersion": "string",
    "ProtocolVersion": "string",
    "RatedChargeKw": "double",
    "RatedDischargeKw": "double",
    "RatedEnergyKwh": "double",
    "MaxReactiveKvar": "double",
    "SocMinPct": "double",
    "SocMaxPct": "double",
    "ElectrolyteTempMinC": "double",
    "ElectrolyteTempMaxC": "double",
    "StackVoltageMinV": "double",
    "StackVoltageMaxV": "double",
    "RampKwPerS": "double",
}

#: telemetry, published on change; ``Sequence`` advances on every controller cycle
TELEMETRY = {
    "Sequence": "uint32",
    "State": "int32",  # 0 standby, 1 running, 2 fault
    "SocPct": "double",
    "PowerKw": "double",  # > 0 discharges
    "ReactivePowerKvar": "double",
    "StackVoltageV": "double",
    "StackCurrentA": "double",
    "CellVoltageMinV": "double",
    "CellVoltageMaxV": "double",
    "ElectrolyteTempC": "double",
    "PumpRunning": "boolean",
    "AlarmCode": "uint32",
}

#: writable control variables
CONTROL = {
    "PowerSetpointKw": "double",
    "ReactiveSetpointKvar": "double",
    "HeartbeatCounter": "uint32",
}

#: methods on the Control folder: name -> (input argument names, output argument names)
METHODS = {
    "SetPower": (("PKw", "QKvar"), ("AcceptedPKw",)),
    "Start": ((), ()),
    "Stop": ((), ()),
    "ResetFault": ((), ()),
}

STATE_STANDBY, STATE_RUNNING, STATE_FAULT = 0, 1, 2


def path(folder: str, name: str) -> str:
    """A browse path relative to the container object."""
    return f"{folder}/{name}"
