"""The process layer: lifecycle, signals, sd_notify, reload, the admin socket and logging set-up.

:func:`run_gateway` runs one gateway until SIGTERM; :class:`Gateway` wires transports, units and the
gateway-wide services (:mod:`bessgw.daemon.services`) together in one root task group.
"""

from bessgw.daemon.gateway import Gateway, exit_process, run_gateway

__all__ = ["Gateway", "exit_process", "run_gateway"]
