"""Conformance tests every ChemistryModel must pass (curves physically sensible, envelope valid)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from bessgw.model import ChemistryEnvelope
from bessgw.plugin import ChemistryModel

SOC = np.linspace(0.0, 100.0, 201)


class ChemistryConformance:
    """Subclass with a ``chemistry`` fixture returning the model under test."""

    @pytest.fixture
    def chemistry(self) -> ChemistryModel:  # pragma: no cover - the subclass provides it
        raise NotImplementedError("provide a `chemistry` fixture returning your ChemistryModel")

    def test_identity(self, chemistry: ChemistryModel) -> None:
        assert isinstance(chemistry, ChemistryModel)
        assert re.fullmatch(r"[a-z][a-z0-9_]{1,31}", chemistry.name), "name: short lower-case id"
        assert chemistry.description

    def test_windows_are_ordered(self, chemistry: ChemistryModel) -> None:
        assert 0.0 <= chemistry.soc_min_pct < chemistry.soc_max_pct <= 100.0
        assert chemistry.temp_min_c < chemistry.temp_max_c
        assert 0.0 < chemistry.cell_v_min < chemistry.cell_v_nominal < chemistry.cell_v_max
        assert 0.0 < chemistry.round_trip_efficiency <= 1.0
        assert chemistry.max_charge_c > 0 and chemistry.max_discharge_c > 0

    def test_ocv_is_vectorised_monotone_and_within_cell_limits(self, chemistry: ChemistryModel) -> None:
        ocv = np.asarray(chemistry.ocv(SOC), dtype=float)
        assert ocv.shape == SOC.shape
        assert np.all(np.diff(ocv) >= -1e-9), "OCV must not fall as SOC rises"
        assert np.all(ocv >= chemistry.cell_v_min - 0.05) and np.all(ocv <= chemistry.cell_v_max + 0.05)
        assert float(np.asarray(chemistry.ocv(50.0))) == pytest.approx(float(ocv[100]))

    def test_derating_is_a_factor_and_zero_outside_the_window(self, chemistry: ChemistryModel) -> None:
        temps = np.linspace(chemistry.temp_min_c - 20, chemistry.temp_max_c + 20, 121)
        for derate in (chemistry.charge_derating, chemistry.discharge_derating):
            factors = np.asarray(derate(temps, 50.0), dtype=float)
            assert factors.shape == temps.shape
            assert np.all((factors >= 0.0) & (factors <= 1.0))
            outside = (temps < chemistry.temp_min_c) | (temps > chemistry.temp_max_c)
            assert np.all(factors[outside] == 0.0), "no current outside the temperature window"

    def test_derating_is_monotone_beyond_the_comfortable_band(self, chemistry: ChemistryModel) -> None:
        temps = np.linspace(chemistry.temp_min_c - 10, chemistry.temp_max_c + 10, 241)
        for derate in (chemistry.charge_derating, chemistry.discharge_derating):
            factors = np.asarray(derate(temps, 50.0), dtype=float)
            best = int(np.argmax(factors))
            assert np.all(np.diff(factors[: best + 1]) >= -1e-12), "colder must never allow more"
            assert np.all(np.diff(factors[best:]) <= 1e-12), "hotter must never allow more"

    def test_envelope_at_nominal_conditions(self, chemistry: ChemistryModel) -> None:
        envelope = chemistry.envelope(50.0, 25.0)
        assert isinstance(envelope, ChemistryEnvelope)
        assert envelope.chemistry == chemistry.name
        assert 0 < envelope.max_charge_c <= chemistry.max_charge_c
        assert 0 < envelope.max_discharge_c <= chemistry.max_discharge_c

    def test_envelope_carries_the_windows_and_closes_outside_them(self, chemistry: ChemistryModel) -> None:
        envelope = chemistry.envelope(50.0, 25.0)
        assert (envelope.soc_min_pct, envelope.soc_max_pct) == (chemistry.soc_min_pct, chemistry.soc_max_pct)
        assert (envelope.temp_min_c, envelope.temp_max_c) == (chemistry.temp_min_c, chemistry.temp_max_c)
        for temp_c in (chemistry.temp_min_c - 5.0, chemistry.temp_max_c + 5.0):
            outside = chemistry.envelope(50.0, temp_c)
            assert outside.max_charge_c == 0.0 and outside.max_discharge_c == 0.0, f"current allowed at {temp_c} °C"

    def test_curves_broadcast_over_soc_too(self, chemistry: ChemistryModel) -> None:
        factors = np.asarray(chemistry.charge_derating(25.0, SOC), dtype=float)
        assert factors.shape == SOC.shape and np.all((factors >= 0.0) & (factors <= 1.0))
        factors = np.asarray(chemistry.discharge_derating(25.0, SOC), dtype=float)
        assert factors.shape == SOC.shape and np.all((factors >= 0.0) & (factors <= 1.0))

    def test_equivalent_circuit_discharge_and_charge(self, chemistry: ChemistryModel) -> None:
        count, energy = 4, 1000.0
        circuit = chemistry.equivalent_circuit(count, energy, soc_pct=50.0, temp_c=25.0)
        for name in ("soc_pct", "temp_c", "pack_v", "pack_a", "cell_v"):
            assert np.asarray(getattr(circuit, name)).shape == (count,), name
        rest_v = np.array(circuit.pack_v, dtype=float)
        power = np.array([0.3, -0.3, 0.0, 0.3]) * energy * min(chemistry.max_charge_c, chemistry.max_discharge_c)
        for _ in range(60):
            circuit.step(power, 1.0, 25.0)
        soc = np.asarray(circuit.soc_pct, dtype=float)
        assert soc[0] < 50.0 < soc[1], "discharging lowers SOC, charging raises it"
        assert soc[2] == pytest.approx(50.0, abs=1e-6), "no power, no change"
        assert soc[0] == pytest.approx(soc[3]), "identical units evolve identically"
        assert float(np.asarray(circuit.pack_v)[0]) < float(rest_v[0]), "voltage sags under discharge"
        assert all(math.isfinite(float(v)) for v in np.asarray(circuit.cell_v))
