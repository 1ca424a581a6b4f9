"""structlog configuration for the process (called by the CLI only, never by library code).

JSON lines when the output is not a terminal (journald via ``JOURNAL_STREAM``, pipes, files), a
readable coloured console otherwise; ``log_format`` in config can force either.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog (and stdlib logging of the libraries we use) to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() and not os.environ.get("JOURNAL_STREAM") else "json"
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors.append(structlog.processors.dict_tracebacks)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (pymodbus, asyncua, can) log through stdlib logging: keep them quiet unless debugging,
    # and send what they do say through the same stream.
    root = logging.getLogger()
    root.handlers[:] = [logging.StreamHandler(stream)]
    root.setLevel(logging.WARNING if _LEVELS[level] > logging.DEBUG else logging.INFO)
    for noisy in ("pymodbus", "asyncua", "can"):
        logging.getLogger(noisy).setLevel(logging.ERROR if _LEVELS[level] > logging.DEBUG else logging.INFO)
