"""The conformance kit catches broken plugins (run through pytest's own pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BROKEN_CHEMISTRY = '''
import numpy as np
import pytest
from bessgw.plugin.manager import build_plugin_manager
from bessgw.testing import ChemistryConformance

class Backwards(type(build_plugin_manager().collect().chemistries["lfp"])):
    name = "backwards"
    def ocv(self, soc_pct):
        return 3.6 - np.asarray(soc_pct, dtype=float) * 0.005    # falls as SOC rises: wrong
    def charge_derating(self, temp_c, soc_pct):
        return np.ones_like(np.asarray(temp_c, dtype=float))      # charges at any temperature: wrong

class TestBackwards(ChemistryConformance):
    @pytest.fixture
    def chemistry(self):
        return Backwards()
'''


def test_kit_fails_a_broken_chemistry(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken=BROKEN_CHEMISTRY)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 2
    result.stdout.fnmatch_lines([
        "*test_ocv_is_vectorised_monotone_and_within_cell_limits*",
        "*test_derating_is_a_factor_and_zero_outside_the_window*",
    ])


def test_kit_exposes_the_registry_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixture="def test_it(bessgw_registry):\n    assert 'lfp' in bessgw_registry.chemistries\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
