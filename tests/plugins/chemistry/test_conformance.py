"""The built-in chemistries pass the same conformance kit a third-party chemistry must pass."""

from __future__ import annotations

import pytest

from bessgw.testing import ChemistryConformance, installed_plugins

NAMES = ["lfp", "nmc", "lto", "vrfb"]


class TestBuiltinChemistries(ChemistryConformance):
    @pytest.fixture(params=NAMES)
    def chemistry(self, request):
        return installed_plugins().chemistries[request.param]
