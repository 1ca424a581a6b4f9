"""The docs example driver passes the driver conformance kit (the kit itself, exercised end to end)."""

from __future__ import annotations

import contextlib
import importlib

import pytest

from bessgw.plugin import DriverContext
from bessgw.testing import DriverConformance


class TestDocsExampleDriver(DriverConformance):
    @pytest.fixture
    def driver_spec(self, plugin_path):
        return importlib.import_module("bessgw_example").register_drivers()[0]

    @pytest.fixture
    def open_driver(self, driver_spec):
        @contextlib.asynccontextmanager
        async def open_():
            options = driver_spec.unit_options()
            yield driver_spec.factory(DriverContext(unit_id="mem-1", link=None, options=options))

        return open_
