"""Entry point of the chemistry plugin: registers the LFP, NMC, LTO and VRFB models.

Built-in, but loaded exactly like a third-party plugin (entry point ``chemistry`` in group ``bessgw``)
and importing only the public API :mod:`bessgw.plugin`.
"""

from __future__ import annotations

from bessgw.plugin import ChemistryModel, hookimpl
from bessgw_chemistry.lfp import Lfp
from bessgw_chemistry.lto import Lto
from bessgw_chemistry.nmc import Nmc
from bessgw_chemistry.vrfb import Vrfb

BESSGW_PLUGIN_API = "1.0"


@hookimpl
def register_chemistries() -> list[ChemistryModel]:
    """Fresh instances on every collection (start-up and reload); the models hold no state."""
    return [Lfp(), Nmc(), Lto(), Vrfb()]
