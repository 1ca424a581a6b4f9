"""Campus dispatch through etcd: one campus setpoint, split into per-gateway shares, never over-delivered.

Telemetry and the campus view stay eventually consistent (gossip, :mod:`bessgw.federation`); the campus
setpoint, the allocator election and every gateway's share live in etcd (Raft, three members; gateways are
clients). Modules, bottom up:

- :mod:`~bessgw.campus.records`: the records in etcd (versioned JSON; strict bounded decoding, a corrupt
  value raises :class:`~bessgw.errors.CorruptRecordError`, is counted and never applied);
- :mod:`~bessgw.campus.fencing`: until when a gateway may act on its share (monotonic clock);
- :mod:`~bessgw.campus.allocation`: the split over gateways and the order of a change (pure, numpy);
- :mod:`~bessgw.campus.protocol`: the key layout and the allocator / gateway state machines (pure);
- :mod:`~bessgw.campus.client`: our etcd client (failover, bounded calls, keepalive, watch; aetcd stubs);
- :mod:`~bessgw.campus.service`: :class:`CampusService`, what the daemon runs.

**API for the daemon, the CLI and OPC UA** (see :mod:`bessgw.campus.service` for the sink contract)::

    service = CampusService(config.campus.coordination, gateway_id, campus_view, share_sink)
    await service.run()                        # in the daemon's task group; cancel to stop
    result = await service.submit_setpoint(p_kw, q_kvar=0.0, command_id=None, source="cli",
                                           principal="", expires_in_s=None, traceparent="")
    # -> SubmitResult(command_id, revision, duplicate); CoordinationError (exit 69) if etcd cannot commit,
    #    SetpointRefusedError (exit 65) for NaN / out-of-range values / a malformed command id
    await service.release(principal="")        # -> ReleaseResult(revision, released)
    service.status()                           # -> CampusStatus (no I/O)

``await share_sink(share: Share | None, fence_deadline_monotonic: float)`` is how the control loop receives its
``campus`` source; it must check ``time.monotonic() < fence_deadline_monotonic`` immediately before every
device write that keeps or raises ``|P|``.
"""

from bessgw.campus.records import Share
from bessgw.campus.service import (
    CampusService,
    CampusStatus,
    GatewayShareStatus,
    ReleaseResult,
    ShareSink,
    SubmitResult,
)

__all__ = ["CampusService", "CampusStatus", "GatewayShareStatus", "ReleaseResult", "Share", "ShareSink",
           "SubmitResult"]
