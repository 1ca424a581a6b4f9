"""A logger that keeps what it is told, so a test can assert a unit went down once and came back once."""

from __future__ import annotations

from typing import Any


class RecordingLog:
    """A :class:`bessgw.plugin.Logger` that keeps every event (and binds like structlog)."""

    def __init__(self, events: list[tuple[str, str, dict[str, Any]]] | None = None, **bound: Any) -> None:
        self.events = events if events is not None else []
        self.bound = bound

    def bind(self, **kw: Any) -> RecordingLog:
        """A logger adding ``kw`` to every event, writing into the same list."""
        return RecordingLog(self.events, **{**self.bound, **kw})

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, {**self.bound, **kw}))

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        """The fields of every event called ``event``, oldest first."""
        return [fields for _level, name, fields in self.events if name == event]
