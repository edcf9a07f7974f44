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
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

_configured = False


def configure_tracing(
    service_name: str, exporter: Literal["none", "console", "otlp"] = "none", endpoint: str = ""
) -> None:
    """Install an SDK tracer provider once per process.

    With an exporter, spans are recorded (sampled parent-based: a call continues its caller's decision)
    and exported. Without one (``none``, the default) nothing would read a recorded span, so none is
    recorded: every span still gets its trace and span ids, which propagate through gRPC metadata and
    bus headers (marked unsampled) and appear in the logs, for a tenth less CPU per answer
    (docs/benchmarks.md). Give every service the same exporter: a service that exports continues an
    unsampled caller's trace without recording it."""
    global _configured
    if _configured:
        return
    resource = Resource.create({"service.name": service_name})
    if exporter == "none":
        trace.set_tracer_provider(TracerProvider(resource=resource, sampler=ALWAYS_OFF))
        _configured = True
        return
    provider = TracerProvider(resource=resource)
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
