"""The W3C trace context a northbound command carries along (journal, campus setpoint in etcd, shares).

A command accepted inside a span keeps that span's ``traceparent``, so every later step — the control
step, each device write, and on other gateways the writes of their campus share — can start as its
child: one command is one trace, however far it travels.
"""

from __future__ import annotations

from opentelemetry import propagate


def current_traceparent() -> str:
    """The ``traceparent`` of the active span; '' when no span is being recorded (tracing off)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")
