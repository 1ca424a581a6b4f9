"""A chemistry described entirely by tables: the shared machinery behind LFP, NMC, LTO and VRFB.

Each concrete chemistry only states its figures (class attributes, with their sources beside them);
this base turns them into the vectorised curves and the equivalent circuit that
:class:`bessgw.plugin.ChemistryModel` asks for, and checks at class-definition time that the tables keep
the promises negotiation relies on (derating 0 at the hard temperature limits and monotone beyond the
comfortable band, OCV increasing with SOC), so a wrong figure fails on import rather than in the field.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bessgw.plugin import ChemistryModel
from bessgw_chemistry.circuit import CellParameters, TheveninPack
from bessgw_chemistry.curves import Curve, derating


class TabulatedChemistry(ChemistryModel):
    """A :class:`ChemistryModel` whose curves are :class:`Curve` tables set by subclasses.

    Subclasses set, besides the base class figures:

    - ``ocv_curve``: cell open-circuit voltage against SOC % (25 °C, relaxed);
    - ``charge_temp_curve`` / ``discharge_temp_curve``: derating factor 0..1 against cell temperature;
    - ``charge_soc_curve`` / ``discharge_soc_curve``: derating factor 0..1 against SOC (taper near full
      or empty), multiplied with the temperature factor;
    - ``cell``: the :class:`CellParameters` of the equivalent circuit;
    - ``series_cells``: default cells in series per unit (sets the container's DC voltage).
    """

    ocv_curve: ClassVar[Curve]
    charge_temp_curve: ClassVar[Curve]
    discharge_temp_curve: ClassVar[Curve]
    charge_soc_curve: ClassVar[Curve]
    discharge_soc_curve: ClassVar[Curve]
    cell: ClassVar[CellParameters]
    series_cells: ClassVar[int]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _check_tables(cls)

    def ocv(self, soc_pct: np.ndarray | float) -> np.ndarray:
        """Open-circuit cell voltage at ``soc_pct`` (interpolated in the tabulated curve)."""
        return self.ocv_curve(soc_pct)

    def charge_derating(self, temp_c: np.ndarray | float, soc_pct: np.ndarray | float) -> np.ndarray:
        """Factor 0..1 on :attr:`max_charge_c` (0 where temperature or SOC is unknown)."""
        return derating(self.charge_temp_curve, self.charge_soc_curve, temp_c, soc_pct)

    def discharge_derating(self, temp_c: np.ndarray | float, soc_pct: np.ndarray | float) -> np.ndarray:
        """Factor 0..1 on :attr:`max_discharge_c` (0 where temperature or SOC is unknown)."""
        return derating(self.discharge_temp_curve, self.discharge_soc_curve, temp_c, soc_pct)

    def pack_voltage_range(self, series_cells: int | None = None) -> tuple[float, float, float]:
        """``(min, nominal, max)`` DC voltage of a unit of ``series_cells`` cells (default per chemistry)."""
        s = self.series_cells if series_cells is None else series_cells
        return s * self.cell_v_min, s * self.cell_v_nominal, s * self.cell_v_max

    def equivalent_circuit(
        self,
        count: int,
        energy_kwh: float | np.ndarray,
        *,
        soc_pct: float | np.ndarray = 50.0,
        temp_c: float | np.ndarray = 25.0,
        series_cells: int | None = None,
    ) -> TheveninPack:
        """``count`` fresh units of ``energy_kwh`` nominal energy each (scalar or one per unit).

        :param series_cells: cells in series per unit; the default gives a container DC bus of roughly
            1000–1350 V nominal for this chemistry.
        """
        return TheveninPack(
            self.ocv,
            self.cell,
            count=count,
            energy_kwh=energy_kwh,
            series_cells=self.series_cells if series_cells is None else series_cells,
            cell_v_nominal=self.cell_v_nominal,
            cell_v_min=self.cell_v_min,
            cell_v_max=self.cell_v_max,
            soc_pct=soc_pct,
            temp_c=temp_c,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} chemistry {self.name!r}>"


def _check_tables(cls: type[TabulatedChemistry]) -> None:
    """Fail at import when a chemistry's tables break what negotiation and the simulators rely on."""
    name = cls.__name__
    if not 0.0 <= cls.soc_min_pct < cls.soc_max_pct <= 100.0:
        raise TypeError(f"{name}: need 0 <= soc_min_pct < soc_max_pct <= 100")
    if not cls.temp_min_c < cls.temp_max_c:
        raise TypeError(f"{name}: need temp_min_c < temp_max_c")
    if not 0.0 < cls.round_trip_efficiency <= 1.0:
        raise TypeError(f"{name}: round_trip_efficiency must be in (0, 1]")
    if np.any(np.diff(cls.ocv_curve.y) <= 0):
        raise TypeError(f"{name}: the OCV curve must increase strictly with SOC")
    if cls.ocv_curve.x[0] > 0 or cls.ocv_curve.x[-1] < 100:
        raise TypeError(f"{name}: the OCV curve must span 0..100 % SOC")
    factors = ("charge_temp_curve", "discharge_temp_curve", "charge_soc_curve", "discharge_soc_curve")
    for curve_name in factors:
        curve: Curve = getattr(cls, curve_name)
        if np.any(curve.y < 0) or np.any(curve.y > 1):
            raise TypeError(f"{name}.{curve_name}: factors must lie within 0..1")
    for curve_name in ("charge_temp_curve", "discharge_temp_curve"):
        curve = getattr(cls, curve_name)
        if curve(cls.temp_min_c) != 0 or curve(cls.temp_max_c) != 0:
            raise TypeError(f"{name}.{curve_name} must be 0 at temp_min_c and temp_max_c")
        # unimodal: rises to its plateau, then falls, so the factor is non-increasing away from the
        # comfortable band on either side
        steps = np.sign(np.diff(curve.y))
        nonzero = steps[steps != 0]
        if np.any(np.diff(nonzero) > 0):
            raise TypeError(f"{name}.{curve_name} must rise to a plateau and then fall (unimodal)")
