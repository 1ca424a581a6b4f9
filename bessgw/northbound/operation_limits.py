"""Per-request and per-subscription limits of the OPC UA server, advertised and enforced.

asyncua advertises ``MaxNodesPerRead``, ``MaxMonitoredItemsPerCall`` and the other operation limits
(10,000) in ``Server/ServerCapabilities`` but enforces none of them, and it bounds neither the monitored
items of a subscription nor those of a session. One client could therefore create 100,000 monitored items
in one request: the event loop was busy for seconds (every unit's poll timed out and the units were marked
down), the memory stayed taken, and modifying or deleting them (closing the session does) costs time
quadratic in their number. Here, for the sessions of clients (not asyncua's internal one):

* a request carrying more than :data:`MAX_NODES_PER_CALL` operations (Read, Write, Browse,
  TranslateBrowsePaths, Create/Modify/DeleteMonitoredItems), or a Call with more than
  :data:`MAX_METHOD_CALLS_PER_CALL` method calls, is refused whole with ``BadTooManyOperations``, as OPC UA
  Part 4 prescribes;
* a subscription holds at most :data:`MAX_MONITORED_ITEMS_PER_SUBSCRIPTION` monitored items and a session
  at most :data:`MAX_MONITORED_ITEMS_PER_SESSION`; items over either get ``BadTooManyMonitoredItems``
  each, the others are created;
* monitored items are created in chunks with the event loop served in between, and modified or deleted
  by id in constant time each (asyncua scans every item of the subscription per item);
* a request message is at most :data:`MAX_MESSAGE_BYTES` (:func:`limit_message_size`);
* ``ServerCapabilities`` says exactly these figures, so a client can size its requests;
* a subscription's publishing interval is revised into [100 ms (or the server's sampling interval if
  shorter), 1 h]: asyncua granted any value, and ten anonymous subscriptions at 1 µs kept a core busy
  publishing (0, negative and NaN, which asyncua turns into "publish on every change", get the fastest
  supported interval, as OPC UA Part 4 prescribes).

asyncua has no hook for any of this: :func:`install` wraps ``InternalServer.create_session`` (as the
connection guard does) and the services of each session it creates.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError

#: operations in one Read, Write, Browse, TranslateBrowsePaths or *MonitoredItems request
MAX_NODES_PER_CALL = 10_000
#: method calls in one Call request: each SetPower is a journaled command (an fsync, ~1 ms), so 10,000 in
#: one request would be ten seconds of one client's commands; 1,000 still covers every unit of a large gateway
MAX_METHOD_CALLS_PER_CALL = 1_000
#: monitored items one subscription holds (a SCADA watching 200 units watches ~5,000 variables)
MAX_MONITORED_ITEMS_PER_SUBSCRIPTION = 10_000
#: monitored items one session holds over all its subscriptions
MAX_MONITORED_ITEMS_PER_SESSION = 20_000
#: monitored items created between two turns of the event loop (~25 ms of work)
CREATE_CHUNK = 250
#: the largest request message taken in (asyncua: 100 MB, decoded in memory, from anyone)
MAX_MESSAGE_BYTES = 8 << 20
#: the slowest publishing interval a subscription gets (a longer request is revised to it)
SLOWEST_PUBLISHING_INTERVAL_MS = 3_600_000.0
#: the fastest publishing interval granted, unless the server samples faster still (then its sampling interval)
FASTEST_PUBLISHING_INTERVAL_MS = 100.0

_OPERATION_LIMITS = (
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
)

#: each session service, how to count the operations of its request, and how many one request may hold
_COUNTED: dict[str, tuple[Callable[[Any], int], int]] = {
    "read": (lambda params: len(params.NodesToRead), MAX_NODES_PER_CALL),
    "write": (lambda params: len(params.NodesToWrite), MAX_NODES_PER_CALL),
    "browse": (lambda params: len(params.NodesToBrowse), MAX_NODES_PER_CALL),
    "translate_browsepaths_to_nodeids": (len, MAX_NODES_PER_CALL),
    "call": (len, MAX_METHOD_CALLS_PER_CALL),
    "modify_monitored_items": (lambda params: len(params.ItemsToModify), MAX_NODES_PER_CALL),
    "delete_monitored_items": (lambda params: len(params.MonitoredItemIds), MAX_NODES_PER_CALL),
}


def limit_message_size(server: Server) -> None:
    """Take in request messages of at most :data:`MAX_MESSAGE_BYTES` (before ``server.start()``).

    asyncua's default is 100 MB a message, buffered and then decoded in memory, from any connection
    that opened a channel: four anonymous 90 MB writes took the gateway from 175 MB to 725 MB (and it
    kept 510 MB). A request of the largest allowed size (10,000 operations) is well under 1 MB.
    """
    limits = server.limits
    limits.max_message_size = MAX_MESSAGE_BYTES
    limits.max_chunk_count = math.ceil(MAX_MESSAGE_BYTES / limits.max_recv_buffer)


async def advertise(server: Server, max_sessions: int) -> None:
    """Write the enforced figures into ``Server/ServerCapabilities`` (after ``server.init()``)."""
    figures = {nodeid: MAX_NODES_PER_CALL for nodeid in _OPERATION_LIMITS}
    figures[ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerMethodCall] = MAX_METHOD_CALLS_PER_CALL
    figures[ua.ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription] = \
        MAX_MONITORED_ITEMS_PER_SUBSCRIPTION
    figures[ua.ObjectIds.Server_ServerCapabilities_MaxMonitoredItems] = MAX_MONITORED_ITEMS_PER_SESSION * max_sessions
    for nodeid, value in figures.items():
        await server.get_node(nodeid).write_value(ua.Variant(value, ua.VariantType.UInt32))


def install(iserver: Any, sampling_interval_ms: float) -> None:
    """Enforce the limits on every session ``iserver`` creates from now on."""
    create = iserver.create_session
    fastest_publishing_interval_ms = min(sampling_interval_ms, FASTEST_PUBLISHING_INTERVAL_MS)

    def create_session(*args: Any, **kwargs: Any) -> Any:
        session = create(*args, **kwargs)
        _limit_session(session, iserver, fastest_publishing_interval_ms)
        return session

    iserver.create_session = create_session


def revised_publishing_interval_ms(requested_ms: float, fastest_ms: float) -> float:
    """The publishing interval granted for ``requested_ms`` (Part 4: 0, negative: the fastest supported)."""
    if math.isnan(requested_ms) or requested_ms <= fastest_ms:
        return fastest_ms
    return min(requested_ms, SLOWEST_PUBLISHING_INTERVAL_MS)


def _limit_session(session: Any, iserver: Any, fastest_publishing_interval_ms: float) -> None:
    for name, (count, limit) in _COUNTED.items():
        setattr(session, name, _bounded(getattr(session, name), count, limit))
    create_subscription = session.create_subscription

    async def revised_subscription(params: ua.CreateSubscriptionParameters, *args: Any, **kwargs: Any) -> Any:
        params.RequestedPublishingInterval = revised_publishing_interval_ms(
            params.RequestedPublishingInterval, fastest_publishing_interval_ms)
        return await create_subscription(params, *args, **kwargs)

    session.create_subscription = revised_subscription
    session.create_monitored_items = _bounded(
        functools.partial(_create_monitored_items, session.create_monitored_items, session, iserver),
        lambda params: len(params.ItemsToCreate), MAX_NODES_PER_CALL)


def _bounded(service: Callable[[Any], Any], count: Callable[[Any], int], limit: int) -> Callable[[Any], Any]:
    @functools.wraps(service)
    async def bounded(params: Any, *args: Any, **kwargs: Any) -> Any:
        if count(params) > limit:
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)
        return await service(params, *args, **kwargs)

    return bounded


async def _create_monitored_items(create: Callable[[Any], Any], session: Any, iserver: Any,
                                  params: ua.CreateMonitoredItemsParameters) -> list[ua.MonitoredItemCreateResult]:
    subscriptions = iserver.subscription_service.subscriptions
    subscription = subscriptions.get(params.SubscriptionId)
    if subscription is None:
        return await create(params)  # asyncua answers BadSubscriptionIdInvalid
    items_service = subscription.monitored_item_srv
    _index_by_id(items_service)
    in_session = sum(len(sub.monitored_item_srv._monitored_items) for sub in list(subscriptions.values())
                     if sub.session_id == session.session_id)
    room = max(0, min(MAX_MONITORED_ITEMS_PER_SUBSCRIPTION - len(items_service._monitored_items),
                      MAX_MONITORED_ITEMS_PER_SESSION - in_session))
    admitted, refused = params.ItemsToCreate[:room], len(params.ItemsToCreate) - room
    results: list[ua.MonitoredItemCreateResult] = []
    for start in range(0, len(admitted), CREATE_CHUNK):
        if start:
            await asyncio.sleep(0)  # polls, commands and other clients run between chunks
        chunk = ua.CreateMonitoredItemsParameters(SubscriptionId=params.SubscriptionId,
                                                  TimestampsToReturn=params.TimestampsToReturn,
                                                  ItemsToCreate=admitted[start:start + CREATE_CHUNK])
        results.extend(await create(chunk))
    results.extend(ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems))
                   for _ in range(max(0, refused)))
    return results


def _index_by_id(items_service: Any) -> None:
    """Modify and delete a subscription's monitored items by id (asyncua scans them all for each one)."""
    if getattr(items_service, "_bessgw_indexed", False):
        return
    items_service._bessgw_indexed = True
    items_service.modify_monitored_items = functools.partial(_modify_monitored_items, items_service)
    items_service.delete_monitored_items = functools.partial(_delete_monitored_items, items_service)


def _modify_monitored_items(items_service: Any, params: ua.ModifyMonitoredItemsParameters
                            ) -> list[ua.MonitoredItemModifyResult]:
    """asyncua's modify, found by id, and answering an unknown id (where asyncua raises a TypeError)."""
    results: list[ua.MonitoredItemModifyResult] = []
    for request in params.ItemsToModify:
        item = items_service._monitored_items.get(request.MonitoredItemId)
        if item is None:
            results.append(ua.MonitoredItemModifyResult(
                StatusCode=ua.StatusCode(ua.StatusCodes.BadMonitoredItemIdInvalid)))
            continue
        requested = request.RequestedParameters
        queue_size = items_service._revise_queue_size(requested.QueueSize)
        if requested.Filter is not None:
            item.filter = requested.Filter
        item.queue_size = queue_size
        results.append(ua.MonitoredItemModifyResult(RevisedSamplingInterval=requested.SamplingInterval,
                                                    RevisedQueueSize=queue_size))
    return results


def _delete_monitored_items(items_service: Any, ids: list[int]) -> list[ua.StatusCode]:
    """asyncua's delete, with one reverse index per call instead of a scan per item."""
    handles = {mid: handle for handle, mid in items_service._monitored_datachange.items()}
    event_keys = {mid: key for key, mids in items_service._monitored_events.items() for mid in mids}
    results: list[ua.StatusCode] = []
    for mid in ids:
        if items_service._monitored_items.pop(mid, None) is None:
            results.append(ua.StatusCode(ua.StatusCodes.BadMonitoredItemIdInvalid))
            continue
        key = event_keys.pop(mid, None)
        if key is not None:
            mids = items_service._monitored_events[key]
            mids.remove(mid)
            if not mids:
                items_service._monitored_events.pop(key)
        handle = handles.pop(mid, None)
        if handle is not None:
            items_service.aspace.delete_datachange_callback(handle)
            items_service._monitored_datachange.pop(handle)
        results.append(ua.StatusCode())
    return results
