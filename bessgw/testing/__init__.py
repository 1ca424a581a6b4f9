"""Conformance kit for plugin authors: real links, supervised units and the suites every plugin passes.

Subclass the base classes in your plugin's tests and provide the fixtures they ask for; every test in
them then runs against your plugin, through the gateway's own transports and unit supervisor. The
first-party plugins pass the same kit. ::

    # tests/test_conformance.py of your plugin
    import pytest
    from bessgw.testing import ChemistryConformance

    class TestMyChemistry(ChemistryConformance):
        @pytest.fixture
        def chemistry(self):
            return MyChemistry()

:class:`DriverConformance` runs a driver against its device over a real link: open the unit with
:func:`modbus_unit`, :func:`can_unit`, :func:`opcua_unit` or :func:`unit_without_link` (each an async
context manager yielding a :class:`SupervisedUnit`). :func:`wait_until` is the bounded wait to use instead
of sleeps. See ``docs/plugins.md``.

The kit is also registered as the pytest plugin ``bessgw`` (entry point ``pytest11``), which adds the
``bessgw_registry`` fixture: the plugin registry of the installed plugins.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module defining it; imported on first use, so that merely having the kit installed (it is
#: a pytest plugin) costs other projects' test runs no import of the gateway
_HOMES = {
    "ChemistryConformance": "chemistry",
    "DeviceUnderTest": "driver",
    "DriverConformance": "driver",
    "RecordingLog": "log",
    "TEST_TIMING": "southbound",
    "Southbound": "southbound",
    "SupervisedUnit": "southbound",
    "can_unit": "southbound",
    "check_config": "southbound",
    "installed_plugins": "southbound",
    "modbus_unit": "southbound",
    "opcua_unit": "southbound",
    "supervised_unit": "southbound",
    "unit_without_link": "southbound",
    "wait_until": "wait",
    "wait_until_sync": "wait",
}

__all__ = [
    "TEST_TIMING",
    "ChemistryConformance",
    "DeviceUnderTest",
    "DriverConformance",
    "RecordingLog",
    "Southbound",
    "SupervisedUnit",
    "can_unit",
    "check_config",
    "installed_plugins",
    "modbus_unit",
    "opcua_unit",
    "supervised_unit",
    "unit_without_link",
    "wait_until",
    "wait_until_sync",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bessgw.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bessgw.testing.{home}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
