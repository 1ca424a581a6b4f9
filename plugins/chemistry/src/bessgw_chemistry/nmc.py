"""Lithium nickel manganese cobalt oxide (NMC / graphite): higher voltage and energy, sloped curve.

Figures are those of the ESS-grade NMC prismatic cell class (Samsung SDI 94 Ah / 111 Ah, LG Energy
Solution ESS cell datasheets): 3.68 V nominal, 3.0–4.2 V, 1C continuous, charging 0–45 °C, discharging
−20–60 °C, DC resistance of the order of 0.8 mΩ at 94 Ah. The OCV curve is the typical relaxed OCV of
NMC/graphite (e.g. the NMC OCV data in Plett, "Battery Management Systems", and Birkl et al.,
J. Power Sources 2017): roughly 3.4 V at 5 % rising steadily to 4.18 V at full, no plateau.
"""

from __future__ import annotations

from bessgw_chemistry.circuit import CellParameters
from bessgw_chemistry.curves import Curve
from bessgw_chemistry.tabulated import TabulatedChemistry


class Nmc(TabulatedChemistry):
    """NMC: sloped OCV (SOC readable from voltage), narrower warm charging window than LFP."""

    name = "nmc"
    description = "Nickel manganese cobalt oxide (NMC/graphite), ESS prismatic cell class"
    # high SOC ages NMC fastest (cathode oxidation, electrolyte decomposition): 10–90 % is usual
    soc_min_pct = 10.0
    soc_max_pct = 90.0
    temp_min_c = -20.0
    temp_max_c = 60.0
    max_charge_c = 1.0
    max_discharge_c = 1.0
    round_trip_efficiency = 0.94  # DC, cell/rack level at 0.5C
    cell_v_min = 3.0
    cell_v_max = 4.2
    cell_v_nominal = 3.68

    ocv_curve = Curve(
        [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100],
        [3.00, 3.40, 3.50, 3.58, 3.63, 3.67, 3.72, 3.79, 3.87, 3.95, 4.05, 4.11, 4.18],
    )
    # lithium plating below 0 °C as for LFP; charging ends at 45 °C on NMC datasheets
    charge_temp_curve = Curve(
        [-20, 0, 5, 10, 15, 20, 40, 43, 45, 60],
        [0.0, 0.0, 0.2, 0.5, 0.8, 1.0, 1.0, 0.5, 0.0, 0.0],
    )
    discharge_temp_curve = Curve(
        [-20, -10, 0, 10, 20, 45, 55, 60],
        [0.0, 0.4, 0.7, 0.9, 1.0, 1.0, 0.5, 0.0],
    )
    charge_soc_curve = Curve([0, 80, 90, 95, 100], [1.0, 1.0, 0.5, 0.25, 0.0])
    discharge_soc_curve = Curve([0, 5, 10, 100], [0.0, 0.4, 1.0, 1.0])

    cell = CellParameters(
        r0_ohm_ah=0.8e-3 * 94,  # 0.8 mΩ DC at 94 Ah
        r1_ohm_ah=0.5e-3 * 94,
        rc_tau_s=40.0,
        r_temp_coeff_per_k=0.03,
        coulombic_efficiency=0.998,
        heat_capacity_j_per_k_kwh=7000.0,  # ~5 kg of cell per kWh, plus racks
        thermal_resistance_k_kwh_per_w=0.5,
    )
    series_cells = 320  # 1178 V nominal, 960–1344 V
