"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

GRPC_REQUESTS = Counter("isthmus_grpc_requests_total", "gRPC requests handled", ["method", "code"])
GRPC_LATENCY = Histogram(
    "isthmus_grpc_request_seconds",
    "gRPC request latency",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ADMISSION_REFUSED = Counter(
    "isthmus_admission_refused_total", "gRPC calls refused by admission control", ["method", "reason"]
)
ADMISSION_IN_FLIGHT = Gauge("isthmus_admission_in_flight", "admitted gRPC calls running", ["family"])
ADMISSION_QUEUED = Gauge("isthmus_admission_queued", "gRPC calls waiting for admission", ["family"])
BUS_HANDLED = Counter("isthmus_bus_messages_total", "bus messages handled", ["topic", "group", "outcome"])
BUS_CONSUMER_LAG = Gauge(
    "isthmus_bus_consumer_lag",
    "messages on a partition not yet handled by a group",
    ["topic", "group", "partition"],
)
BUS_DEAD_LETTERED = Counter("isthmus_bus_dead_lettered_total", "messages sent to a DLQ", ["topic", "group"])
BUS_BACKLOG_BYTES = Gauge(
    "isthmus_bus_backlog_bytes",
    "bytes on an in-process partition not yet handled by its slowest group (bounded: publish waits)",
    ["topic", "partition"],
)
BUS_RETAINED_BYTES = Gauge(
    "isthmus_bus_retained_bytes",
    "bytes an in-process partition holds in memory: its backlog and its retained history",
    ["topic", "partition"],
)
BUS_PUBLISH_WAITS = Counter(
    "isthmus_bus_publish_waits_total",
    "in-process publishes held back by a full partition backlog, by outcome (published | refused)",
    ["topic", "outcome"],
)
BUS_RETENTION_DROPPED = Counter(
    "isthmus_bus_retention_dropped_total",
    "records an in-process partition dropped from its history past the retention bounds (on a .dlq "
    "topic: dead letters no longer listed nor replayable, also logged)",
    ["topic"],
)
REPLICATION_EVENTS = Counter(
    "isthmus_replication_events_total",
    "events mirrored from another region, by origin region, service and outcome "
    "(applied | stale: older than what this region holds | tenant_absent: the tenant is not held here)",
    ["origin", "service", "outcome"],
)

AUDIT_RECORDS = Counter(
    "isthmus_audit_records_total",
    "audit records handed to the audit sink, by kind and outcome (published | dropped: logged in full "
    "instead, the queue being full or the publish failing)",
    ["kind", "outcome"],
)

ASK_STAGE_SECONDS = Histogram(
    "isthmus_ask_stage_seconds",
    "time an answer spent in each stage (input_guard, retrieval, generation, output_guard)",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

ANSWER_CACHE_LOOKUPS = Counter(
    "isthmus_answer_cache_lookups_total",
    "agent answer cache lookups, by outcome (exact | semantic: hits by how they matched | miss)",
    ["outcome"],
)
ANSWER_CACHE_STORES = Counter(
    "isthmus_answer_cache_stores_total",
    "answers offered to the agent answer cache, by outcome (stored | stale: computed before the "
    "tenant's cache was invalidated, so dropped)",
    ["outcome"],
)
ANSWER_CACHE_INVALIDATIONS = Counter(
    "isthmus_answer_cache_invalidations_total",
    "a tenant's cached answers dropped, by reason (chunks_indexed | erasure | tenant_deleted | manual)",
    ["reason"],
)
LLM_TOKENS = Counter(
    "isthmus_llm_tokens_total",
    "LLM tokens used, by tenant, model and kind (prompt | completion)",
    ["tenant", "model", "kind"],
)
LLM_COST_USD = Counter(
    "isthmus_llm_cost_usd_total",
    "LLM cost in USD from the price table, by tenant and model",
    ["tenant", "model"],
)
LLM_UNPRICED = Counter(
    "isthmus_llm_unpriced_usages_total",
    "LLM usages of a model the price table does not list (counted at 0 USD), by model",
    ["model"],
)


def serve_metrics(
    port: int, host: str = "127.0.0.1", guard: Callable[[str | None], tuple[int, str]] | None = None
) -> None:
    """Expose /metrics over HTTP on a daemon thread (prometheus_client's WSGI app and threading server).
    ``guard`` decides each request from its ``Authorization`` header: (200, "") lets it through, any
    other status is answered with its reason (isthmus_core.auth.metrics_guard)."""
    if not port:
        return
    app = make_wsgi_app()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if guard is not None:
            status, reason = guard(environ.get("HTTP_AUTHORIZATION"))
            if status != 200:
                headers = [("Content-Type", "text/plain; charset=utf-8")]
                if status == 401:
                    headers.append(("WWW-Authenticate", 'Bearer realm="isthmus-metrics"'))
                start_response(f"{status} {HTTPStatus(status).phrase}", headers)
                return [reason.encode() + b"\n"]
        result: Iterable[bytes] = app(environ, start_response)
        return result

    server = make_server(host, port, guarded, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="isthmus-metrics", daemon=True).start()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        return None
