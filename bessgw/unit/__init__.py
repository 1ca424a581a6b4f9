"""The unit runtime: one supervised task per unit, the only door to a vendor driver.

Between control (above) and the transports (below): :class:`UnitSupervisor` runs a unit and serialises
every call into its driver, :class:`UnitDirectory` lists the running units for the upper layers, and
:class:`UnitSnapshot` is the one immutable view of a unit they read.
"""

from bessgw.unit.directory import UnitDirectory
from bessgw.unit.snapshot import UnitSnapshot
from bessgw.unit.supervisor import UnitSupervisor

__all__ = ["UnitDirectory", "UnitSnapshot", "UnitSupervisor"]
