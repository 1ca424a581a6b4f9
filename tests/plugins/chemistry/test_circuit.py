"""The vectorised equivalent circuit the device simulators step at 10 Hz.

Checks physics a simulator user would notice: SOC moves the right way by the right amount of energy,
the voltage sags under load and recovers, heat builds up and decays to ambient, limits hold, and the
vectorised model is exactly the per-unit model run side by side.
"""

from __future__ import annotations

import numpy as np
import pytest

from bessgw.plugin import ChemistryModel, EquivalentCircuit
from bessgw.testing import installed_plugins

NAMES = ("lfp", "nmc", "lto", "vrfb")
ENERGY_KWH = 2000.0


@pytest.fixture(scope="module")
def chemistries() -> dict[str, ChemistryModel]:
    return installed_plugins().chemistries


@pytest.fixture(params=NAMES)
def model(request: pytest.FixtureRequest, chemistries: dict[str, ChemistryModel]) -> ChemistryModel:
    return chemistries[request.param]


def rated_kw(model: ChemistryModel, fraction: float = 0.5) -> float:
    """A power the chemistry can take continuously: ``fraction`` of its C-rate on ENERGY_KWH."""
    return fraction * min(model.max_charge_c, model.max_discharge_c) * ENERGY_KWH


def run(pack: EquivalentCircuit, p_kw: float | np.ndarray, seconds: float, dt_s: float = 1.0,
        ambient_c: float = 25.0) -> float:
    """Step ``pack`` for ``seconds``; return the energy delivered at the terminals of unit 0, kWh."""
    delivered = 0.0
    for _ in range(round(seconds / dt_s)):
        pack.step(np.broadcast_to(np.asarray(p_kw, dtype=float), pack.soc_pct.shape), dt_s, ambient_c)
        delivered += float(pack.pack_v[0] * pack.pack_a[0]) * dt_s / 3.6e6
    return delivered


def test_state_arrays_have_one_entry_per_unit(model: ChemistryModel) -> None:
    pack = model.equivalent_circuit(7, ENERGY_KWH, soc_pct=40.0, temp_c=20.0)
    for name in ("soc_pct", "temp_c", "pack_v", "pack_a", "cell_v"):
        assert getattr(pack, name).shape == (7,)
    assert np.all(pack.soc_pct == 40.0) and np.all(pack.temp_c == 20.0)
    assert np.all(pack.pack_a == 0.0)
    assert pack.cell_v == pytest.approx(model.ocv(40.0))


def test_discharge_lowers_soc_and_the_voltage_sags(model: ChemistryModel) -> None:
    pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=60.0)
    rest_v = float(pack.pack_v[0])
    pack.step(np.array([rated_kw(model)]), 0.1)
    sagged = float(pack.pack_v[0])
    assert pack.pack_a[0] > 0
    assert sagged < rest_v
    assert float(pack.cell_v[0]) == pytest.approx(sagged / pack.series_cells)
    run(pack, rated_kw(model), 300)
    assert pack.soc_pct[0] < 60.0
    loaded = float(pack.pack_v[0])
    assert loaded < sagged  # polarisation builds up and the OCV falls
    run(pack, 0.0, 600)
    assert pack.pack_a[0] == 0.0
    assert float(pack.pack_v[0]) > loaded  # relaxes towards the OCV once the load is gone
    assert float(pack.pack_v[0]) == pytest.approx(pack.series_cells * float(model.ocv(pack.soc_pct[0])),
                                                  rel=1e-3)


def test_charge_raises_soc_and_voltage(model: ChemistryModel) -> None:
    pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=40.0)
    rest_v = float(pack.pack_v[0])
    run(pack, -rated_kw(model), 300)
    assert pack.pack_a[0] < 0
    assert pack.soc_pct[0] > 40.0
    assert float(pack.pack_v[0]) > rest_v


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["discharge", "charge"])
def test_energy_is_conserved_within_the_efficiency(model: ChemistryModel, sign: float) -> None:
    """Discharging at P for t takes at least P·t and at most P·t/RTE out of the store (charging: mirror)."""
    pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=50.0)
    p_kw, seconds = sign * rated_kw(model), 1200.0
    ocv_before = float(pack.series_cells * model.ocv(pack.soc_pct[0]))
    soc_before = float(pack.soc_pct[0])
    delivered = run(pack, p_kw, seconds)
    assert delivered == pytest.approx(p_kw * seconds / 3600, rel=1e-9)  # the terminals give what was asked
    ocv_after = float(pack.series_cells * model.ocv(pack.soc_pct[0]))
    stored_ah = (soc_before - float(pack.soc_pct[0])) / 100 * float(pack.capacity_ah[0])
    from_store = stored_ah * (ocv_before + ocv_after) / 2 / 1000  # kWh the chemistry gave up
    asked = p_kw * seconds / 3600
    rte = model.round_trip_efficiency
    if sign > 0:
        assert asked < from_store <= asked / rte
    else:  # charging: the store gains less than went in, but not less than RTE of it
        taken_in, gained = -asked, -from_store
        assert taken_in * rte <= gained < taken_in
    # and on the nameplate's scale: SOC moved by about P·t / E
    assert (soc_before - pack.soc_pct[0]) / 100 * ENERGY_KWH == pytest.approx(asked, rel=0.12)


def test_round_trip_matches_the_declared_efficiency(model: ChemistryModel) -> None:
    """Discharge for half an hour at half rating and charge back: the circuit's losses are the declared size.

    The declared figure is DC round trip at about that rate; for VRFB it also counts the pumps, which the
    circuit does not model, so the circuit may only be better than declared, and not by much.
    """
    pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=60.0)
    p_kw = rated_kw(model, 0.5)
    out_kwh = run(pack, p_kw, 1800)
    in_kwh = 0.0
    for _ in range(4000):  # bounded: the charge-back takes a little longer than the discharge
        if pack.soc_pct[0] >= 60.0:
            break
        in_kwh -= run(pack, -p_kw, 1.0)
    assert pack.soc_pct[0] == pytest.approx(60.0, abs=0.05)  # within one step
    rte = out_kwh / in_kwh
    assert model.round_trip_efficiency - 0.03 <= rte < 0.99
    assert rte <= model.round_trip_efficiency + 0.2


def test_temperature_rises_under_load_and_relaxes_to_ambient(model: ChemistryModel) -> None:
    pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=80.0, temp_c=25.0)
    run(pack, rated_kw(model, 1.0), 600)
    assert pack.temp_c[0] > 25.01
    assert pack.heat_w[0] > 0
    heated = float(pack.temp_c[0])
    tau_s = float(pack.thermal_resistance_k_per_w[0] * pack.heat_capacity_j_per_k[0])
    run(pack, 0.0, 10 * tau_s, dt_s=tau_s / 50, ambient_c=15.0)  # exact integration: large steps are fine
    assert pack.temp_c[0] == pytest.approx(15.0, abs=0.01)
    assert heated > pack.temp_c[0]


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["discharge", "charge"])
def test_coulomb_counting(model: ChemistryModel, sign: float) -> None:
    """Discharge takes out exactly the ampere-hours that flowed; charge stores them times its efficiency."""
    pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=50.0)
    soc_before, flowed_ah = float(pack.soc_pct[0]), 0.0
    for _ in range(600):
        pack.step(np.array([sign * rated_kw(model)]), 1.0)
        flowed_ah += float(pack.pack_a[0]) / 3600
    moved_ah = (soc_before - float(pack.soc_pct[0])) / 100 * float(pack.capacity_ah[0])
    efficiency = 1.0 if sign > 0 else pack.params.coulombic_efficiency
    assert moved_ah == pytest.approx(efficiency * flowed_ah, rel=1e-9)
    if model.name == "vrfb" and sign < 0:
        assert efficiency < 0.97  # crossover and shunt currents are part of what VRFB loses


def test_joule_heat_goes_with_the_square_of_the_current(model: ChemistryModel) -> None:
    rises = []
    for fraction in (0.25, 0.5):
        pack = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=50.0, temp_c=25.0)
        pack.step(np.array([rated_kw(model, fraction)]), 1.0, ambient_c=25.0)
        assert pack.heat_w[0] == pytest.approx(pack.pack_a[0] ** 2 * pack.r0_ohm[0], rel=1e-9)
        rises.append((float(pack.temp_c[0]) - 25.0) / float(pack.pack_a[0]) ** 2)
    assert rises[0] > 0
    assert rises[1] == pytest.approx(rises[0], rel=1e-6)


def test_cold_cells_sag_more(model: ChemistryModel) -> None:
    warm = model.equivalent_circuit(1, ENERGY_KWH, temp_c=25.0)
    cold = model.equivalent_circuit(1, ENERGY_KWH, temp_c=model.temp_min_c + 5)
    for pack in (warm, cold):
        pack.step(np.array([rated_kw(model)]), 0.1, ambient_c=float(pack.temp_c[0]))
    assert cold.pack_v[0] < warm.pack_v[0]


def test_steps_of_one_second_match_fine_steps(model: ChemistryModel) -> None:
    coarse = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=50.0)
    fine = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=50.0)
    run(coarse, rated_kw(model, 1.0), 120, dt_s=1.0)
    run(fine, rated_kw(model, 1.0), 120, dt_s=0.1)
    assert coarse.soc_pct[0] == pytest.approx(fine.soc_pct[0], abs=0.01)
    assert coarse.pack_v[0] == pytest.approx(fine.pack_v[0], rel=2e-3)
    assert coarse.temp_c[0] == pytest.approx(fine.temp_c[0], abs=0.01)


def test_limits_hold_when_asked_for_too_much(model: ChemistryModel) -> None:
    """Far beyond rating, into empty and into full: finite state, voltage and SOC inside their limits."""
    pack = model.equivalent_circuit(2, ENERGY_KWH, soc_pct=np.array([3.0, 97.0]))
    huge = 100 * ENERGY_KWH
    s = pack.series_cells
    for _ in range(400):
        pack.step(np.array([huge, -huge]), 1.0)
        assert np.all(np.isfinite(pack.pack_v)) and np.all(np.isfinite(pack.temp_c))
        assert np.all(pack.pack_v >= s * model.cell_v_min - 1e-6)
        assert np.all(pack.pack_v <= s * model.cell_v_max + 1e-6)
        assert np.all((pack.soc_pct >= 0) & (pack.soc_pct <= 100))
        assert pack.pack_a[0] >= 0 and pack.pack_a[1] <= 0
        assert pack.pack_v[0] * pack.pack_a[0] / 1000 < huge  # could not deliver what was asked
    wild = model.equivalent_circuit(3, ENERGY_KWH)
    wild.step(np.array([np.inf, -np.inf, np.nan]), 1.0)
    assert np.all(np.isfinite(wild.pack_v)) and np.all(np.isfinite(wild.soc_pct))
    assert wild.pack_a[0] > 0 and wild.pack_a[1] < 0 and wild.pack_a[2] == 0.0
    empty = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=0.0)
    empty.step(np.array([rated_kw(model)]), 1.0)
    assert empty.pack_a[0] == 0.0 and empty.soc_pct[0] == 0.0
    full = model.equivalent_circuit(1, ENERGY_KWH, soc_pct=100.0)
    full.step(np.array([-rated_kw(model)]), 1.0)
    assert full.pack_a[0] == 0.0 and full.soc_pct[0] == 100.0


def test_vectorised_equals_per_unit(model: ChemistryModel) -> None:
    rng = np.random.default_rng(7)
    n = 1000
    energy = rng.uniform(500, 5000, n)
    soc = rng.uniform(0, 100, n)
    temp = rng.uniform(model.temp_min_c, model.temp_max_c, n)
    c_rate = min(model.max_charge_c, model.max_discharge_c)
    powers = rng.uniform(-1.5, 1.5, (5, n)) * c_rate * energy
    fleet = model.equivalent_circuit(n, energy, soc_pct=soc, temp_c=temp)
    for p in powers:
        fleet.step(p, 0.5, ambient_c=20.0)
    for i in rng.choice(n, 40, replace=False):  # per-unit models for a sample: the loop is the slow part
        single = model.equivalent_circuit(1, energy[i], soc_pct=soc[i], temp_c=temp[i])
        for p in powers:
            single.step(p[i : i + 1], 0.5, ambient_c=20.0)
        for name in ("soc_pct", "temp_c", "pack_v", "pack_a", "cell_v"):
            assert getattr(single, name)[0] == pytest.approx(getattr(fleet, name)[i], rel=1e-12, abs=1e-12)


def test_bad_arguments_are_refused(model: ChemistryModel) -> None:
    pack = model.equivalent_circuit(3, ENERGY_KWH)
    with pytest.raises(ValueError, match="p_kw"):
        pack.step(np.zeros(4), 0.1)
    with pytest.raises(ValueError, match="dt_s"):
        pack.step(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="energy_kwh"):
        model.equivalent_circuit(2, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="series_cells"):
        model.equivalent_circuit(1, ENERGY_KWH, series_cells=0)
    custom = model.equivalent_circuit(1, ENERGY_KWH, series_cells=10)
    assert custom.pack_v[0] == pytest.approx(10 * float(model.ocv(50.0)))
