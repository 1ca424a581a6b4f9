"""The built-in chemistries pass the same conformance kit a third-party chemistry must pass."""

from __future__ import annotations

import pytest

from bessgw.plugin.manager import build_plugin_manager
from bessgw.testing import ChemistryConformance

NAMES = ["lfp", "nmc", "lto", "vrfb"]


class TestBuiltinChemistries(ChemistryConformance):
    @pytest.fixture(params=NAMES)
    def chemistry(self, request):
        return build_plugin_manager().collect().chemistries[request.param]
