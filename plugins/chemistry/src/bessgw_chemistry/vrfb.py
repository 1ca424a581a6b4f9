"""Vanadium redox flow battery (VRFB): the energy sits in tanks of electrolyte, the power in the stacks.

Figures from the VRFB literature (Skyllas-Kazacos et al., "Progress in flow battery research and
development", J. Electrochem. Soc. 158 (2011) R55; Weber et al., "Redox flow batteries: a review",
J. Appl. Electrochem. 41 (2011) 1137; manufacturer sheets of 4-hour systems):

- cell OCV by the Nernst equation, ``E = E' + 2 RT/F ln(SOC / (1 - SOC))`` with the factor 2 from the
  proton activity term and ``E' ≈ 1.40 V`` the measured OCV at 50 % SOC; about 1.31 V at 15 % and
  1.49 V at 85 %. Charge cut-off ~1.6–1.65 V, discharge cut-off ~1.0–1.1 V per cell;
- usable SOC commonly 15–85 % (or 20–80 %): hydrogen/oxygen evolution and a steep voltage at the top,
  mass-transport limits at the bottom;
- electrolyte kept at ~10–40 °C by thermal management: V⁵⁺ precipitates above ~40 °C, V²⁺/V³⁺ sulfates
  crystallise in the cold. No lithium, so no plating and no cold-charging penalty: charge and discharge
  derate alike, only near the hard limits;
- round trip ~70–75 % including pumps and shunt currents; systems are sized for ~4 h (0.25C).

The ``temp_c`` of the equivalent circuit is the electrolyte temperature, whose large heat capacity makes
it move slowly. Pump power is not modelled in the circuit; it is part of the quoted round trip.
"""

from __future__ import annotations

import numpy as np

from bessgw_chemistry.circuit import CellParameters
from bessgw_chemistry.curves import Curve
from bessgw_chemistry.tabulated import TabulatedChemistry

#: 2 RT/F at 25 °C, V
_TWO_RT_F = 2 * 8.314462618 * 298.15 / 96485.33212
#: OCV at 50 % SOC, V
_E_MID = 1.40
#: the points of the tabulated OCV curve, SOC %
_OCV_SOC = (0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95, 98, 99, 100)


def nernst_ocv_table(v_min: float, v_max: float) -> Curve:
    """The Nernst OCV, tabulated at :data:`_OCV_SOC` and clamped to the cell's voltage limits.

    The logarithm diverges at 0 and 100 %: the end points are the cut-off voltages, which is where the
    cell actually stops.
    """
    soc = np.asarray(_OCV_SOC, dtype=float) / 100.0
    inner = np.clip(soc, 0.005, 0.995)
    volts = np.clip(_E_MID + _TWO_RT_F * np.log(inner / (1.0 - inner)), v_min + 0.01, v_max - 0.01)
    volts[0], volts[-1] = v_min, v_max
    return Curve(_OCV_SOC, np.round(volts, 4))


class Vrfb(TabulatedChemistry):
    """VRFB: Nernstian OCV, wide SOC window, narrow electrolyte temperature window, lower efficiency."""

    name = "vrfb"
    description = "Vanadium redox flow battery (all-vanadium, sulfuric acid electrolyte)"
    soc_min_pct = 15.0
    soc_max_pct = 85.0
    temp_min_c = 0.0  # hard limits; the electrolyte is kept at 10–40 °C in normal operation
    temp_max_c = 45.0
    max_charge_c = 0.25  # 4-hour system
    max_discharge_c = 0.25
    round_trip_efficiency = 0.72  # incl. pumps and shunt currents
    cell_v_min = 1.1
    cell_v_max = 1.65
    cell_v_nominal = 1.4

    ocv_curve = nernst_ocv_table(cell_v_min, cell_v_max)
    # same for both directions: full power at 5–40 °C, falling to 0 at the hard limits
    charge_temp_curve = Curve([0, 5, 40, 45], [0.0, 1.0, 1.0, 0.0])
    discharge_temp_curve = Curve([0, 5, 40, 45], [0.0, 1.0, 1.0, 0.0])
    # gassing and the steep Nernst rise near full, mass transport near empty
    charge_soc_curve = Curve([0, 80, 90, 100], [1.0, 1.0, 0.3, 0.0])
    discharge_soc_curve = Curve([0, 10, 20, 100], [0.0, 0.3, 1.0, 1.0])

    cell = CellParameters(
        # area-specific resistance ~1.5 Ω·cm² at ~80 mA/cm² (rated 0.25C) drops ~0.12 V per cell, i.e.
        # ~0.48 V at an equivalent 1C
        r0_ohm_ah=0.40,
        r1_ohm_ah=0.08,  # concentration polarisation
        rc_tau_s=15.0,
        r_temp_coeff_per_k=0.015,  # electrolyte conductivity, membrane
        coulombic_efficiency=0.95,  # crossover and shunt currents
        # ~40 L of electrolyte per kWh × 1.35 kg/L × ~3.2 kJ/(kg K)
        heat_capacity_j_per_k_kwh=170_000.0,
        thermal_resistance_k_kwh_per_w=0.5,  # tanks and heat exchanger: τ ≈ a day
    )
    series_cells = 720  # 1008 V nominal, 792–1188 V
