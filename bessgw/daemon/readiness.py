"""Whether the gateway serves: the facts behind READY=1, for ``/readyz`` (and anyone else who asks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bessgw.daemon.gateway import Gateway


def not_ready_reasons(gateway: Gateway) -> list[str]:
    """Why ``gateway`` does not serve now; empty when it does.

    Ready means what READY=1 means — the config is loaded, every transport and configured service has
    started — and, on top, that control is running and stepping (a control loop that stopped leaves the
    units on their own watchdogs: a load balancer or watchdog script must see that).
    """
    if gateway.starting:
        return ["starting: transports and services are not all started yet"]
    if gateway.stopping:
        return ["stopping"]
    reasons = [f"transport {name}: not started" for name, (transport, task) in gateway.transports.items()
               if not transport.started.is_set() or task.done()]
    for name, running in gateway.services.running.items():
        started = getattr(running.service, "started", None)
        if running.task.done():
            reasons.append(f"service {name}: not running (see the log)")
        elif started is not None and not started.is_set():
            reasons.append(f"service {name}: not started")
    control = gateway.services.control
    if control is None:
        reasons.append("control: not running (see the log)")
    elif not control.loop.healthy():
        reasons.append("control: not stepping (no step within three periods)")
    return reasons
