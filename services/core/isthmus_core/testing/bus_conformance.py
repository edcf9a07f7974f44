"""Conformance suite for :class:`~isthmus_core.bus.port.EventBus` adapters.

Mix :class:`BusConformance` into a test class and provide an async ``bus`` fixture that yields a bus
which is *not started yet* (tests subscribe first, then start it) and stops it at teardown::

    class TestInProcessBusConformance(BusConformance):
        @pytest.fixture
        async def bus(self) -> AsyncIterator[EventBus]:
            bus = InProcessBus()
            yield bus
            await bus.stop()

The suite only uses the port (``ensure_topics``, ``subscribe``, ``start``, ``publish``, ``stop``) and
waits by polling what handlers collected, with a timeout, so it runs unchanged against a real broker:
every test uses fresh topic and group names, and calls :meth:`BusConformance.settle` after ``start()``
(it awaits ``bus.wait_ready(timeout)`` when the adapter has one, e.g. Kafka's group join). Slow adapters
can raise :attr:`BusConformance.timeout_s` and :attr:`BusConformance.quiet_s`. An adapter whose
``publish`` waits while a partition's backlog is full (the in-process bus) builds the fixture's bus with
a small bound and sets :attr:`BusConformance.max_backlog` to it, so that every test also runs with
publishers held back, and the back-pressure test checks the bound.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from isthmus_core.bus.port import (
    H_ATTEMPTS,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_GROUP,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
    EventBus,
    Message,
    RetryPolicy,
    Subscription,
)
from isthmus_core.bus.typed import (
    CONTENT_TYPE_JSON,
    H_CONTENT_TYPE,
    H_EVENT_TYPE,
    H_TENANT,
    event_handler,
    publish_event,
)
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.topics import AnyTopic, TopicSpec
from isthmus_core.errors import InvalidArgument, Unavailable
from isthmus_core.telemetry.tracing import configure_tracing


class Collector:
    """A handler that records every message it is given (optionally failing first)."""

    def __init__(self, fail: Callable[[Message], Exception | None] | None = None) -> None:
        self.messages: list[Message] = []  # successful deliveries
        self.attempts: list[tuple[Message, float]] = []  # every call, with its monotonic time
        self._fail = fail

    async def __call__(self, message: Message) -> None:
        self.attempts.append((message, time.monotonic()))
        error = self._fail(message) if self._fail is not None else None
        if error is not None:
            raise error
        self.messages.append(message)

    def values(self) -> list[bytes]:
        return [m.value for m in self.messages]


class BusConformance:
    """The bus port's semantics (see :mod:`isthmus_core.bus.port`), as tests. Needs a ``bus`` fixture."""

    #: how long a test waits for deliveries before failing
    timeout_s: float = 10.0
    #: how long a test keeps listening after the expected deliveries, to catch extra (duplicate) ones
    quiet_s: float = 0.2
    partitions: int = 4
    #: the most unhandled messages a partition holds before ``publish`` waits, when the adapter (as the
    #: fixture builds it) has such a bound; None when the backlog waits elsewhere (Kafka: on the broker)
    max_backlog: int | None = None
    retry: RetryPolicy = RetryPolicy(
        max_attempts=3, initial_backoff_s=0.02, max_backoff_s=0.5, multiplier=2.0
    )

    # -- helpers ------------------------------------------------------------------------------------

    def spec(self, name: str) -> TopicSpec[TenantDeleted]:
        """A fresh topic (unique name, so tests never see each other's messages on a shared broker)."""
        return TopicSpec(
            f"isthmus.conformance.{name}.{uuid.uuid4().hex[:10]}.v1",
            TenantDeleted,
            "tenant_id",
            partitions=self.partitions,
        )

    @staticmethod
    def group(name: str) -> str:
        return f"conformance-{name}-{uuid.uuid4().hex[:10]}"

    async def settle(self, bus: EventBus) -> None:
        """After ``start()``: wait until the adapter's consumers are ready, when it can tell."""
        ready: Callable[[float], Awaitable[None]] | None = getattr(bus, "wait_ready", None)
        if ready is not None:
            await ready(self.timeout_s)

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {self.timeout_s}s waiting for {what}")
            await asyncio.sleep(0.01)

    async def start(self, bus: EventBus, *specs: AnyTopic) -> None:
        await bus.ensure_topics(list(specs))
        await bus.start()
        await self.settle(bus)

    # -- ordering and groups ------------------------------------------------------------------------

    async def test_ensure_topics_is_idempotent(self, bus: EventBus) -> None:
        spec = self.spec("ensure")
        await bus.ensure_topics([spec])
        got = Collector()
        bus.subscribe(Subscription(spec.name, self.group("ensure"), got, self.retry))
        await self.start(bus, spec)  # second ensure_topics on the same spec
        await bus.publish(spec.name, "k", b"after-ensure")
        await self.wait_until(lambda: len(got.messages) == 1, "one delivery")
        assert got.values() == [b"after-ensure"]

    async def test_per_key_ordering_with_interleaved_keys(self, bus: EventBus) -> None:
        spec = self.spec("order")
        keys = [f"tenant-{i}/doc-{i * 7}" for i in range(8)]
        per_key = 15
        rng = random.Random(1234)
        seen: dict[str, list[int]] = defaultdict(list)
        partitions: dict[str, set[int]] = defaultdict(set)

        async def handler(message: Message) -> None:
            await asyncio.sleep(rng.random() / 500)  # let other partitions overtake
            seen[message.key].append(int(message.value))
            partitions[message.key].add(message.partition)

        bus.subscribe(Subscription(spec.name, self.group("order"), handler, self.retry))
        await self.start(bus, spec)
        for seq in range(per_key):
            for key in rng.sample(keys, len(keys)):
                await bus.publish(spec.name, key, str(seq).encode())
        total = len(keys) * per_key
        await self.wait_until(lambda: sum(map(len, seen.values())) >= total, f"{total} deliveries")
        for key in keys:
            assert seen[key] == list(range(per_key)), f"key {key} delivered out of order: {seen[key]}"
            assert len(partitions[key]) == 1, f"key {key} spread over partitions {partitions[key]}"

    async def test_every_group_sees_every_message(self, bus: EventBus) -> None:
        spec = self.spec("groups")
        first, second = Collector(), Collector()
        bus.subscribe(Subscription(spec.name, self.group("first"), first, self.retry))
        bus.subscribe(Subscription(spec.name, self.group("second"), second, self.retry))
        await self.start(bus, spec)
        sent = {f"m{i}".encode() for i in range(20)}
        for i, value in enumerate(sorted(sent)):
            await bus.publish(spec.name, f"key-{i % 5}", value)
        await self.wait_until(lambda: len(first.messages) >= 20 and len(second.messages) >= 20, "both groups")
        await asyncio.sleep(self.quiet_s)
        assert sorted(first.values()) == sorted(sent)
        assert sorted(second.values()) == sorted(sent)

    async def test_members_of_one_group_share_the_messages(self, bus: EventBus) -> None:
        spec = self.spec("members")
        group = self.group("members")
        a, b = Collector(), Collector()
        bus.subscribe(Subscription(spec.name, group, a, self.retry))
        bus.subscribe(Subscription(spec.name, group, b, self.retry))
        await self.start(bus, spec)
        sent = [f"doc-{i}".encode() for i in range(40)]
        for value in sent:
            await bus.publish(spec.name, value.decode(), value)
        await self.wait_until(lambda: len(a.messages) + len(b.messages) >= len(sent), "40 deliveries")
        await asyncio.sleep(self.quiet_s)
        assert sorted(a.values() + b.values()) == sorted(sent), "each message goes to exactly one member"
        assert a.messages and b.messages, "both members of the group get partitions"
        assert not {m.partition for m in a.messages} & {m.partition for m in b.messages}

    async def test_a_publisher_is_held_back_not_dropped_while_a_slow_consumer_catches_up(
        self, bus: EventBus
    ) -> None:
        """A consumer stuck on its first message does not let the publisher run ahead without bound
        (when the adapter bounds the backlog), and once it moves on every message arrives, in order."""
        spec = self.spec("pressure")
        total = 3 * (self.max_backlog or 10) + 5
        published = 0
        unblock = asyncio.Event()
        handled: list[tuple[int, int]] = []  # (message number, messages published when it was handled)

        async def slow(message: Message) -> None:
            await unblock.wait()
            handled.append((int(message.value), published))

        async def produce() -> None:
            nonlocal published
            for i in range(total):
                await bus.publish(spec.name, "one-key", str(i).encode())
                published += 1

        bus.subscribe(Subscription(spec.name, self.group("pressure"), slow, self.retry))
        await self.start(bus, spec)
        producer = asyncio.create_task(produce())
        try:
            # the consumer is stuck on message 0 until the publisher is as far ahead as it may get
            limit = total if self.max_backlog is None else self.max_backlog
            await self.wait_until(lambda: published >= limit or producer.done(), f"{limit} publishes")
            unblock.set()
            await asyncio.wait_for(producer, self.timeout_s)  # a refused publish fails the test here
            await self.wait_until(lambda: len(handled) >= total, f"{total} deliveries")
        finally:
            producer.cancel()
        await asyncio.sleep(self.quiet_s)
        assert [n for n, _ in handled] == list(range(total)), "every message, once, in publish order"
        if self.max_backlog is not None:
            ahead = [(n, seen - n) for n, seen in handled if seen - n > self.max_backlog]
            assert not ahead, f"the publisher ran more than {self.max_backlog} messages ahead: {ahead[:5]}"

    # -- failures -----------------------------------------------------------------------------------

    async def test_failed_handler_is_retried_until_it_succeeds(self, bus: EventBus) -> None:
        spec = self.spec("retry")
        got = Collector(
            fail=lambda m: Unavailable("flaky dependency") if m.value == b"m1" and m.attempt == 1 else None
        )
        dlq = Collector()
        bus.subscribe(Subscription(spec.name, self.group("retry"), got, self.retry))
        bus.subscribe(Subscription(spec.dlq, self.group("retry-dlq"), dlq, self.retry))
        await self.start(bus, spec)
        for value in (b"m0", b"m1", b"m2"):
            await bus.publish(spec.name, "same-key", value)
        await self.wait_until(lambda: len(got.messages) >= 3, "three deliveries")
        await asyncio.sleep(self.quiet_s)
        assert got.values() == [b"m0", b"m1", b"m2"]
        assert [(m.value, m.attempt) for m, _ in got.attempts if m.value == b"m1"] == [(b"m1", 1), (b"m1", 2)]
        assert [m.offset for m in got.messages] == sorted({m.offset for m in got.messages})
        assert dlq.messages == []

    async def test_exhausted_retries_dead_letter_and_the_partition_keeps_flowing(self, bus: EventBus) -> None:
        spec = self.spec("dlq")
        group = self.group("dlq")
        got = Collector(fail=lambda m: RuntimeError(f"boom on {m.value!r}") if m.value == b"poison" else None)
        dlq = Collector()
        bus.subscribe(Subscription(spec.name, group, got, self.retry))
        bus.subscribe(Subscription(spec.dlq, self.group("dlq-reader"), dlq, self.retry))
        await self.start(bus, spec)
        await bus.publish(spec.name, "k", b"poison", {"x-origin": "test", "x-n": "1"})
        await bus.publish(spec.name, "k", b"after")
        await self.wait_until(lambda: len(dlq.messages) >= 1 and len(got.messages) >= 1, "DLQ + next message")
        await asyncio.sleep(self.quiet_s)

        poison_attempts = [(m, t) for m, t in got.attempts if m.value == b"poison"]
        assert [m.attempt for m, _ in poison_attempts] == list(range(1, self.retry.max_attempts + 1))
        times = [t for _, t in poison_attempts]
        for n, (earlier, later) in enumerate(itertools.pairwise(times)):
            expected = min(self.retry.initial_backoff_s * self.retry.multiplier**n, self.retry.max_backoff_s)
            assert later - earlier >= expected * 0.9, f"retry {n + 1} came after {later - earlier:.3f}s"
        assert got.values() == [b"after"], "the partition keeps flowing after a dead-letter"

        [dead] = dlq.messages
        source = poison_attempts[0][0]
        assert dead.value == b"poison"
        assert dead.key == "k"
        assert dead.headers["x-origin"] == "test" and dead.headers["x-n"] == "1"
        assert dead.headers[H_ERROR_CLASS] == "RuntimeError"
        assert "boom on b'poison'" in dead.headers[H_ERROR_MESSAGE]
        assert dead.headers[H_SOURCE_TOPIC] == spec.name
        assert dead.headers[H_SOURCE_PARTITION] == str(source.partition)
        assert dead.headers[H_SOURCE_OFFSET] == str(source.offset)
        assert dead.headers[H_ATTEMPTS] == str(self.retry.max_attempts)
        assert dead.headers[H_GROUP] == group

    async def test_permanent_error_dead_letters_after_one_attempt(self, bus: EventBus) -> None:
        spec = self.spec("permanent")
        got = Collector(
            fail=lambda m: InvalidArgument(f"bad input {m.value!r}") if m.value == b"bad" else None
        )
        dlq = Collector()
        bus.subscribe(Subscription(spec.name, self.group("permanent"), got, self.retry))
        bus.subscribe(Subscription(spec.dlq, self.group("permanent-dlq"), dlq, self.retry))
        await self.start(bus, spec)
        await bus.publish(spec.name, "k", b"bad")
        await bus.publish(spec.name, "k", b"good")
        await self.wait_until(lambda: len(dlq.messages) >= 1 and len(got.messages) >= 1, "DLQ + next message")
        await asyncio.sleep(self.quiet_s)
        assert [m.attempt for m, _ in got.attempts if m.value == b"bad"] == [1]
        [dead] = dlq.messages
        assert dead.value == b"bad"
        assert dead.headers[H_ERROR_CLASS] == "InvalidArgument"
        assert dead.headers[H_ERROR_MESSAGE] == "bad input b'bad'"
        assert dead.headers[H_ATTEMPTS] == "1"
        assert got.values() == [b"good"]

    async def test_key_value_and_headers_round_trip(self, bus: EventBus) -> None:
        spec = self.spec("headers")
        got = Collector()
        bus.subscribe(Subscription(spec.name, self.group("headers"), got, self.retry))
        await self.start(bus, spec)
        headers = {"x-plain": "value", "x-unicode": "café ✓", "x-empty": ""}
        value = bytes(range(256))  # every byte value, not only text
        await bus.publish(spec.name, "tenant-é/doc-1", value, headers)
        await bus.publish(spec.name, "tenant-é/doc-1", b"no headers")
        await self.wait_until(lambda: len(got.messages) >= 2, "two deliveries")
        first, second = got.messages
        assert (first.topic, first.key, first.value, first.headers) == (
            spec.name,
            "tenant-é/doc-1",
            value,
            headers,
        )
        assert first.attempt == 1
        assert second.headers == {}
        assert second.offset > first.offset and second.partition == first.partition

    # -- lifecycle ----------------------------------------------------------------------------------

    async def test_stop_lets_the_in_flight_handler_finish_and_commits_it(self, bus: EventBus) -> None:
        spec = self.spec("stop")
        started = asyncio.Event()
        finished: list[bytes] = []

        async def slow(message: Message) -> None:
            started.set()
            if message.value == b"slow":
                await asyncio.sleep(0.3)
            finished.append(message.value)

        bus.subscribe(Subscription(spec.name, self.group("stop"), slow, self.retry))
        await self.start(bus, spec)
        await bus.publish(spec.name, "k", b"slow")
        await asyncio.wait_for(started.wait(), self.timeout_s)
        await bus.stop()
        assert finished == [b"slow"], "stop() waits for the handler in flight"

        await bus.start()  # same group again: resumes after the committed message
        await self.settle(bus)
        await bus.publish(spec.name, "k", b"next")
        await self.wait_until(lambda: len(finished) >= 2, "the message after the restart")
        await asyncio.sleep(self.quiet_s)
        assert finished == [b"slow", b"next"], "a handled message is not delivered again after a restart"

    async def test_restart_resumes_groups_and_a_new_group_reads_from_the_beginning(
        self, bus: EventBus
    ) -> None:
        spec = self.spec("restart")
        old = Collector()
        bus.subscribe(Subscription(spec.name, self.group("old"), old, self.retry))
        await self.start(bus, spec)
        for i in range(5):
            await bus.publish(spec.name, f"k{i % 2}", f"before-{i}".encode())
        await self.wait_until(lambda: len(old.messages) >= 5, "five deliveries")
        await bus.stop()

        new = Collector()
        bus.subscribe(Subscription(spec.name, self.group("new"), new, self.retry))
        await bus.start()
        await self.settle(bus)
        await bus.publish(spec.name, "k0", b"after")
        await self.wait_until(lambda: len(old.messages) >= 6 and len(new.messages) >= 6, "both groups")
        await asyncio.sleep(self.quiet_s)
        before = [f"before-{i}".encode() for i in range(5)]
        assert sorted(old.values()) == sorted([*before, b"after"])
        assert old.values()[-1] == b"after"
        assert sorted(new.values()) == sorted([*before, b"after"]), (
            "a new group starts at the earliest offset"
        )

    # -- typed events -------------------------------------------------------------------------------

    async def test_typed_events_round_trip_with_trace_context(self, bus: EventBus) -> None:
        configure_tracing("isthmus-bus-conformance")
        assert isinstance(trace.get_tracer_provider(), SdkTracerProvider), "needs an SDK tracer provider"
        spec = self.spec("typed")
        received: list[tuple[TenantDeleted, trace.Span]] = []

        async def on_event(event: TenantDeleted) -> None:
            received.append((event, trace.get_current_span()))

        raw = Collector()
        bus.subscribe(Subscription(spec.name, self.group("typed"), event_handler(spec, on_event), self.retry))
        bus.subscribe(Subscription(spec.name, self.group("typed-raw"), raw, self.retry))
        await self.start(bus, spec)
        sent = TenantDeleted(tenant_id="acme", idempotency_key="delete-acme-1")
        with trace.get_tracer("isthmus.conformance").start_as_current_span("caller") as caller:
            await publish_event(bus, spec, sent)
        await self.wait_until(lambda: len(received) >= 1 and len(raw.messages) >= 1, "the event")

        event, span = received[0]
        trace_id = caller.get_span_context().trace_id
        assert event.model_dump(exclude={"trace_context"}) == sent.model_dump(exclude={"trace_context"})
        assert span.get_span_context().trace_id == trace_id, "consumer span continues the producer's trace"
        assert span.get_span_context().span_id != caller.get_span_context().span_id
        assert isinstance(span, ReadableSpan) and span.name == f"consume {spec.name}"
        assert format(trace_id, "032x") in event.trace_context["traceparent"]

        [message] = raw.messages
        assert message.key == "acme"
        assert message.headers[H_CONTENT_TYPE] == CONTENT_TYPE_JSON
        assert message.headers[H_EVENT_TYPE] == "TenantDeleted"
        assert message.headers[H_TENANT] == "acme"
        assert message.headers["traceparent"] == event.trace_context["traceparent"]

    async def test_invalid_payload_goes_to_the_dlq_with_the_reason(self, bus: EventBus) -> None:
        spec = self.spec("invalid")
        handled: list[TenantDeleted] = []

        async def on_event(event: TenantDeleted) -> None:
            handled.append(event)

        dlq = Collector()
        bus.subscribe(
            Subscription(spec.name, self.group("invalid"), event_handler(spec, on_event), self.retry)
        )
        bus.subscribe(Subscription(spec.dlq, self.group("invalid-dlq"), dlq, self.retry))
        await self.start(bus, spec)
        await bus.publish(spec.name, "acme", b"{not json")
        await bus.publish(spec.name, "acme", b'{"tenant_id": "acme"}')
        await publish_event(bus, spec, TenantDeleted(tenant_id="acme", idempotency_key="valid-1"))
        await self.wait_until(
            lambda: len(dlq.messages) >= 2 and len(handled) >= 1, "2 dead letters + 1 event"
        )
        await asyncio.sleep(self.quiet_s)

        assert [e.idempotency_key for e in handled] == ["valid-1"]
        by_value = {m.value: m for m in dlq.messages}
        not_json, incomplete = by_value[b"{not json"], by_value[b'{"tenant_id": "acme"}']
        for dead in (not_json, incomplete):
            assert dead.headers[H_ERROR_CLASS] == "InvalidArgument"
            assert dead.headers[H_ATTEMPTS] == "1"
            assert "TenantDeleted" in dead.headers[H_ERROR_MESSAGE]
        assert "json" in not_json.headers[H_ERROR_MESSAGE].lower()
        assert "idempotency_key" in incomplete.headers[H_ERROR_MESSAGE]
