"""Lithium titanate anode (LTO, e.g. Toshiba SCiB with an NMC cathode): cold-tolerant, very long life.

Figures are those of the Toshiba SCiB 20–23 Ah cell class (datasheets and Toshiba's SCiB product
pages): 2.3 V nominal, 1.5–2.7 V, operation −30–55 °C including charging in the cold (the 1.55 V vs Li
anode potential leaves no lithium plating), cycle life quoted beyond 20 000 cycles, and an internal
resistance around 1 mΩ at 20 Ah. Cells take pulses of ~10C; the continuous 2C used here is the
conservative figure quoted for SCiB stationary modules. The OCV curve is the typical LTO/NMC shape:
steep below 5 %, gently sloped from ~2.1 V to ~2.5 V, steep again near full.
"""

from __future__ import annotations

from bessgw_chemistry.circuit import CellParameters
from bessgw_chemistry.curves import Curve
from bessgw_chemistry.tabulated import TabulatedChemistry


class Lto(TabulatedChemistry):
    """LTO: low voltage, high power, charges well in the cold, full-range cycling."""

    name = "lto"
    description = "Lithium titanate anode (LTO/NMC), Toshiba SCiB cell class"
    # cycle-life figures are quoted at full depth of discharge; a small margin keeps off the steep ends
    soc_min_pct = 2.0
    soc_max_pct = 98.0
    temp_min_c = -30.0
    temp_max_c = 55.0
    max_charge_c = 2.0
    max_discharge_c = 2.0
    round_trip_efficiency = 0.95  # DC; low resistance offsets the low voltage
    cell_v_min = 1.5
    cell_v_max = 2.7
    cell_v_nominal = 2.3

    ocv_curve = Curve(
        [0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100],
        [1.50, 1.95, 2.05, 2.12, 2.18, 2.22, 2.25, 2.28, 2.31, 2.35, 2.40, 2.48, 2.55, 2.70],
    )
    # no plating: full charge rate down to 0 °C, still half at −20 °C, 0 only at the −30 °C limit
    charge_temp_curve = Curve(
        [-30, -25, -20, -10, 0, 45, 50, 55],
        [0.0, 0.3, 0.5, 0.8, 1.0, 1.0, 0.5, 0.0],
    )
    discharge_temp_curve = Curve(
        [-30, -25, -15, -10, 45, 50, 55],
        [0.0, 0.5, 0.9, 1.0, 1.0, 0.6, 0.0],
    )
    charge_soc_curve = Curve([0, 90, 97, 100], [1.0, 1.0, 0.5, 0.0])
    discharge_soc_curve = Curve([0, 3, 10, 100], [0.0, 0.5, 1.0, 1.0])

    cell = CellParameters(
        r0_ohm_ah=1.0e-3 * 20,  # ~1 mΩ DC at 20 Ah
        r1_ohm_ah=0.4e-3 * 20,
        rc_tau_s=20.0,
        r_temp_coeff_per_k=0.02,  # weaker temperature dependence than graphite-anode cells
        coulombic_efficiency=0.999,
        heat_capacity_j_per_k_kwh=12000.0,  # ~11 kg of cell per kWh (SCiB 20 Ah: 46 Wh, ~0.5 kg)
        thermal_resistance_k_kwh_per_w=0.5,
    )
    series_cells = 500  # 1150 V nominal, 750–1350 V
