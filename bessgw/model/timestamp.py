"""Wall-clock times as a person reads them: the machine's local time with its UTC offset, ISO 8601.

The gateway keeps times as epoch seconds (``time.time()``); whatever an operator reads (``bessgw status``,
``journal tail``, ``campus status``) shows ``2026-11-29T14:53:38+01:00`` instead, which is unambiguous
across time zones and sorts as text.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal


def local_iso(epoch_s: float, timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """``epoch_s`` as local ISO 8601 time with offset; a value no calendar can show is printed as it is."""
    if not isinstance(epoch_s, (int, float)) or not math.isfinite(epoch_s):
        return f"t={epoch_s}"
    try:
        return datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec=timespec)
    except (OverflowError, OSError, ValueError):
        return f"t={epoch_s}"
