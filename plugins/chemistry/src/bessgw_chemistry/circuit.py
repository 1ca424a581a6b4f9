"""A vectorised Thevenin equivalent circuit (OCV + R0 + one RC pair) with a lumped thermal model.

One :class:`TheveninPack` holds ``n`` units (battery containers or strings) as numpy arrays, so the
device simulators can step a whole campus at 10 Hz in a few numpy operations rather than a Python loop
per unit.

Per unit: ``S`` cells in series (the pack voltage), the parallel strings lumped into one series position
of capacity ``Q`` Ah derived from the unit's nominal energy (``Q = E / (S * V_nominal)``, the datasheet
convention Ah × nominal V). Resistances are given per chemistry normalised to capacity (Ω·Ah, which is
also the IR drop in volts at 1C), so the same figures scale from a 280 Ah cell to a 3.7 MWh container.

Time integration uses the exact solution of the linear parts over one step (RC voltage and temperature
relax exponentially), so a step is stable for any ``dt_s``; only the current is held constant over the
step, which is accurate while ``dt_s`` is small against the RC time constant (seconds to a minute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: below this, a requested power counts as zero (avoids 0/0 in the current solution)
_TINY = 1e-12
#: powers beyond this (kW) are treated as this: far past any unit's maximum-power point, still finite
_HUGE_KW = 1e9


@dataclass(frozen=True)
class CellParameters:
    """Electrical and thermal parameters of a chemistry, normalised so they scale to any unit size.

    :ivar r0_ohm_ah: ohmic resistance × cell capacity at 25 °C (Ω·Ah = IR drop in V at 1C).
    :ivar r1_ohm_ah: polarisation (RC) resistance × cell capacity at 25 °C.
    :ivar rc_tau_s: time constant of the RC pair (diffusion / charge-transfer relaxation).
    :ivar r_temp_coeff_per_k: resistances scale by ``exp(coeff * (25 - T))``: cold cells are more
        resistive (an Arrhenius-like law, linearised in the exponent).
    :ivar coulombic_efficiency: share of the charging current that ends up stored (side reactions,
        for VRFB also crossover and shunt currents); the rest is heat.
    :ivar heat_capacity_j_per_k_kwh: lumped heat capacity per kWh of nominal energy (cells, electrolyte,
        racks).
    :ivar thermal_resistance_k_kwh_per_w: thermal resistance to ambient (cooling) times nominal energy:
        a bigger unit has proportionally more cooling.
    """

    r0_ohm_ah: float
    r1_ohm_ah: float
    rc_tau_s: float
    r_temp_coeff_per_k: float
    coulombic_efficiency: float
    heat_capacity_j_per_k_kwh: float
    thermal_resistance_k_kwh_per_w: float

    def __post_init__(self) -> None:
        for name in ("r0_ohm_ah", "r1_ohm_ah", "rc_tau_s", "heat_capacity_j_per_k_kwh",
                     "thermal_resistance_k_kwh_per_w"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"CellParameters.{name} must be > 0 (got {value!r})")
        if not 0.0 < self.coulombic_efficiency <= 1.0:
            raise ValueError(
                f"CellParameters.coulombic_efficiency must be in (0, 1] (got {self.coulombic_efficiency!r})"
            )
        if not (np.isfinite(self.r_temp_coeff_per_k) and self.r_temp_coeff_per_k >= 0):
            raise ValueError(
                f"CellParameters.r_temp_coeff_per_k must be >= 0 (got {self.r_temp_coeff_per_k!r})"
            )


def _column(value: float | np.ndarray, count: int, name: str) -> np.ndarray:
    """``value`` broadcast to a fresh float array of shape ``(count,)``, rejecting NaN/inf."""
    try:
        array = np.array(np.broadcast_to(np.asarray(value, dtype=float), (count,)), dtype=float)
    except ValueError as err:
        raise ValueError(f"{name} must be a scalar or have shape ({count},) (got {np.shape(value)})") from err
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite")
    return array


class TheveninPack:
    """``count`` units of one chemistry under the Thevenin model; implements ``EquivalentCircuit``.

    State arrays (shape ``(count,)``), updated in place by :meth:`step`:

    - ``soc_pct``: state of charge 0..100 (Coulomb counting),
    - ``temp_c``: lumped cell (for VRFB: electrolyte) temperature,
    - ``v_rc``: voltage across the RC pair (positive while discharging),
    - ``pack_a``: pack current of the last step, positive discharging (generator convention),
    - ``pack_v``: terminal voltage, ``cell_v = pack_v / series_cells``,
    - ``p_kw``: power actually delivered in the last step (less than asked when a limit cut in),
    - ``heat_w``: heat generated in the last step.

    The current is limited as a BMS and physics would: never beyond the maximum-power point of the
    source, never driving a cell beyond ``cell_v_min``/``cell_v_max``, and never taking more charge than
    is left (or room there is) inside 0..100 % SOC within the step.
    """

    def __init__(
        self,
        ocv: Callable[[np.ndarray], np.ndarray],
        params: CellParameters,
        *,
        count: int,
        energy_kwh: float | np.ndarray,
        series_cells: int,
        cell_v_nominal: float,
        cell_v_min: float,
        cell_v_max: float,
        soc_pct: float | np.ndarray = 50.0,
        temp_c: float | np.ndarray = 25.0,
    ) -> None:
        if int(count) != count or count < 0:
            raise ValueError(f"count must be a non-negative integer (got {count!r})")
        if int(series_cells) != series_cells or series_cells < 1:
            raise ValueError(f"series_cells must be a positive integer (got {series_cells!r})")
        if not 0 < cell_v_min < cell_v_nominal < cell_v_max:
            raise ValueError(f"need 0 < cell_v_min < cell_v_nominal < cell_v_max (got {cell_v_min}, "
                             f"{cell_v_nominal}, {cell_v_max})")
        count = int(count)
        self.count = count
        self.series_cells = int(series_cells)
        self.params = params
        self._ocv = ocv
        self.energy_kwh = _column(energy_kwh, count, "energy_kwh")
        if np.any(self.energy_kwh <= 0):
            raise ValueError("energy_kwh must be > 0")
        self.cell_v_min = float(cell_v_min)
        self.cell_v_max = float(cell_v_max)
        #: parallel capacity of one series position, Ah
        self.capacity_ah = self.energy_kwh * 1000.0 / (self.series_cells * cell_v_nominal)
        #: pack resistances at 25 °C, Ω
        self.r0_ohm = self.series_cells * params.r0_ohm_ah / self.capacity_ah
        self.r1_ohm = self.series_cells * params.r1_ohm_ah / self.capacity_ah
        self.heat_capacity_j_per_k = params.heat_capacity_j_per_k_kwh * self.energy_kwh
        self.thermal_resistance_k_per_w = params.thermal_resistance_k_kwh_per_w / self.energy_kwh

        self.soc_pct = np.clip(_column(soc_pct, count, "soc_pct"), 0.0, 100.0)
        self.temp_c = _column(temp_c, count, "temp_c")
        self.v_rc = np.zeros(count)
        self.pack_a = np.zeros(count)
        self.heat_w = np.zeros(count)
        self.pack_v = self.series_cells * self._ocv(self.soc_pct)
        self.cell_v = self.pack_v / self.series_cells
        self.p_kw = np.zeros(count)

    @property
    def ocv_v(self) -> np.ndarray:
        """Open-circuit pack voltage at the present SOC."""
        return self.series_cells * self._ocv(self.soc_pct)

    def resistance_factor(self) -> np.ndarray:
        """How much more resistive than at 25 °C the units are at their present temperature."""
        exponent = self.params.r_temp_coeff_per_k * (25.0 - self.temp_c)
        return np.exp(np.clip(exponent, -2.0, 4.0))  # bounded: the law is only a fit near room temperature

    def step(self, p_kw: np.ndarray | float, dt_s: float, ambient_c: float | np.ndarray = 25.0) -> None:
        """Advance by ``dt_s`` seconds at pack powers ``p_kw`` (positive discharges) and ``ambient_c``.

        A NaN power counts as 0 and an infinite one as "as much as possible": a simulator fed garbage by
        a client holds still or runs into its limits, it never turns its state into NaN.
        """
        if not (np.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s must be a finite number > 0 (got {dt_s!r})")
        p_kw = np.nan_to_num(_broadcast(p_kw, self.count, "p_kw"), nan=0.0, posinf=_HUGE_KW, neginf=-_HUGE_KW)
        p_w = 1000.0 * np.clip(p_kw, -_HUGE_KW, _HUGE_KW)
        ambient = _broadcast(ambient_c, self.count, "ambient_c")
        params = self.params
        s = self.series_cells

        factor = self.resistance_factor()
        r0 = self.r0_ohm * factor
        r1 = self.r1_ohm * factor
        ocv = s * self._ocv(self.soc_pct)
        emf = np.maximum(ocv - self.v_rc, _TINY)  # what the terminals see before the ohmic drop

        # P = (emf - R0 I) I  ->  R0 I² - emf I + P = 0. The smaller root in the cancellation-free form
        # 2P / (emf + sqrt(emf² - 4 R0 P)); beyond the source's maximum power emf²/(4 R0) the best it can
        # do is the maximum-power current emf / (2 R0).
        disc = emf * emf - 4.0 * r0 * p_w
        current = np.where(disc >= 0.0, 2.0 * p_w / (emf + np.sqrt(np.maximum(disc, 0.0))), emf / (2.0 * r0))

        # BMS: terminal voltage inside the cell limits, charge inside 0..100 % within this step.
        charge_as = self.capacity_ah * 3600.0
        eta = params.coulombic_efficiency
        max_discharge = np.minimum((emf - s * self.cell_v_min) / r0, self.soc_pct / 100.0 * charge_as / dt_s)
        max_charge = np.minimum((s * self.cell_v_max - emf) / r0,
                                (100.0 - self.soc_pct) / 100.0 * charge_as / (dt_s * eta))
        current = np.clip(current, -np.maximum(max_charge, 0.0), np.maximum(max_discharge, 0.0))

        terminal = emf - r0 * current
        stored = np.where(current > 0.0, current, eta * current)  # charge leaving the store, A
        self.soc_pct = np.clip(self.soc_pct - 100.0 * stored * dt_s / charge_as, 0.0, 100.0)

        # heat: ohmic, polarisation, and the charge lost to side reactions while charging
        side_w = np.where(current < 0.0, (1.0 - eta) * -current * ocv, 0.0)
        heat = current * current * r0 + self.v_rc * self.v_rc / r1 + side_w

        decay = np.exp(-dt_s / params.rc_tau_s)
        self.v_rc = self.v_rc * decay + current * r1 * (1.0 - decay)

        r_th = self.thermal_resistance_k_per_w
        steady = ambient + heat * r_th
        self.temp_c = steady + (self.temp_c - steady) * np.exp(-dt_s / (r_th * self.heat_capacity_j_per_k))

        self.pack_a = current
        self.pack_v = terminal
        self.cell_v = terminal / s
        self.p_kw = terminal * current / 1000.0
        self.heat_w = heat


def _broadcast(value: float | np.ndarray, count: int, name: str) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(value, dtype=float), (count,))
    except ValueError as err:
        raise ValueError(f"{name} must be a scalar or have shape ({count},) (got {np.shape(value)})") from err
