"""asyncua's "sending service fault response" lines: counted, and summarised as one warning per 10 s.

asyncua logs every ServiceFault it answers at error level — a session refused at ``max_sessions``
(``BadTooManySessions``), a request over the operation limits (``BadTooManyOperations``), an unknown
session id. Each is the client's doing and already answered with its status code, so any client
could write error lines into the journal as fast as it sends requests, and an operator could not tell
them from the gateway's own faults. :func:`install` puts a filter on asyncua's processor logger: those
records are counted by status name, and at most one every :data:`LOG_INTERVAL_S` passes, as a warning
``opcua_service_faults`` holding the counts since the previous one. A request that does not decode (an
enumeration value that does not exist, a truncated structure) is logged by asyncua with a stack as
"Error while processing message" and answered ``BadInternalError``; those raised in asyncua's binary
decoder are counted the same way, as ``BadDecodingError``; a message over the size limits, which the
secure channel logs at error, as ``BadRequestTooLarge``. Other records pass unchanged.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections import Counter
from typing import Any

from bessgw.throttle import LogThrottle

#: the logger asyncua's message processor writes its ServiceFault lines to
LOGGER = "asyncua.server.uaprocessor"
#: the logger of asyncua's secure channel, which logs each message over the size limits at error
CHANNEL_LOGGER = "asyncua.uaprotocol"
#: its lines for a message over the limits (answered BadRequestTooLarge, connection closed)
_TOO_LARGE = ("Message size: ", "Number of message chunks: ")
#: at most one summary this often
LOG_INTERVAL_S = 10.0
_PREFIX = "sending service fault response"
#: asyncua's line (with a stack) for a request that failed otherwise; answered BadInternalError
_UNDECODABLE = "Error while processing message"
#: asyncua's binary decoder: an exception raised there is the client's malformed request, not a bug
_DECODER = os.path.join("asyncua", "ua", "ua_binary.py")


class ServiceFaultFilter(logging.Filter):
    """Counts asyncua's ServiceFault lines and lets a summary through at most every ``interval_s``."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        super().__init__()
        self.totals: Counter[str] = Counter()  #: ServiceFaults answered, by status name, since start
        self._unlogged: Counter[str] = Counter()
        self._throttle = LogThrottle(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        if record.msg.startswith(_PREFIX):
            args = record.args if isinstance(record.args, tuple) else ()
            status = str(args[1]) if len(args) > 1 else "unknown"
        elif record.msg.startswith(_TOO_LARGE) and record.levelno >= logging.ERROR:
            status = "BadRequestTooLarge"
        elif record.msg == _UNDECODABLE and _in_decoder(record.exc_info):
            status = "BadDecodingError"
            record.exc_info = record.exc_text = None
        else:
            return True
        self.totals[status] += 1
        self._unlogged[status] += 1
        if not self._throttle.due():
            return False
        summary = ", ".join(f"{name}={count}" for name, count in sorted(self._unlogged.items()))
        record.msg, record.args = "opcua_service_faults (answered to clients since the last line): %s", (summary,)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._unlogged.clear()
        return True


def _in_decoder(exc_info: Any) -> bool:
    """Whether the exception was raised while decoding the client's request (asyncua's ua_binary)."""
    if not isinstance(exc_info, tuple) or len(exc_info) < 3:
        return False
    return any(frame.filename.endswith(_DECODER) for frame in traceback.extract_tb(exc_info[2]))


def install() -> ServiceFaultFilter:
    """The process's one filter on asyncua's processor and channel loggers (added once, then reused)."""
    processor, channel = logging.getLogger(LOGGER), logging.getLogger(CHANNEL_LOGGER)
    for existing in processor.filters:
        if isinstance(existing, ServiceFaultFilter):
            return existing
    fault_filter = ServiceFaultFilter()
    processor.addFilter(fault_filter)
    channel.addFilter(fault_filter)
    return fault_filter
