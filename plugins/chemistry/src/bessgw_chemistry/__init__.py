"""bessgw plugin: chemistry models (LFP, NMC, LTO, VRFB) with vectorised equivalent circuits."""

from bessgw_chemistry.circuit import CellParameters, TheveninPack
from bessgw_chemistry.curves import Curve
from bessgw_chemistry.lfp import Lfp
from bessgw_chemistry.lto import Lto
from bessgw_chemistry.nmc import Nmc
from bessgw_chemistry.tabulated import TabulatedChemistry
from bessgw_chemistry.vrfb import Vrfb

__all__ = ["CellParameters", "Curve", "Lfp", "Lto", "Nmc", "TabulatedChemistry", "TheveninPack", "Vrfb"]
