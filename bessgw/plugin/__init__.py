"""The public plugin API of bessgw: the only module a plugin imports.

Everything a vendor-driver, chemistry or simulator plugin needs is re-exported here, and nothing here is
removed or changed incompatibly without a new major :data:`PLUGIN_API_VERSION`. See ``docs/plugins.md``.
"""

import pluggy

from bessgw.errors import (
    BessgwError,
    DeviceError,
    DeviceProtocolError,
    DeviceTimeoutError,
    DeviceUnavailableError,
    IncompatibleDeviceError,
    PluginError,
)
from bessgw.model import (
    Capability,
    ChemistryEnvelope,
    EffectiveLimits,
    Quality,
    Setpoint,
    SiteLimits,
    Telemetry,
    UnitState,
    parse_version,
)
from bessgw.plugin.can import CanFrame, CanLink
from bessgw.plugin.hookspecs import PROJECT_NAME
from bessgw.plugin.modbus import (
    MAX_READ_REGISTERS,
    MAX_WRITE_REGISTERS,
    RegisterDecoder,
    RegisterField,
    RegisterLink,
    RegisterSnapshot,
    RegisterSpan,
    RegisterType,
    WordOrder,
    decode_string,
    decode_value,
    encode_string,
    encode_value,
)
from bessgw.plugin.opcua import ChangeHandler, DataChange, OpcUaLink
from bessgw.plugin.roles import (
    ChemistryModel,
    DriverContext,
    DriverSpec,
    EquivalentCircuit,
    Logger,
    SimulatorContext,
    SimulatorSpec,
    TelemetryObserver,
    VendorDriver,
)
from bessgw.plugin.version import PLUGIN_API_VERSION

#: decorator marking a function as a bessgw hook implementation
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "MAX_READ_REGISTERS",
    "MAX_WRITE_REGISTERS",
    "PLUGIN_API_VERSION",
    "BessgwError",
    "CanFrame",
    "CanLink",
    "Capability",
    "ChangeHandler",
    "ChemistryEnvelope",
    "ChemistryModel",
    "DataChange",
    "DeviceError",
    "DeviceProtocolError",
    "DeviceTimeoutError",
    "DeviceUnavailableError",
    "DriverContext",
    "DriverSpec",
    "EffectiveLimits",
    "EquivalentCircuit",
    "IncompatibleDeviceError",
    "Logger",
    "OpcUaLink",
    "PluginError",
    "Quality",
    "RegisterDecoder",
    "RegisterField",
    "RegisterLink",
    "RegisterSnapshot",
    "RegisterSpan",
    "RegisterType",
    "Setpoint",
    "SimulatorContext",
    "SimulatorSpec",
    "SiteLimits",
    "Telemetry",
    "TelemetryObserver",
    "UnitState",
    "VendorDriver",
    "WordOrder",
    "decode_string",
    "decode_value",
    "encode_string",
    "encode_value",
    "hookimpl",
    "parse_version",
]
