"""Configuration: the TOML schema, loading, and error messages a site engineer can act on.

One TOML file per gateway is parsed with tomllib (tomli below Python 3.11) and validated by pydantic into
one typed, frozen :class:`Config`. Unknown keys are errors. Every error names the file, the key path and
what was expected, one line each::

    config/site.toml: units[3].modbus.port: Input should be less than or equal to 65535 (got 70000)

Plugin-specific tables (``plugins.<name>`` and ``units[i].options``) are validated in a second pass by the
models the plugins register, so their errors read the same way.
"""

from bessgw.config.base import IDENTIFIER, StrictModel
from bessgw.config.campus import CampusSection, CoordinationSection
from bessgw.config.control import ControlSection, ControlSourceTable
from bessgw.config.federation import FEDERATION_KEY_BYTES, FederationSection, decode_campus_key
from bessgw.config.loading import (
    check_against_plugins,
    config_json_schema,
    format_validation_error,
    load_config,
    named_files,
    parse_config,
    plugin_options,
    read_toml,
    unit_options,
)
from bessgw.config.northbound import NorthboundSection, OpcUaSettings, OpcUaUser
from bessgw.config.schema import Config, GatewaySection
from bessgw.config.southbound import (
    CanLink,
    CanSettings,
    ModbusLink,
    ModbusSettings,
    OpcUaClientSettings,
    OpcUaDeviceLink,
    SimulatorSection,
    SiteLimitsTable,
    SouthboundSection,
    UnitDefaults,
    UnitSection,
)

__all__ = [
    "FEDERATION_KEY_BYTES",
    "IDENTIFIER",
    "CampusSection",
    "CanLink",
    "CanSettings",
    "Config",
    "ControlSection",
    "ControlSourceTable",
    "CoordinationSection",
    "FederationSection",
    "GatewaySection",
    "ModbusLink",
    "ModbusSettings",
    "NorthboundSection",
    "OpcUaClientSettings",
    "OpcUaDeviceLink",
    "OpcUaSettings",
    "OpcUaUser",
    "SimulatorSection",
    "SiteLimitsTable",
    "SouthboundSection",
    "StrictModel",
    "UnitDefaults",
    "UnitSection",
    "check_against_plugins",
    "config_json_schema",
    "decode_campus_key",
    "format_validation_error",
    "load_config",
    "named_files",
    "parse_config",
    "plugin_options",
    "read_toml",
    "unit_options",
]
