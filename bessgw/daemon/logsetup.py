"""structlog configuration for the process (called by the CLI only, never by library code).

One JSON object per line on **stdout** when the output is not a terminal (journald takes stdout through
``JOURNAL_STREAM``; pipes, ``bessgw run | jq``), a readable console on a terminal; ``log_format`` in
config can force either. Everything goes through the same renderer:

- the libraries' stdlib loggers (asyncua, pymodbus, python-can, aetcd/grpc, asyncio, aiohttp) through a
  :class:`structlog.stdlib.ProcessorFormatter` on the root handler, so a library's traceback is one JSON
  line, never raw lines in the stream; uncaught exceptions (main thread, other threads) and warnings too;
- exceptions are rendered as ``{"type", "message", "stack"}``: the innermost frames as
  ``file:line in function`` and **never local variables** (a secret in a local must not reach journald).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import traceback
from types import TracebackType
from typing import Any, TextIO

import structlog

from bessgw.daemon.tracing import add_trace_ids

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: frames kept per exception (innermost last), and chained causes followed
STACK_FRAMES = 8
CHAINED_CAUSES = 3
#: library loggers kept at ERROR unless debugging (they are chatty at WARNING on every reconnect)
NOISY_LOGGERS = ("pymodbus", "asyncua", "can", "aetcd", "grpc", "aiohttp.access", "opentelemetry")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def describe_exception(err: BaseException) -> dict[str, Any]:
    """``type``, ``message`` and a short ``stack`` of ``err`` (and of its causes); no local variables."""
    described: dict[str, Any] = {}
    current: dict[str, Any] = described
    seen = 0
    while True:
        frames = traceback.extract_tb(err.__traceback__)[-STACK_FRAMES:]
        current.update(type=f"{type(err).__module__}.{type(err).__qualname__}".removeprefix("builtins."),
                       message=str(err)[:2000],
                       stack=[f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
                              for frame in frames])
        cause = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        seen += 1
        if cause is None or seen > CHAINED_CAUSES:
            return described
        current["cause"] = {}
        current, err = current["cause"], cause


def _exception_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Turn ``exc_info`` into ``exception`` (see :func:`describe_exception`); drop stack_info dumps."""
    exc_info = event.pop("exc_info", None)
    event.pop("stack_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        if isinstance(exc_info, tuple) and exc_info[1] is not None:
            event["exception"] = describe_exception(exc_info[1])
    return event


def _console_exception(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """On a terminal the exception reads as one short block (still without locals)."""
    exception = event.pop("exception", None)
    if exception is not None:
        lines, current = [], exception
        while current:
            lines.append(f"{current['type']}: {current['message']}")
            lines += [f"    at {frame}" for frame in current["stack"]]
            current = current.get("cause")
        event["exception"] = "\n" + "\n".join(lines)
    return event


def _finite_numbers(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities are not JSON: a missing measurement is logged as null."""
    for key, value in event.items():
        if isinstance(value, float) and not math.isfinite(value):
            event[key] = None
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and the libraries' stdlib logging to ``stream`` (stdout), one renderer for all."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if stream.isatty() and not os.environ.get("JOURNAL_STREAM") else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _exception_fields,
        add_trace_ids,
    ]
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        tail: list[structlog.typing.Processor] = [_finite_numbers, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty(),
                                                 exception_formatter=structlog.dev.plain_traceback)
        tail = [_console_exception, renderer]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),  # one write per line, flushed
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.addFilter(_demote_library_errors_at_shutdown)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if _LEVELS[level] > logging.DEBUG else logging.INFO)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR if _LEVELS[level] > logging.DEBUG else logging.INFO)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


_stopping = False


def shutting_down() -> None:
    """The daemon is stopping: a library's complaint about a connection we are closing is no error.

    From now on, records of library loggers (not ``bessgw``) at error level are logged at warning level
    — still visible, but a clean stop logs nothing at error level.
    """
    global _stopping
    _stopping = True


def _demote_library_errors_at_shutdown(record: logging.LogRecord) -> bool:
    if _stopping and record.levelno >= logging.ERROR and not record.name.startswith("bessgw"):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.during_shutdown = True
    return True


def _log_uncaught(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        return
    structlog.get_logger("bessgw").critical("uncaught_exception", exc_info=(kind, err, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    structlog.get_logger("bessgw").error("uncaught_exception_in_thread",
                                         thread=getattr(args.thread, "name", ""),
                                         exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
