"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics over HTTP (prometheus_client runs it on a daemon thread)."""
    if port:
        start_http_server(port, addr=host)
