"""Lithium iron phosphate (LFP / graphite): the stationary-storage workhorse.

Figures are those of the 280 Ah prismatic ESS cell class (EVE LF280K, CATL 280 Ah, REPT/Hithium 280 Ah
datasheets agree to within a few per cent): 3.2 V nominal, 2.5–3.65 V, standard charge/discharge 0.5C and
1C maximum continuous at 25 °C, charging 0–55 °C, discharging −20–60 °C, AC impedance ≤ 0.25 mΩ (DC
resistance roughly 0.3–0.4 mΩ). The OCV curve follows the published relaxed OCV of LFP/graphite cells
(e.g. Plett, "Battery Management Systems" vol. 1, and the 280 Ah cell OCV tests in the literature):
a steep knee below ~10 %, two flat plateaus near 3.26–3.30 V and 3.32–3.34 V, and a sharp rise at the top.
"""

from __future__ import annotations

from bessgw_chemistry.circuit import CellParameters
from bessgw_chemistry.curves import Curve
from bessgw_chemistry.tabulated import TabulatedChemistry


class Lfp(TabulatedChemistry):
    """LFP: flat plateau, long life, no charging below 0 °C (lithium plating on the graphite anode)."""

    name = "lfp"
    description = "Lithium iron phosphate (LFP/graphite), 280 Ah prismatic ESS cell class"
    # integrators commonly keep 5–95 % for life and to stay off the steep ends of the curve
    soc_min_pct = 5.0
    soc_max_pct = 95.0
    temp_min_c = -20.0  # datasheet discharge lower limit
    temp_max_c = 60.0  # datasheet discharge upper limit (charging ends at 55 °C, see below)
    max_charge_c = 1.0  # maximum continuous at 25 °C (standard 0.5C)
    max_discharge_c = 1.0
    round_trip_efficiency = 0.95  # DC, cell/rack level at 0.5C; containers quote ~0.92–0.94 DC
    cell_v_min = 2.5
    cell_v_max = 3.65
    cell_v_nominal = 3.2

    ocv_curve = Curve(
        [0, 2, 5, 10, 15, 20, 30, 40, 50, 60, 65, 70, 80, 90, 95, 98, 100],
        [2.50, 2.95, 3.13, 3.20, 3.22, 3.245, 3.265, 3.28, 3.29, 3.295, 3.30, 3.32,
         3.327, 3.335, 3.345, 3.38, 3.55],
    )
    # BMS charge tables of 280 Ah cells: nothing below 0 °C, 0.1C at 0–5 °C, 0.3C at 5–10 °C, 0.5–0.6C
    # at 10–15 °C, full rate 20–45 °C, then back to 0 at the 55 °C charge limit. Linear in between so
    # the factor falls continuously to 0 towards 0 °C.
    charge_temp_curve = Curve(
        [-20, 0, 5, 10, 15, 20, 45, 50, 55, 60],
        [0.0, 0.0, 0.1, 0.3, 0.6, 1.0, 1.0, 0.5, 0.0, 0.0],
    )
    discharge_temp_curve = Curve(
        [-20, -10, 0, 10, 15, 45, 55, 60],
        [0.0, 0.3, 0.6, 0.9, 1.0, 1.0, 0.5, 0.0],
    )
    # constant-voltage taper near full; the voltage knee near empty
    charge_soc_curve = Curve([0, 85, 92, 97, 100], [1.0, 1.0, 0.5, 0.2, 0.0])
    discharge_soc_curve = Curve([0, 5, 10, 15, 100], [0.0, 0.3, 0.7, 1.0, 1.0])

    cell = CellParameters(
        r0_ohm_ah=0.35e-3 * 280,  # 0.35 mΩ DC at 280 Ah
        r1_ohm_ah=0.20e-3 * 280,
        rc_tau_s=60.0,
        r_temp_coeff_per_k=0.03,  # resistance roughly doubles from 25 °C to 2 °C
        coulombic_efficiency=0.998,
        heat_capacity_j_per_k_kwh=8000.0,  # ~6 kg of cell per kWh × ~1.1 kJ/(kg K), plus racks
        thermal_resistance_k_kwh_per_w=0.5,  # liquid-cooled container: ~6 K rise at 0.5C, τ ≈ 1.1 h
    )
    # 1280 V nominal, 1000–1460 V: stays under a 1500 V DC bus at the cell's 3.65 V limit (1P416S racks,
    # also common, run 1331 V nominal with a tighter 2.8–3.6 V operating window)
    series_cells = 400
