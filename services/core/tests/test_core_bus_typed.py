"""publish_event / event_handler: JSON on the bus, partition keys, headers and trace propagation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import propagate, trace

from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.port import Message, RetryPolicy, Subscription
from isthmus_core.bus.typed import (
    H_CONTENT_TYPE,
    H_EVENT_TYPE,
    H_TENANT,
    dead_letterer,
    decode_event,
    event_handler,
    publish_event,
    publisher,
    subscribe,
)
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ChunksIndexed, DocumentSubmitted, TenantDeleted
from isthmus_core.errors import InvalidArgument
from isthmus_core.telemetry.tracing import configure_tracing
from isthmus_core.testing.bus_conformance import Collector


@pytest.fixture(autouse=True, scope="module")
def _tracing() -> None:
    configure_tracing("isthmus-core-tests")


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=2)
    yield bus
    await bus.stop()


def indexed(**overrides: object) -> ChunksIndexed:
    fields: dict[str, object] = {
        "tenant_id": "acme",
        "idempotency_key": "doc-1:v1:0",
        "document_id": "doc-1",
        "content_hash": "abc",
        "version": 1,
        "batch_index": 0,
        "batch_count": 1,
        "count": 3,
    }
    return ChunksIndexed.model_validate({**fields, **overrides})


async def test_publish_event_writes_json_keyed_by_tenant_and_document(bus: InProcessBus) -> None:
    raw = Collector()
    bus.subscribe(Subscription(topics.CHUNKS_INDEXED.name, "raw", raw))
    await bus.start()
    event = indexed()
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        await publish_event(bus, topics.CHUNKS_INDEXED, event)
    await bus.drain(timeout=2)

    [message] = raw.messages
    assert message.key == "acme/doc-1"
    assert message.headers[H_CONTENT_TYPE] == "application/json"
    assert message.headers[H_EVENT_TYPE] == "ChunksIndexed"
    assert message.headers[H_TENANT] == "acme"
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert trace_id in message.headers["traceparent"]
    body = json.loads(message.value)
    assert body["trace_context"]["traceparent"] == message.headers["traceparent"]
    assert ChunksIndexed.model_validate_json(message.value).model_dump(exclude={"trace_context"}) == (
        event.model_dump(exclude={"trace_context"})
    )
    assert event.trace_context == {}, "the caller's frozen event is not changed"


async def test_without_a_current_span_the_event_s_own_trace_continues(bus: InProcessBus) -> None:
    seen: list[trace.Span] = []

    async def on_event(event: ChunksIndexed) -> None:
        seen.append(trace.get_current_span())

    bus.subscribe(
        Subscription(topics.CHUNKS_INDEXED.name, "g", event_handler(topics.CHUNKS_INDEXED, on_event))
    )
    await bus.start()
    with trace.get_tracer("test").start_as_current_span("earlier") as earlier:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    await publish_event(bus, topics.CHUNKS_INDEXED, indexed(trace_context=carrier))
    await bus.drain(timeout=2)
    assert seen[0].get_span_context().trace_id == earlier.get_span_context().trace_id


async def test_publish_event_rejects_an_event_of_another_topic(bus: InProcessBus) -> None:
    with pytest.raises(InvalidArgument, match="carries ChunksIndexed events, got TenantDeleted"):
        await publish_event(bus, topics.CHUNKS_INDEXED, TenantDeleted(tenant_id="acme", idempotency_key="k"))
    assert bus.lag() == {}


async def test_publish_event_rejects_an_event_over_the_size_limit(bus: InProcessBus) -> None:
    content = b"\0" * (MAX_MESSAGE_BYTES * 3 // 4 + 1024)  # base64 makes it larger than the limit
    event = DocumentSubmitted(tenant_id="acme", idempotency_key="k", filename="big.bin", content=content)
    with pytest.raises(InvalidArgument, match="at most 8388608 bytes"):
        await publish_event(bus, topics.DOCUMENTS_SUBMITTED, event)
    assert bus.partitions_of(topics.DOCUMENTS_SUBMITTED.name) == 2
    assert bus.lag() == {}


def test_decode_event_names_every_problem() -> None:
    payload = json.dumps({"tenant_id": "Not A Tenant", "document_id": "d", "surprise": 1}).encode()
    message = Message(topics.CHUNKS_INDEXED.name, "k", payload, partition=1, offset=7)
    with pytest.raises(InvalidArgument) as info:
        decode_event(topics.CHUNKS_INDEXED, message)
    reason = str(info.value)
    assert "ChunksIndexed on isthmus.chunks.indexed.v1 (partition 1, offset 7)" in reason
    assert "tenant_id: String should match pattern" in reason
    assert "idempotency_key: Field required" in reason
    assert "and 3 more" in reason  # content_hash, version, batch_index, batch_count, count, surprise


def test_decode_event_rejects_oversize_payloads_before_parsing() -> None:
    message = Message("t", "k", b" " * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(InvalidArgument, match="over the 8388608-byte limit"):
        decode_event(topics.CHUNKS_INDEXED, message)


def test_decode_event_rejects_non_json() -> None:
    with pytest.raises(InvalidArgument, match="Invalid JSON"):
        decode_event(topics.TENANTS_DELETED, Message("t", "k", b"\xff\xfe not json"))


async def test_errors_of_the_wrapped_function_reach_the_bus() -> None:
    async def on_event(event: TenantDeleted) -> None:
        raise RuntimeError(f"cannot delete {event.tenant_id}")

    handler = event_handler(topics.TENANTS_DELETED, on_event)
    payload = TenantDeleted(tenant_id="acme", idempotency_key="k").model_dump_json().encode()
    with pytest.raises(RuntimeError, match="cannot delete acme"):
        await handler(Message(topics.TENANTS_DELETED.name, "acme", payload))


async def test_subscribe_and_publisher_carry_typed_events_of_one_topic(bus: InProcessBus) -> None:
    got: list[ChunksIndexed] = []

    async def on_indexed(event: ChunksIndexed) -> None:
        got.append(event)

    retry = RetryPolicy(max_attempts=5)
    sub = subscribe(topics.CHUNKS_INDEXED, "status", on_indexed, retry)
    assert (sub.topic, sub.group, sub.retry) == (topics.CHUNKS_INDEXED.name, "status", retry)
    assert subscribe(topics.CHUNKS_INDEXED, "status", on_indexed).retry == RetryPolicy()
    bus.subscribe(sub)
    await bus.start()
    event = indexed()
    await publisher(bus, topics.CHUNKS_INDEXED)(event)
    await bus.drain(timeout=2)
    [received] = got
    assert isinstance(received, ChunksIndexed)
    assert received.model_dump(exclude={"trace_context"}) == event.model_dump(exclude={"trace_context"})


async def test_dead_letterer_puts_the_event_on_its_topic_s_dlq(bus: InProcessBus) -> None:
    raw = Collector()
    bus.subscribe(Subscription(topics.CHUNKS_INDEXED.dlq, "raw", raw))
    await bus.start()
    await dead_letterer(bus, topics.CHUNKS_INDEXED, group="retrieval")(indexed(), ValueError("bad chunk"))
    await bus.drain(timeout=2)
    [message] = raw.messages
    assert message.headers["isthmus-error-class"] == "ValueError"
    assert message.headers["isthmus-consumer-group"] == "retrieval"
    assert ChunksIndexed.model_validate_json(message.value).count == 3


_MISWIRED = """
from isthmus_core.bus.port import EventBus
from isthmus_core.bus.typed import event_handler, publish_event, publisher, subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ChunksCreated, TenantDeleted


async def on_created(ev: ChunksCreated) -> None: ...


async def wire(bus: EventBus, gone: TenantDeleted) -> None:
    subscribe(topics.CHUNKS_CREATED, "g", on_created)
    event_handler(topics.CHUNKS_CREATED, on_created)
    subscribe(topics.TENANTS_DELETED, "g", on_created)  # wrong: a handler of another event
    event_handler(topics.TENANTS_DELETED, on_created)  # wrong
    await publisher(bus, topics.CHUNKS_CREATED)(gone)  # wrong: an event of another topic
    await publish_event(bus, topics.CHUNKS_CREATED, gone)  # wrong
"""


@pytest.mark.slow  # runs mypy (a few seconds)
def test_a_handler_or_event_of_another_topic_is_a_type_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mypy import api

    core = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("MYPYPATH", str(core))
    snippet = tmp_path / "miswired.py"
    snippet.write_text(_MISWIRED)
    args = ["--strict", "--no-incremental", "--follow-imports=silent", "--ignore-missing-imports"]
    out, _, _ = api.run([*args, "--cache-dir", str(tmp_path / "cache"), str(snippet)])
    flagged = {int(line.split(":")[1]) for line in out.splitlines() if line.startswith(str(snippet))}
    wrong = {n for n, line in enumerate(_MISWIRED.splitlines(), 1) if "# wrong" in line}
    assert len(wrong) == 4 and flagged == wrong, out
