"""BusAuditSink on the real in-process bus: published, or logged in full and counted; never raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import structlog.testing
from prometheus_client import REGISTRY

from isthmus_core.auth.audit import BusAuditSink
from isthmus_core.auth.stack import AuditSink
from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import AuditRecorded


def counted(kind: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("isthmus_audit_records_total", {"kind": kind, "outcome": outcome})
    return value or 0.0


def denied(**overrides: object) -> AuditRecorded:
    fields: dict[str, object] = {
        "tenant_id": "acme",
        "idempotency_key": "audit-1",
        "kind": "permission_denied",
        "principal": "client-abc",
        "method": "/isthmus.ingestion.v1.IngestionService/Upload",
        "outcome": "denied",
        "reason": "writer role needed",
    }
    return AuditRecorded.model_validate({**fields, **overrides})


class Received:
    def __init__(self, expected: int) -> None:
        self.events: list[AuditRecorded] = []
        self._expected = expected
        self.done = asyncio.Event()

    async def __call__(self, ev: AuditRecorded) -> None:
        self.events.append(ev)
        if len(self.events) >= self._expected:
            self.done.set()


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=1)
    await bus.ensure_topics([topics.AUDIT_RECORDED])
    yield bus
    await bus.stop()


async def test_records_are_published_on_the_audit_topic_with_the_region(bus: InProcessBus) -> None:
    received = Received(2)
    bus.subscribe(subscribe(topics.AUDIT_RECORDED, "test", received))
    await bus.start()
    sink = BusAuditSink(bus, "eu-west")
    as_port: AuditSink = sink  # mypy checks it implements the port
    before = counted("permission_denied", "published")
    await sink.start()
    try:
        as_port.record(denied())
        sink.record(denied(idempotency_key="audit-2", tenant_id="", kind="authentication_failed"))
        await asyncio.wait_for(received.done.wait(), 10)
    finally:
        await sink.stop()
    first, second = sorted(received.events, key=lambda e: e.idempotency_key)  # two partitions
    assert first.tenant_id == "acme" and first.principal == "client-abc" and first.region == "eu-west"
    assert first.reason == "writer role needed" and first.outcome == "denied"
    assert second.kind == "authentication_failed" and second.tenant_id == ""
    assert counted("permission_denied", "published") == before + 1


async def test_a_full_queue_drops_the_record_logged_in_full_and_counted(bus: InProcessBus) -> None:
    sink = BusAuditSink(bus, "eu-west", queue_size=1)  # not started: nothing drains the queue
    before = counted("impersonation", "dropped")
    with structlog.testing.capture_logs() as logs:
        sink.record(denied(kind="impersonation", idempotency_key="kept"))
        sink.record(denied(kind="impersonation", idempotency_key="lost", details={"as": "bob"}))
    assert sink.pending == 1
    assert counted("impersonation", "dropped") == before + 1
    [log] = [entry for entry in logs if entry["event"] == "audit record not published"]
    assert log["record"]["idempotency_key"] == "lost" and log["record"]["details"] == {"as": "bob"}
    assert log["record"]["principal"] == "client-abc" and log["record"]["region"] == "eu-west"
    assert "full" in log["why"]


async def test_a_failed_publish_is_logged_and_counted_and_later_records_still_go(
    bus: InProcessBus,
) -> None:
    received = Received(1)
    bus.subscribe(subscribe(topics.AUDIT_RECORDED, "test", received))
    await bus.start()
    sink = BusAuditSink(bus)
    before = counted("erasure", "dropped")
    # larger than the bus carries: the real publish refuses it
    huge = denied(kind="erasure", idempotency_key="huge", details={"ids": "x" * (MAX_MESSAGE_BYTES + 1)})
    await sink.start()
    try:
        with structlog.testing.capture_logs() as logs:
            sink.record(huge)  # returns at once, never raises
            sink.record(denied(kind="erasure", idempotency_key="small"))
            await asyncio.wait_for(received.done.wait(), 10)
    finally:
        await sink.stop()
    assert [e.idempotency_key for e in received.events] == ["small"]
    assert counted("erasure", "dropped") == before + 1
    [log] = [entry for entry in logs if entry["event"] == "audit record not published"]
    assert log["record"]["idempotency_key"] == "huge" and "InvalidArgument" in log["why"]


async def test_stop_publishes_what_is_queued(bus: InProcessBus) -> None:
    received = Received(3)
    bus.subscribe(subscribe(topics.AUDIT_RECORDED, "test", received))
    await bus.start()
    sink = BusAuditSink(bus)
    for i in range(3):
        sink.record(denied(idempotency_key=f"queued-{i}"))
    await sink.start()
    await sink.stop()
    assert sink.pending == 0
    await asyncio.wait_for(received.done.wait(), 10)
    assert sorted(e.idempotency_key for e in received.events) == ["queued-0", "queued-1", "queued-2"]
