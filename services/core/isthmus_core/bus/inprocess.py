"""An in-process event bus with Kafka's semantics, for ``--target all`` and for fast tests.

Each topic is a set of partition logs (partition = CRC-32 of the key, stable across processes). Each
consumer group keeps a committed offset per partition; the members of a group (the subscriptions with
the same topic and group) share the partitions, and each assigned partition has one asyncio worker that
delivers its messages in order through :func:`isthmus_core.bus.delivery.deliver` (retries, backoff,
dead-letter) and advances the offset only once the handler returned. Logs and committed offsets live as
long as the bus object: a bus can be stopped, given new subscriptions, and started again.

Memory is bounded, per partition, by two rules (the limits are constructor arguments, set from the
``inprocess_*`` settings):

* **Back-pressure.** The *backlog* of a partition is what its slowest subscribed group has not handled
  yet. While it holds ``max_backlog_messages`` messages (or a new message would take it past
  ``max_backlog_bytes``; an empty backlog always takes one message, however large), :meth:`publish`
  waits for that group to catch up, in publish order. A publish from outside the bus (an RPC) waits at
  most ``publish_timeout_s``, then raises :class:`~isthmus_core.errors.Unavailable` naming the topic,
  the partition, the backlog and the lagging group: nothing is dropped, the caller's RPC fails with that
  reason. A publish from one of this bus's handlers waits as long as it takes (logging
  ``bus.publish_held_back`` every ``publish_timeout_s``): its worker stops taking messages meanwhile, so
  a slow consumer holds back the whole chain upstream of it, and the handler's work (an embedding
  batch…) is not redone (handlers must therefore not publish into a cycle of topics that feeds back
  to them: two full partitions waiting on each other would wait until stop). A publish to a full
  partition of a stopped (or stopping) bus fails at once, since no worker would make room; only a
  handler finishing while the bus stops still publishes (one message per worker past the bound), so
  that :meth:`stop` lets it complete and commit.
* **Retention.** A record every subscribed group has handled is history: a partition keeps the newest
  ``retained_messages`` of them (and at most ``retained_bytes``), for inspection (:meth:`messages`) and
  for groups that join later, and drops older ones. A topic no group subscribes to (a dead-letter topic,
  events nobody consumes in this process) is all history: it never holds a publisher back and keeps only
  its newest records. Offsets stay stable: a partition remembers the offset of its first kept record
  (its *log start*), and a group that joins later starts there — like a Kafka consumer with
  ``auto.offset.reset=earliest`` after retention deleted the oldest segments. Every dropped record is
  counted in :data:`~isthmus_core.telemetry.metrics.BUS_RETENTION_DROPPED`; a dropped dead letter is also
  logged (``bus.dead_letter_dropped_by_retention``): it can no longer be listed or replayed
  (:mod:`isthmus_core.bus.admin`).

:data:`~isthmus_core.telemetry.metrics.BUS_CONSUMER_LAG` (per group, updated on publish and on commit),
:data:`~isthmus_core.telemetry.metrics.BUS_BACKLOG_BYTES` and
:data:`~isthmus_core.telemetry.metrics.BUS_RETAINED_BYTES` show where the memory goes;
:data:`~isthmus_core.telemetry.metrics.BUS_PUBLISH_WAITS` counts held-back publishes by outcome.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Gauge

from isthmus_core.bus.admin import ConsumerPosition, Position
from isthmus_core.bus.delivery import deliver, validate_policy
from isthmus_core.bus.port import Message, Subscription
from isthmus_core.contracts.topics import DLQ_SUFFIX, AnyTopic
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.telemetry.metrics import (
    BUS_BACKLOG_BYTES,
    BUS_CONSUMER_LAG,
    BUS_PUBLISH_WAITS,
    BUS_RETAINED_BYTES,
    BUS_RETENTION_DROPPED,
)

_log = structlog.get_logger(__name__)

DEFAULT_MAX_BACKLOG_MESSAGES = 10_000
DEFAULT_MAX_BACKLOG_BYTES = 64 * 1024 * 1024
DEFAULT_PUBLISH_TIMEOUT_S = 10.0
DEFAULT_RETAINED_MESSAGES = 1_000
DEFAULT_RETAINED_BYTES = 32 * 1024 * 1024


#: the bus whose handler is running in this context (its publishes wait without a deadline)
_HANDLING: contextvars.ContextVar[InProcessBus | None] = contextvars.ContextVar("isthmus_bus_handling")


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key``: the same in every process (unlike ``hash()``, which is salted)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


@dataclass(frozen=True, slots=True)
class _Record:
    key: str
    value: bytes
    headers: dict[str, str]
    #: bytes this record holds (value, key and headers)
    size: int
    #: bytes appended to the partition up to and including this record
    cumulative: int
    #: when it was appended (ms since the epoch): this bus is the broker
    appended_ms: int = 0


@dataclass(slots=True)
class _Partition:
    records: collections.deque[_Record] = field(default_factory=collections.deque)
    #: offset of ``records[0]`` (the log start): earlier records were dropped by retention
    start: int = 0
    #: bytes ever appended (so the bytes between two offsets are a difference of cumulative sums)
    appended_bytes: int = 0
    #: publishers waiting for room in this partition
    waiting: int = 0
    #: this partition's gauges (made with the topic)
    backlog_gauge: Gauge | None = None
    retained_gauge: Gauge | None = None

    @property
    def end(self) -> int:
        """The offset the next record gets."""
        return self.start + len(self.records)

    def bytes_before(self, offset: int) -> int:
        """Bytes appended before ``offset`` (``start <= offset <= end``)."""
        if offset >= self.end:
            return self.appended_bytes
        record = self.records[offset - self.start]
        return record.cumulative - record.size


@dataclass(slots=True)
class _Topic:
    name: str
    partitions: list[_Partition]
    #: the groups subscribed to this topic
    groups: list[_Group] = field(default_factory=list)
    #: wakes this topic's workers when a message is appended or the bus stops (made by ``start``)
    arrived: asyncio.Condition | None = None
    #: wakes publishers waiting for room when a group commits or the bus stops (made by ``start``)
    room: asyncio.Condition | None = None


@dataclass(slots=True)
class _Group:
    name: str
    #: committed offset per partition (the next offset to deliver)
    offsets: list[int]
    members: list[Subscription] = field(default_factory=list)
    #: this group's lag gauge per partition
    lag_gauges: list[Gauge] = field(default_factory=list)


class InProcessBus:
    """:class:`~isthmus_core.bus.port.EventBus` in one process (see the module docstring)."""

    def __init__(
        self,
        *,
        partitions: int = 4,
        stop_timeout_s: float = 10.0,
        max_backlog_messages: int = DEFAULT_MAX_BACKLOG_MESSAGES,
        max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES,
        publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
        retained_messages: int = DEFAULT_RETAINED_MESSAGES,
        retained_bytes: int = DEFAULT_RETAINED_BYTES,
    ) -> None:
        if partitions < 1:
            raise ConfigurationError(f"InProcessBus needs at least 1 partition per topic, got {partitions}")
        if stop_timeout_s < 0:
            raise ConfigurationError(f"stop_timeout_s must be >= 0, got {stop_timeout_s}")
        if max_backlog_messages < 1 or max_backlog_bytes < 1:
            raise ConfigurationError(
                "the in-process backlog bounds must be >= 1, got "
                f"max_backlog_messages={max_backlog_messages} max_backlog_bytes={max_backlog_bytes}"
            )
        if publish_timeout_s < 0:
            raise ConfigurationError(f"publish_timeout_s must be >= 0, got {publish_timeout_s}")
        if retained_messages < 0 or retained_bytes < 0:
            raise ConfigurationError(
                "the in-process retention must be >= 0, got "
                f"retained_messages={retained_messages} retained_bytes={retained_bytes}"
            )
        self._partitions = partitions
        self._stop_timeout_s = stop_timeout_s
        self._max_backlog_messages = max_backlog_messages
        self._max_backlog_bytes = max_backlog_bytes
        self._publish_timeout_s = publish_timeout_s
        self._retained_messages = retained_messages
        self._retained_bytes = retained_bytes
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._progress: asyncio.Condition | None = None
        self._running = False
        self._stopping = False

    # -- topics -------------------------------------------------------------------------------------

    def _topic(self, name: str, partitions: int | None = None) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            if not name:
                raise InvalidArgument("topic name must not be empty")
            n = self._partitions if partitions is None else partitions
            topic = self._topics[name] = _Topic(
                name,
                [
                    _Partition(
                        backlog_gauge=BUS_BACKLOG_BYTES.labels(name, str(p)),
                        retained_gauge=BUS_RETAINED_BYTES.labels(name, str(p)),
                    )
                    for p in range(n)
                ],
            )
            if self._running:
                topic.arrived, topic.room = asyncio.Condition(), asyncio.Condition()
        return topic

    async def ensure_topics(self, specs: Sequence[AnyTopic]) -> None:
        """Create each topic with ``spec.partitions`` (and its DLQ with the bus default) if missing.

        An existing topic is left as it is, like Kafka's "topic already exists"."""
        for spec in specs:
            if spec.partitions < 1:
                raise InvalidArgument(
                    f"topic {spec.name!r} needs at least 1 partition, got {spec.partitions}"
                )
            self._topic(spec.name, spec.partitions)
            self._topic(spec.dlq)

    def messages(self, topic: str) -> list[Message]:
        """Every message ``topic`` still holds, partition by partition (for inspection: DLQs, tests):
        its unhandled backlog and its retained history (see the module docstring)."""
        found = self._topics.get(topic)
        if found is None:
            return []
        return [
            Message(
                topic,
                r.key,
                r.value,
                dict(r.headers),
                partition=p,
                offset=part.start + i,
                timestamp_ms=r.appended_ms,
            )
            for p, part in enumerate(found.partitions)
            for i, r in enumerate(part.records)
        ]

    def message_at(self, topic: str, partition: int, offset: int) -> Message | None:
        """The message at ``offset`` of ``topic``'s ``partition``; None if it holds none there (never
        appended, or dropped by retention)."""
        found = self._topics.get(topic)
        if found is None or not 0 <= partition < len(found.partitions):
            return None
        part = found.partitions[partition]
        if not part.start <= offset < part.end:
            return None
        r = part.records[offset - part.start]
        return Message(
            topic,
            r.key,
            r.value,
            dict(r.headers),
            partition=partition,
            offset=offset,
            timestamp_ms=r.appended_ms,
        )

    def group_positions(self) -> list[tuple[str, str, int, int, int]]:
        """``(topic, group, partition, committed, end)`` for every subscribed group: ``committed`` is the
        next offset the group handles, ``end`` the offset the next message gets."""
        return [
            (topic, name, p, offset, part.end)
            for (topic, name), group in self._groups.items()
            for p, (part, offset) in enumerate(
                zip(self._topics[topic].partitions, group.offsets, strict=True)
            )
        ]

    def partitions_of(self, topic: str) -> int:
        """How many partitions ``topic`` has (creating it with the default count if it is new)."""
        return len(self._topic(topic).partitions)

    def log_start(self, topic: str, partition: int) -> int:
        """The offset of the oldest record ``topic``'s ``partition`` still holds."""
        return self._topic(topic).partitions[partition].start

    # -- subscriptions ------------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        if self._running:
            raise FailedPrecondition(
                f"subscribe({subscription.topic!r}, group={subscription.group!r}) must be called before "
                "start(); stop the bus first to add subscriptions"
            )
        if not subscription.group:
            raise InvalidArgument(f"subscription to {subscription.topic!r} needs a consumer group")
        validate_policy(subscription.retry)
        topic = self._topic(subscription.topic)
        group = self._groups.get((subscription.topic, subscription.group))
        if group is None:
            # a new group starts at the log start: the oldest record still held
            group = _Group(
                subscription.group,
                [part.start for part in topic.partitions],
                lag_gauges=[
                    BUS_CONSUMER_LAG.labels(topic.name, subscription.group, str(p))
                    for p in range(len(topic.partitions))
                ],
            )
            self._groups[(subscription.topic, subscription.group)] = group
            topic.groups.append(group)
            for p in range(len(topic.partitions)):
                self._settle(topic, p)
        group.members.append(subscription)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._stopping = False
        self._progress = asyncio.Condition()
        for topic in self._topics.values():
            topic.arrived, topic.room = asyncio.Condition(), asyncio.Condition()
        for (topic_name, _), group in self._groups.items():
            topic = self._topics[topic_name]
            for partition in range(len(topic.partitions)):
                member = group.members[partition % len(group.members)]
                task = asyncio.create_task(
                    self._work(member, topic, group, partition),
                    name=f"bus:{topic_name}[{partition}]:{member.group}",
                )
                task.add_done_callback(_log_crash)
                self._workers.append(task)

    async def stop(self) -> None:
        """Stop consuming: idle workers end at once, in-flight handlers get ``stop_timeout_s`` to finish
        (their offsets are committed), the rest are cancelled (and redelivered after a restart).
        Other publishers waiting for room are refused with :class:`Unavailable`; a handler's publish
        waiting for room goes through, so that the handler can finish."""
        if not self._running:
            return
        self._stopping = True
        await self._notify_all()
        workers, self._workers = self._workers, []
        if workers:
            _, pending = await asyncio.wait(workers, timeout=self._stop_timeout_s)
            for task in pending:
                _log.warning("bus.stop_cancelled_handler", task=task.get_name())
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self._running = False
        self._progress = None
        for topic in self._topics.values():
            topic.arrived = topic.room = None

    async def _notify_all(self) -> None:
        for topic in self._topics.values():
            for condition in (topic.arrived, topic.room):
                if condition is not None:
                    async with condition:
                        condition.notify_all()
        if self._progress is not None:
            async with self._progress:
                self._progress.notify_all()

    # -- publishing ---------------------------------------------------------------------------------

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Append one message; wait (bounded) while its partition's backlog is full (module docstring).

        Raises :class:`Unavailable` if the slowest group did not make room in time."""
        await self.append(topic, key, value, headers)

    async def append(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, int]:
        """:meth:`publish`, returning where the message went: ``(partition, offset)``."""
        if not isinstance(value, bytes | bytearray):
            raise InvalidArgument(f"bus message values are bytes, got {type(value).__name__} for {topic!r}")
        t = self._topic(topic)
        p = partition_for(key, len(t.partitions))
        part = t.partitions[p]
        value = bytes(value)
        headers = dict(headers or {})
        size = len(value) + len(key.encode("utf-8")) + sum(len(k) + len(v) for k, v in headers.items())
        if part.waiting or self._full(t, p, size):  # waiting publishers go first: publish order
            await self._wait_for_room(t, p, size)
        part.appended_bytes += size
        part.records.append(_Record(key, value, headers, size, part.appended_bytes, int(time.time() * 1000)))
        offset = part.end - 1
        self._settle(t, p)
        if t.arrived is not None:
            async with t.arrived:
                t.arrived.notify_all()
        return p, offset

    def _slowest(self, topic: _Topic, partition: int) -> _Group | None:
        """The subscribed group furthest behind on ``partition`` (None if no group subscribes)."""
        groups = topic.groups
        if len(groups) < 2:
            return groups[0] if groups else None
        return min(groups, key=lambda g: g.offsets[partition])

    def _handled(self, topic: _Topic, partition: int) -> int:
        """The offset before which every subscribed group has handled everything (history)."""
        slowest = self._slowest(topic, partition)
        return topic.partitions[partition].end if slowest is None else slowest.offsets[partition]

    def _backlog(self, topic: _Topic, partition: int) -> tuple[int, int]:
        """Messages and bytes the slowest group has not handled yet on ``partition``."""
        part = topic.partitions[partition]
        handled = self._handled(topic, partition)
        return part.end - handled, part.appended_bytes - part.bytes_before(handled)

    def _full(self, topic: _Topic, partition: int, size: int) -> bool:
        messages, size_now = self._backlog(topic, partition)
        if messages == 0:
            return False  # an empty backlog takes one message, however large
        return messages >= self._max_backlog_messages or size_now + size > self._max_backlog_bytes

    async def _wait_for_room(self, topic: _Topic, partition: int, size: int) -> None:
        part = topic.partitions[partition]
        room = topic.room
        patient = _HANDLING.get(None) is self  # a handler of this bus: wait as long as it takes
        if room is None or ((self._stopping or self._publish_timeout_s == 0) and not patient):
            BUS_PUBLISH_WAITS.labels(topic.name, "refused").inc()
            why = (
                " and the bus is stopping"
                if self._stopping
                else " and the bus is not running"
                if room is None
                else ""
            )
            raise self._full_error(topic, partition, why)
        part.waiting += 1
        try:
            while True:
                try:
                    async with asyncio.timeout(self._publish_timeout_s or None):
                        async with room:
                            await room.wait_for(
                                lambda: self._stopping or not self._full(topic, partition, size)
                            )
                    break
                except TimeoutError:
                    error = self._full_error(topic, partition, f" after waiting {self._publish_timeout_s}s")
                    if not patient:
                        BUS_PUBLISH_WAITS.labels(topic.name, "refused").inc()
                        raise error from None
                    _log.warning("bus.publish_held_back", reason=str(error))
        finally:
            part.waiting -= 1
        if self._stopping and not patient:
            BUS_PUBLISH_WAITS.labels(topic.name, "refused").inc()
            raise self._full_error(topic, partition, " and the bus is stopping")
        # room, or a handler finishing while the bus stops (one message per worker past the bound)
        BUS_PUBLISH_WAITS.labels(topic.name, "published").inc()

    def _full_error(self, topic: _Topic, partition: int, why: str) -> Unavailable:
        messages, size = self._backlog(topic, partition)
        slowest = self._slowest(topic, partition)
        group = slowest.name if slowest is not None else "?"
        return Unavailable(
            f"the in-process bus is full: topic {topic.name!r} partition {partition} holds {messages} "
            f"messages ({size} bytes) not yet handled by consumer group {group!r} (bounds: "
            f"{self._max_backlog_messages} messages, {self._max_backlog_bytes} bytes){why}; "
            "retry later"
        )

    def _settle(self, topic: _Topic, partition: int) -> None:
        """After an append or a commit: drop the oldest handled records beyond the retention bounds,
        and update the gauges."""
        part = topic.partitions[partition]
        handled = self._handled(topic, partition)
        handled_bytes = part.bytes_before(handled)
        while part.start < handled and (
            handled - part.start > self._retained_messages
            or handled_bytes - part.bytes_before(part.start) > self._retained_bytes
        ):
            dropped = part.records.popleft()
            part.start += 1
            BUS_RETENTION_DROPPED.labels(topic.name).inc()
            if topic.name.endswith(DLQ_SUFFIX):
                _log.warning(
                    "bus.dead_letter_dropped_by_retention",
                    topic=topic.name,
                    partition=partition,
                    offset=part.start - 1,
                    key=dropped.key,
                    retained_messages=self._retained_messages,
                    retained_bytes=self._retained_bytes,
                )
        end = part.end
        for group in topic.groups:
            group.lag_gauges[partition].set(end - group.offsets[partition])
        if part.backlog_gauge is not None and part.retained_gauge is not None:
            part.backlog_gauge.set(part.appended_bytes - handled_bytes)
            part.retained_gauge.set(part.appended_bytes - part.bytes_before(part.start))

    # -- consuming ----------------------------------------------------------------------------------

    async def _work(self, sub: Subscription, topic: _Topic, group: _Group, partition: int) -> None:
        part = topic.partitions[partition]
        arrived, room = topic.arrived, topic.room
        assert arrived is not None and room is not None  # made by start() before the workers
        _HANDLING.set(self)  # this worker task's own context: its handlers' publishes are patient
        while True:
            async with arrived:
                await arrived.wait_for(lambda: self._stopping or group.offsets[partition] < part.end)
            if self._stopping:
                return
            offset = group.offsets[partition]
            record = part.records[offset - part.start]
            message = Message(
                sub.topic,
                record.key,
                record.value,
                dict(record.headers),
                partition,
                offset,
                timestamp_ms=record.appended_ms,
            )
            await deliver(sub.handler, message, sub.retry, group=sub.group, dead_letter=self.publish)
            group.offsets[partition] = offset + 1
            self._settle(topic, partition)
            if part.waiting:
                async with room:
                    room.notify_all()
            if self._progress is not None:
                async with self._progress:
                    self._progress.notify_all()

    def lag(self) -> dict[tuple[str, str], int]:
        """Messages published but not yet handled, per subscribed (topic, group)."""
        return {
            (topic, name): sum(
                part.end - offset
                for part, offset in zip(self._topics[topic].partitions, group.offsets, strict=True)
            )
            for (topic, name), group in self._groups.items()
        }

    def _caught_up(self) -> bool:
        return not any(self.lag().values())

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a plain deadline is the API)
        """Wait until every subscribed group has handled everything published so far, including what
        handlers publish meanwhile. Raises :class:`TimeoutError` (naming the lagging topics) after
        ``timeout`` seconds and :class:`FailedPrecondition` if the bus is not running."""
        if self._caught_up():
            return
        if not self._running or self._progress is None:
            raise FailedPrecondition("drain() needs a started bus: call start() first")
        progress = self._progress
        try:
            async with asyncio.timeout(timeout):
                async with progress:
                    await progress.wait_for(lambda: self._stopping or self._caught_up())
        except TimeoutError:
            lagging = {f"{t} ({g})": n for (t, g), n in self.lag().items() if n}
            raise TimeoutError(f"bus not drained after {timeout}s; unhandled messages: {lagging}") from None
        if not self._caught_up():
            raise FailedPrecondition("the bus was stopped while draining")


class InProcessBusAdmin:
    """:class:`~isthmus_core.bus.admin.BusAdmin` of an :class:`InProcessBus`: what it holds in memory (dead
    letters are kept like any history, see the module docstring)."""

    kind = "inprocess"

    def __init__(self, bus: InProcessBus) -> None:
        self.bus = bus

    async def ensure_topics(self, specs: Sequence[AnyTopic]) -> None:
        await self.bus.ensure_topics(specs)

    async def consumer_positions(self, subscriptions: Sequence[tuple[str, str]]) -> list[ConsumerPosition]:
        wanted = set(subscriptions)
        return [
            ConsumerPosition(topic, group, p, committed, end)
            for topic, group, p, committed, end in self.bus.group_positions()
            if (topic, group) in wanted
        ]

    async def scan(self, topic: str) -> AsyncIterator[Message]:
        for message in self.bus.messages(topic):
            yield message

    async def fetch(self, topic: str, partition: int, offset: int) -> Message | None:
        return self.bus.message_at(topic, partition, offset)

    async def append(self, topic: str, key: str, value: bytes, headers: dict[str, str]) -> Position:
        partition, offset = await self.bus.append(topic, key, value, headers)
        return Position(topic, partition, offset)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("bus.worker_crashed", task=task.get_name(), exc_info=task.exception())
