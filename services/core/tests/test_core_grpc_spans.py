"""Server spans: an error sets the span's status; only an unexpected one records a traceback (a refusal
or a bad request is answered with a status, and formatting its traceback would cost every refusal)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from isthmus_core.errors import InvalidArgument, ResourceExhausted
from isthmus_core.grpc.server import _SERVER_SPAN, _mark_span


def _span_after(exc: BaseException):  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("/svc/Method", **_SERVER_SPAN):
        _mark_span(exc)
    [span] = exporter.get_finished_spans()
    return span


def test_an_expected_error_sets_the_status_without_a_traceback() -> None:
    for exc in (ResourceExhausted("over capacity", 0.1), InvalidArgument("tenant_id is required")):
        span = _span_after(exc)
        assert span.status.status_code is StatusCode.ERROR
        assert str(exc) in (span.status.description or "")
        assert not [e for e in span.events if e.name == "exception"]


def test_an_unexpected_error_keeps_its_traceback() -> None:
    span = _span_after(RuntimeError("disk full"))
    assert span.status.status_code is StatusCode.ERROR
    [event] = [e for e in span.events if e.name == "exception"]
    assert "RuntimeError" in str(event.attributes)
