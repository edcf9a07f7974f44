"""OpenTelemetry setup and propagation helpers (W3C trace context in gRPC metadata and bus headers)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False


def configure_tracing(
    service_name: str, exporter: Literal["none", "console", "otlp"] = "none", endpoint: str = ""
) -> None:
    """Install an SDK tracer provider once per process (spans are recorded even with no exporter so
    trace ids propagate and appear in logs)."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    _configured = True


@functools.cache
def tracer(name: str = "isthmus") -> trace.Tracer:
    """The tracer ``name``, made once: ``trace.get_tracer`` builds a new one on every call, a cost on every
    request. One obtained before :func:`configure_tracing` is OpenTelemetry's proxy, which uses the
    provider once it is installed."""
    return trace.get_tracer(name)


def inject(carrier: dict[str, str]) -> dict[str, str]:
    propagate.inject(carrier)
    return carrier


@contextmanager
def extracted(carrier: Mapping[str, str]) -> Iterator[None]:
    """Run the block with the remote context found in ``carrier`` as the current context."""
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)
