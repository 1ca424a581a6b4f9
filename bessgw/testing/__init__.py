"""Conformance kit for plugin authors.

Subclass the base classes in your plugin's tests and provide the fixtures they ask for; every test in
them then runs against your plugin. The first-party plugins pass the same kit. ::

    # tests/test_conformance.py of your plugin
    import pytest
    from bessgw.testing import ChemistryConformance

    class TestMyChemistry(ChemistryConformance):
        @pytest.fixture
        def chemistry(self):
            return MyChemistry()

The kit is also registered as the pytest plugin ``bessgw`` (entry point ``pytest11``), which adds the
``bessgw_registry`` fixture: the plugin registry of the installed plugins.
"""

from bessgw.testing.chemistry import ChemistryConformance
from bessgw.testing.driver import DriverConformance

__all__ = ["ChemistryConformance", "DriverConformance"]
