"""The chemistry plugin: discovery through entry points, and the plausibility of each chemistry's curves.

The figures are checked against what the literature says about each chemistry (flat LFP plateau, sloped
NMC, low LTO voltage, Nernstian VRFB), so a typo in a table shows up as a failed physical statement rather
than as a wrong number somewhere in a simulator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from bessgw_chemistry import Curve, Lfp, TabulatedChemistry

from bessgw.plugin import ChemistryEnvelope, ChemistryModel
from bessgw.testing import installed_plugins

NAMES = ("lfp", "nmc", "lto", "vrfb")


@pytest.fixture(scope="module")
def chemistries() -> dict[str, ChemistryModel]:
    """The models as core sees them: through the entry point, not by importing the classes."""
    registry = installed_plugins()
    return registry.chemistries


@pytest.fixture(params=NAMES)
def model(request: pytest.FixtureRequest, chemistries: dict[str, ChemistryModel]) -> ChemistryModel:
    return chemistries[request.param]


# ------------------------------------------------------------------------------------------ discovery


def test_entry_point_registers_the_four_chemistries() -> None:
    registry = installed_plugins()
    assert set(NAMES) <= set(registry.chemistries)
    for name in NAMES:
        assert registry.owner[("chemistry", name)] == "chemistry"
        assert registry.chemistries[name].name == name
        assert isinstance(registry.chemistries[name], ChemistryModel)
    assert not [f for f in registry.failures if f.name == "chemistry"]


def test_plugin_declares_the_api_version() -> None:
    from bessgw_chemistry import plugin

    assert plugin.BESSGW_PLUGIN_API == "1.0"


# -------------------------------------------------------------------------------------- common shape


def test_curves_are_vectorised(model: ChemistryModel) -> None:
    soc = np.linspace(0, 100, 11).reshape(11, 1)
    temp = np.linspace(-30, 60, 4)
    assert model.ocv(soc).shape == (11, 1)
    assert model.charge_derating(temp, soc).shape == (11, 4)
    assert model.discharge_derating(temp, soc).shape == (11, 4)
    assert float(model.ocv(50.0)) == pytest.approx(float(model.ocv(np.array([50.0]))[0]))


def test_ocv_increases_and_stays_inside_the_cell_limits(model: ChemistryModel) -> None:
    ocv = model.ocv(np.linspace(0, 100, 1001))
    assert np.all(np.diff(ocv) >= 0)
    assert ocv[0] == pytest.approx(model.cell_v_min, abs=0.05)
    assert ocv.max() <= model.cell_v_max
    window = model.ocv(np.linspace(model.soc_min_pct, model.soc_max_pct, 101))
    assert model.cell_v_min < window.min() and window.max() < model.cell_v_max
    assert window.min() <= model.cell_v_nominal <= window.max()


def test_figures_are_sane(model: ChemistryModel) -> None:
    assert 0 <= model.soc_min_pct < model.soc_max_pct <= 100
    assert model.temp_min_c < 25 < model.temp_max_c
    assert 0 < model.max_charge_c <= 10 and 0 < model.max_discharge_c <= 10
    assert 0.6 < model.round_trip_efficiency < 1
    assert model.description


def test_default_pack_voltage_suits_a_container(model: ChemistryModel) -> None:
    pack = model.equivalent_circuit(1, 1000.0, soc_pct=50.0)
    _, v_nominal, v_max = model.pack_voltage_range()
    assert 950 <= v_nominal <= 1350
    assert v_max <= 1500  # 1500 V DC equipment class
    assert pack.pack_v[0] == pytest.approx(pack.series_cells * float(model.ocv(50.0)))


def test_envelope_is_full_at_room_temperature_mid_soc(model: ChemistryModel) -> None:
    envelope = model.envelope(50.0, 25.0)
    assert isinstance(envelope, ChemistryEnvelope)
    assert envelope.chemistry == model.name
    assert envelope.max_charge_c == model.max_charge_c
    assert envelope.max_discharge_c == model.max_discharge_c
    assert (envelope.soc_min_pct, envelope.soc_max_pct) == (model.soc_min_pct, model.soc_max_pct)


def test_unknown_temperature_or_soc_allows_nothing(model: ChemistryModel) -> None:
    """NaN is what a unit reports when it does not know; it must mean 'no current', not a crash."""
    for temp, soc in ((math.nan, 50.0), (25.0, math.nan)):
        assert float(model.charge_derating(temp, soc)) == 0.0
        assert float(model.discharge_derating(temp, soc)) == 0.0
        envelope = model.envelope(soc, temp)
        assert envelope.max_charge_c == envelope.max_discharge_c == 0.0


@pytest.mark.parametrize("direction", ["charge", "discharge"])
def test_derating_is_monotone_beyond_the_comfortable_band(model: ChemistryModel, direction: str) -> None:
    derate = getattr(model, f"{direction}_derating")
    temps = np.linspace(model.temp_min_c - 20, model.temp_max_c + 20, 2001)
    factor = derate(temps, 50.0)
    assert np.all((factor >= 0) & (factor <= 1))
    peak = np.flatnonzero(factor == factor.max())
    below, above = factor[: peak[0] + 1], factor[peak[-1]:]
    assert np.all(np.diff(below) >= 0), "factor must not rise as temperature falls"
    assert np.all(np.diff(above) <= 0), "factor must not rise as temperature climbs"
    assert np.all(factor[temps <= model.temp_min_c] == 0)
    assert np.all(factor[temps >= model.temp_max_c] == 0)
    assert factor.max() == 1.0


def test_charging_tapers_near_full(model: ChemistryModel) -> None:
    assert float(model.charge_derating(25.0, 99.5)) < float(model.charge_derating(25.0, 50.0))
    assert float(model.charge_derating(25.0, 100.0)) == 0.0
    assert float(model.discharge_derating(25.0, 0.0)) == 0.0


# ------------------------------------------------------------------------------------ per chemistry


def test_lfp_has_a_flat_plateau(chemistries: dict[str, ChemistryModel]) -> None:
    lfp, nmc = chemistries["lfp"], chemistries["nmc"]
    plateau = lfp.ocv(np.linspace(15, 90, 76))
    assert plateau.min() >= 3.2 and plateau.max() <= 3.35
    assert np.ptp(plateau) < 0.13
    # the plateau is several times flatter than NMC over the same range
    assert np.ptp(plateau) * 3 < np.ptp(nmc.ocv(np.linspace(15, 90, 76)))


def test_lfp_does_not_charge_in_the_cold(chemistries: dict[str, ChemistryModel]) -> None:
    lfp = chemistries["lfp"]
    assert float(lfp.charge_derating(0.0, 50.0)) == 0.0
    assert float(lfp.charge_derating(-10.0, 50.0)) == 0.0
    near_zero = lfp.charge_derating(np.array([0.5, 2.0, 5.0, 10.0, 20.0]), 50.0)
    assert np.all(np.diff(near_zero) > 0), "derates continuously to 0 towards 0 °C"
    assert near_zero[0] < 0.05 and near_zero[-1] == 1.0
    # discharging in the cold is still allowed, derated
    assert 0 < float(lfp.discharge_derating(-10.0, 50.0)) < 1


def test_nmc_is_higher_and_sloped(chemistries: dict[str, ChemistryModel]) -> None:
    nmc = chemistries["nmc"]
    assert (nmc.cell_v_min, nmc.cell_v_max) == (3.0, 4.2)
    ocv = nmc.ocv(np.linspace(10, 90, 9))
    assert np.all(np.diff(ocv) > 0.02), "sloped everywhere in the window"
    assert ocv[-1] - ocv[0] > 0.4
    assert nmc.cell_v_nominal > chemistries["lfp"].ocv(100.0)
    assert float(nmc.charge_derating(0.0, 50.0)) == 0.0


def test_lto_voltage_range_and_cold_charging(chemistries: dict[str, ChemistryModel]) -> None:
    lto = chemistries["lto"]
    ocv = lto.ocv(np.linspace(0, 100, 101))
    assert ocv.min() >= 1.5 and ocv.max() <= 2.8
    assert lto.ocv(50.0) == pytest.approx(2.3, abs=0.05)
    assert float(lto.charge_derating(-10.0, 50.0)) >= 0.5
    assert float(lto.charge_derating(0.0, 50.0)) == 1.0
    for other in ("lfp", "nmc"):
        assert float(chemistries[other].charge_derating(-10.0, 50.0)) == 0.0
    assert lto.temp_min_c <= -30
    assert lto.soc_max_pct - lto.soc_min_pct >= 90


def test_vrfb_nernst_curve_window_and_efficiency(chemistries: dict[str, ChemistryModel]) -> None:
    vrfb = chemistries["vrfb"]
    assert vrfb.ocv(50.0) == pytest.approx(1.40, abs=0.02)
    ocv = vrfb.ocv(np.linspace(vrfb.soc_min_pct, vrfb.soc_max_pct, 71))
    assert ocv.min() >= 1.25 and ocv.max() <= 1.55
    # Nernst: symmetric about 50 % in log(SOC / (1 - SOC)), steeper towards the ends
    for x in (10.0, 25.0, 35.0):
        assert float(vrfb.ocv(50 + x) - vrfb.ocv(50)) == pytest.approx(float(vrfb.ocv(50) - vrfb.ocv(50 - x)),
                                                                       abs=0.01)
    assert float(vrfb.ocv(85) - vrfb.ocv(75)) > float(vrfb.ocv(55) - vrfb.ocv(45))
    assert 1.0 <= vrfb.cell_v_min <= 1.2 and 1.55 <= vrfb.cell_v_max <= 1.7
    assert vrfb.soc_max_pct - vrfb.soc_min_pct >= 60
    assert 0.65 <= vrfb.round_trip_efficiency <= 0.8
    lithium = min(chemistries[n].round_trip_efficiency for n in ("lfp", "nmc", "lto"))
    assert vrfb.round_trip_efficiency < lithium


def test_vrfb_has_no_cold_charging_penalty(chemistries: dict[str, ChemistryModel]) -> None:
    vrfb, lfp = chemistries["vrfb"], chemistries["lfp"]
    assert float(vrfb.charge_derating(5.0, 50.0)) == 1.0
    assert float(vrfb.charge_derating(5.0, 50.0)) == float(vrfb.discharge_derating(5.0, 50.0))
    assert float(lfp.charge_derating(5.0, 50.0)) < 0.5
    temps = np.linspace(10, 40, 31)
    assert np.all(vrfb.charge_derating(temps, 50.0) == 1.0)
    assert vrfb.temp_min_c >= 0 and vrfb.temp_max_c <= 50


# ---------------------------------------------------------------------------- table guard at import


def test_a_table_breaking_the_derating_promise_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="must be 0 at temp_min_c"):

        class WarmCold(Lfp):  # derating not 0 at the hard low limit
            charge_temp_curve = Curve([-20, 20, 55], [0.5, 1.0, 0.0])

    with pytest.raises(TypeError, match="unimodal"):

        class Bumpy(Lfp):  # rises again further out in the cold: not monotone
            charge_temp_curve = Curve([-20, -10, 0, 20, 55], [0.0, 0.5, 0.0, 1.0, 0.0])

    with pytest.raises(TypeError, match="OCV"):

        class Falling(Lfp):
            ocv_curve = Curve([0, 50, 100], [3.0, 3.3, 3.2])

    assert issubclass(Lfp, TabulatedChemistry)


def test_curve_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Curve([0, 0, 1], [1, 2, 3])
    with pytest.raises(ValueError):
        Curve([0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        Curve([0, 1], [1, math.nan])
    curve = Curve([0, 10], [0, 1])
    assert curve(np.array([-5.0, 5.0, 50.0])).tolist() == [0.0, 0.5, 1.0]
