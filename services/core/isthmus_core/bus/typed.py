"""Typed helpers between pydantic events and bus bytes, with W3C trace propagation.

``publish_event`` puts an :class:`~isthmus_core.contracts.events.Event` on its topic as JSON, keyed by
:func:`~isthmus_core.contracts.topics.partition_key`, inside a ``publish <topic>`` producer span whose
context travels both as headers and in the event's ``trace_context``. ``event_handler`` turns a
``fn(event)`` into a bus :data:`~isthmus_core.bus.port.Handler`: it validates the payload (bad payloads
raise :class:`~isthmus_core.errors.InvalidArgument`, which the bus dead-letters without retrying) and
runs ``fn`` inside a ``consume <topic>`` consumer span, child of the producer's.

Everything is generic in the topic's event type (:class:`~isthmus_core.contracts.topics.TopicSpec`), so
a module wires its handlers and publishers without casts::

    subscribe(topics.CHUNKS_CREATED, GROUP, core.on_chunks_created)  # on_chunks_created(ev: ChunksCreated)
    publisher(ctx.bus, topics.CHUNKS_EMBEDDED)  # -> Callable[[ChunksEmbedded], Awaitable[None]]

and a handler or event of the wrong type is a mypy error, not a dead letter at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from opentelemetry import propagate, trace
from pydantic import ValidationError

from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES, error_text
from isthmus_core.bus.port import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    EventBus,
    Handler,
    Message,
    RetryPolicy,
    Subscription,
)
from isthmus_core.contracts.events import Event
from isthmus_core.contracts.topics import DLQ_SUFFIX, TopicSpec, partition_key
from isthmus_core.errors import InvalidArgument
from isthmus_core.telemetry.tracing import tracer

H_CONTENT_TYPE = "content-type"
H_EVENT_TYPE = "isthmus-event-type"
H_TENANT = "isthmus-tenant"
CONTENT_TYPE_JSON = "application/json"

_TRACER_NAME = "isthmus.bus"
_MAX_REPORTED_ERRORS = 5

EventT = TypeVar("EventT", bound=Event)


def _messaging_attributes(topic: str, key: str) -> dict[str, str]:
    return {"messaging.system": "isthmus", "messaging.destination.name": topic, "messaging.message.key": key}


async def publish_event(bus: EventBus, spec: TopicSpec[EventT], event: EventT) -> None:
    """Publish ``event`` on ``spec``'s topic (JSON, keyed by tenant/document, traced).

    Raises :class:`InvalidArgument` if the event is not the topic's payload type or is larger than
    the bus limit (8 MiB of JSON)."""
    if not isinstance(event, spec.payload):
        raise InvalidArgument(
            f"topic {spec.name} carries {spec.payload.__name__} events, got {type(event).__name__}"
        )
    key = partition_key(event)
    # no active span: continue the trace the event already carries (if any)
    parent = None
    if not trace.get_current_span().get_span_context().is_valid and event.trace_context:
        parent = propagate.extract(event.trace_context)
    with tracer(_TRACER_NAME).start_as_current_span(
        f"publish {spec.name}",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes=_messaging_attributes(spec.name, key),
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            event = event.model_copy(update={"trace_context": carrier})
        value = event.model_dump_json().encode("utf-8")
        if len(value) > MAX_MESSAGE_BYTES:
            raise InvalidArgument(
                f"{type(event).__name__} for tenant {event.tenant_id!r} is {len(value)} bytes as JSON; "
                f"the bus carries at most {MAX_MESSAGE_BYTES} bytes per event — split it into batches"
            )
        headers = {
            H_CONTENT_TYPE: CONTENT_TYPE_JSON,
            H_EVENT_TYPE: type(event).__name__,
            H_TENANT: event.tenant_id,
            **carrier,
        }
        await bus.publish(spec.name, key, value, headers)


async def dead_letter_event(
    bus: EventBus, spec: TopicSpec[EventT], event: EventT, error: BaseException, *, group: str
) -> None:
    """Put (part of) a consumed event on ``<topic>.dlq`` with the error headers the bus's own dead
    letters carry, e.g. the rejected chunks of a batch whose good chunks were indexed. ``isthmus dlq
    replay`` re-drives it to ``spec``'s topic like any other dead letter (source offset -1: it was split
    out of a message, not copied)."""
    value = event.model_dump_json().encode("utf-8")
    headers = {
        H_CONTENT_TYPE: CONTENT_TYPE_JSON,
        H_EVENT_TYPE: type(event).__name__,
        H_TENANT: event.tenant_id,
        **event.trace_context,
        H_ERROR_CLASS: type(error).__name__,
        H_ERROR_MESSAGE: error_text(error),
        H_SOURCE_TOPIC: spec.name,
        H_SOURCE_PARTITION: "-1",
        H_SOURCE_OFFSET: "-1",
        H_ATTEMPTS: "1",
        H_GROUP: group,
    }
    await bus.publish(spec.name + DLQ_SUFFIX, partition_key(event), value, headers)


def decode_event(spec: TopicSpec[EventT], message: Message) -> EventT:
    """Validate a message's value as ``spec.payload``; :class:`InvalidArgument` says precisely why not."""
    where = f"partition {message.partition}, offset {message.offset}"
    what = f"{spec.payload.__name__} on {message.topic} ({where})"
    if len(message.value) > MAX_MESSAGE_BYTES:
        raise InvalidArgument(
            f"{what}: payload is {len(message.value)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
        )
    try:
        event = spec.payload.model_validate_json(message.value)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '<payload>'}: {err['msg']}"
            for err in exc.errors()[:_MAX_REPORTED_ERRORS]
        ]
        more = exc.error_count() - len(problems)
        suffix = f" (and {more} more)" if more > 0 else ""
        raise InvalidArgument(f"invalid {what}: {'; '.join(problems)}{suffix}") from exc
    return event


def event_handler(spec: TopicSpec[EventT], fn: Callable[[EventT], Awaitable[None]]) -> Handler:
    """A bus handler that decodes ``spec.payload`` events and runs ``fn`` in a ``consume`` span."""

    async def handle(message: Message) -> None:
        event = decode_event(spec, message)
        # headers win; the event's own trace_context is the fallback (e.g. a replayed DLQ message)
        carrier = {**event.trace_context, **message.headers}
        with tracer(_TRACER_NAME).start_as_current_span(
            f"consume {message.topic}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                **_messaging_attributes(message.topic, message.key),
                "messaging.message.id": event.event_id,
                "messaging.destination.partition.id": str(message.partition),
                "messaging.kafka.offset": message.offset,
                "isthmus.tenant": event.tenant_id,
                "isthmus.attempt": message.attempt,
            },
        ):
            await fn(event)

    handle.__qualname__ = f"event_handler[{spec.name}]({getattr(fn, '__qualname__', repr(fn))})"
    return handle


def subscribe(
    spec: TopicSpec[EventT],
    group: str,
    fn: Callable[[EventT], Awaitable[None]],
    retry: RetryPolicy | None = None,
) -> Subscription:
    """A bus subscription of ``group`` to ``spec``'s topic that hands ``fn`` decoded, typed events."""
    return Subscription(spec.name, group, event_handler(spec, fn), retry or RetryPolicy())


def publisher(bus: EventBus, spec: TopicSpec[EventT]) -> Callable[[EventT], Awaitable[None]]:
    """``publish_event`` bound to a bus and a topic: what a service core takes to emit its events.

    Prefer it to ``functools.partial(publish_event, bus, spec)``, whose event type mypy does not check."""

    async def publish(event: EventT) -> None:
        await publish_event(bus, spec, event)

    return publish


def dead_letterer(
    bus: EventBus, spec: TopicSpec[EventT], *, group: str
) -> Callable[[EventT, BaseException], Awaitable[None]]:
    """``dead_letter_event`` bound to a bus, a topic and the consumer group (typed like :func:`publisher`)."""

    async def dead_letter(event: EventT, error: BaseException) -> None:
        await dead_letter_event(bus, spec, event, error, group=group)

    return dead_letter
