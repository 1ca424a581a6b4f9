"""OpenTelemetry set-up for the process (called by the CLI, like logging): ``[tracing]`` and OTEL_* variables.

Off (the default): nothing is installed, the OpenTelemetry API hands out no-op spans, no exporter thread
runs. On: a tracer provider with a batch processor exporting OTLP/protobuf over HTTP to ``endpoint`` (or
``OTEL_EXPORTER_OTLP_ENDPOINT``), service name ``OTEL_SERVICE_NAME`` or ``service_name``, parent-based
sampling at ``sample_ratio``. Log lines carry ``trace_id``/``span_id`` while a span is active.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace

from bessgw.config import TracingSection

#: how long the exporter batches spans; short, so a trace is visible within a second
EXPORT_DELAY_MS = 500
SHUTDOWN_TIMEOUT_MS = 2000

_provider: Any = None


def configure_tracing(settings: TracingSection) -> bool:
    """Install the tracer provider if ``settings.enabled``; returns whether tracing is on."""
    global _provider
    if not settings.enabled or _provider is not None:
        return _provider is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    name = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}),
                              sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    base = settings.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    exporter = OTLPSpanExporter(endpoint=base.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def shutdown_tracing() -> None:
    """Export what is batched (bounded) and stop the exporter thread."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.force_flush(SHUTDOWN_TIMEOUT_MS)
        provider.shutdown()


def add_trace_ids(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the active span, if any (W3C hex)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event
