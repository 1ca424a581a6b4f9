"""The conformance kit catches broken plugins (run through pytest's own pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration  # the kit run by pytest in subprocesses, against real event loops

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
    assert outcomes.get("failed", 0) == 4
    result.stdout.fnmatch_lines([
        "*test_ocv_is_vectorised_monotone_and_within_cell_limits*",
        "*test_derating_is_a_factor_and_zero_outside_the_window*",
        "*test_envelope_carries_the_windows_and_closes_outside_them*",
        "*test_curves_broadcast_over_soc_too*",
    ], consecutive=False)


def test_kit_exposes_the_registry_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixture="def test_it(bessgw_registry):\n    assert 'lfp' in bessgw_registry.chemistries\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


FAKE_DEVICE_PLUGIN = '''
from bessgw.plugin import Capability, DeviceUnavailableError, DriverSpec, Telemetry, UnitState, VendorDriver, hookimpl

BESSGW_PLUGIN_API = "1.0"
DEVICE = {"online": True}


class Honest(VendorDriver):
    """Raises while its device is away, as a driver must."""

    async def identify(self):
        self.check()
        return Capability(max_charge_kw=100, max_discharge_kw=100, energy_kwh=200, chemistry="lfp")

    async def read(self):
        self.check()
        return Telemetry(unit_id=self.context.unit_id, timestamp=self.context.clock(), state=UnitState.RUNNING,
                         soc_pct=50.0, cell_temp_min_c=24.0, cell_temp_max_c=26.0)

    async def write_setpoint(self, setpoint):
        self.check()

    def check(self):
        if not DEVICE["online"]:
            raise DeviceUnavailableError("device away")


class Cached(Honest):
    """The classic bug of push-style drivers: the last values, stamped now, while the device is away."""

    async def read(self):
        return Telemetry(unit_id=self.context.unit_id, timestamp=self.context.clock(), state=UnitState.RUNNING,
                         soc_pct=50.0, cell_temp_min_c=24.0, cell_temp_max_c=26.0)


@hookimpl
def register_drivers():
    return [DriverSpec(name="honest", transport="none", factory=Honest),
            DriverSpec(name="cached", transport="none", factory=Cached)]
'''

FAKE_DEVICE_TESTS = '''
import contextlib

import pytest

import bessgw_fake_device as plugin
from bessgw.testing import DeviceUnderTest, DriverConformance, unit_without_link


async def stop():
    plugin.DEVICE["online"] = False


async def start():
    plugin.DEVICE["online"] = True


class Base(DriverConformance):
    @pytest.fixture
    def open_device(self):
        @contextlib.asynccontextmanager
        async def open_():
            plugin.DEVICE["online"] = True
            async with unit_without_link(self.driver_name, timing={"stale_after_s": 0.3, "bad_after_s": 0.6}) as unit:
                yield DeviceUnderTest(unit, stop=stop, start=start)

        return open_


class TestHonest(Base):
    driver_name = "honest"


class TestCached(Base):
    driver_name = "cached"
'''


def test_kit_fails_a_driver_that_shows_old_data_as_fresh(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(bessgw_fake_device=FAKE_DEVICE_PLUGIN, test_fake_device=FAKE_DEVICE_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.setenv("BESSGW_PLUGINS", "bessgw_fake_device")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-k", "stopped_device")
    result.assert_outcomes(passed=1, failed=1)  # the honest driver passes the same test
    result.stdout.fnmatch_lines(["FAILED *TestCached::test_a_stopped_device_is_never_shown_good_and_is_reconnected*"])
