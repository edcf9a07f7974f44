"""An in-process event bus with Kafka's semantics, for ``--target all`` and for fast tests.

Each topic is a set of append-only partition logs (partition = CRC-32 of the key, stable across
processes). Each consumer group keeps a committed offset per partition; the members of a group (the
subscriptions with the same topic and group) share the partitions, and each assigned partition has one
asyncio worker that delivers its messages in order through :func:`isthmus_core.bus.delivery.deliver`
(retries, backoff, dead-letter) and advances the offset only once the handler returned. Logs and
committed offsets live as long as the bus object: a bus can be stopped, given new subscriptions, and
started again; a new group starts from the beginning of the log ("earliest").
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from isthmus_core.bus.delivery import deliver, validate_policy
from isthmus_core.bus.port import Message, Subscription
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument
from isthmus_core.telemetry.metrics import BUS_CONSUMER_LAG

_log = structlog.get_logger(__name__)


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key``: the same in every process (unlike ``hash()``, which is salted)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


@dataclass(frozen=True, slots=True)
class _Record:
    key: str
    value: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class _Topic:
    logs: list[list[_Record]]
    #: wakes this topic's workers when a message is appended or the bus stops (made by ``start``)
    arrived: asyncio.Condition | None = None


@dataclass(slots=True)
class _Group:
    #: committed offset per partition (the next offset to deliver)
    offsets: list[int]
    members: list[Subscription] = field(default_factory=list)


class InProcessBus:
    """:class:`~isthmus_core.bus.port.EventBus` in one process (see the module docstring)."""

    def __init__(self, *, partitions: int = 4, stop_timeout_s: float = 10.0) -> None:
        if partitions < 1:
            raise ConfigurationError(f"InProcessBus needs at least 1 partition per topic, got {partitions}")
        if stop_timeout_s < 0:
            raise ConfigurationError(f"stop_timeout_s must be >= 0, got {stop_timeout_s}")
        self._partitions = partitions
        self._stop_timeout_s = stop_timeout_s
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
            topic = self._topics[name] = _Topic(logs=[[] for _ in range(n)])
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
        """Every message on ``topic`` so far, partition by partition (for inspection: DLQs, tests)."""
        found = self._topics.get(topic)
        if found is None:
            return []
        return [
            Message(topic, r.key, r.value, dict(r.headers), partition=p, offset=o)
            for p, log in enumerate(found.logs)
            for o, r in enumerate(log)
        ]

    def partitions_of(self, topic: str) -> int:
        """How many partitions ``topic`` has (creating it with the default count if it is new)."""
        return len(self._topic(topic).logs)

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
            group = self._groups[(subscription.topic, subscription.group)] = _Group([0] * len(topic.logs))
        group.members.append(subscription)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._stopping = False
        self._progress = asyncio.Condition()
        for topic in self._topics.values():
            topic.arrived = asyncio.Condition()
        for (topic_name, _), group in self._groups.items():
            logs = self._topics[topic_name].logs
            for partition in range(len(logs)):
                member = group.members[partition % len(group.members)]
                task = asyncio.create_task(
                    self._work(member, group, partition),
                    name=f"bus:{topic_name}[{partition}]:{member.group}",
                )
                task.add_done_callback(_log_crash)
                self._workers.append(task)

    async def stop(self) -> None:
        """Stop consuming: idle workers end at once, in-flight handlers get ``stop_timeout_s`` to finish
        (their offsets are committed), the rest are cancelled (and redelivered after a restart)."""
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
            topic.arrived = None

    async def _notify_all(self) -> None:
        for topic in self._topics.values():
            if topic.arrived is not None:
                async with topic.arrived:
                    topic.arrived.notify_all()
        if self._progress is not None:
            async with self._progress:
                self._progress.notify_all()

    # -- publishing ---------------------------------------------------------------------------------

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        if not isinstance(value, bytes | bytearray):
            raise InvalidArgument(f"bus message values are bytes, got {type(value).__name__} for {topic!r}")
        t = self._topic(topic)
        t.logs[partition_for(key, len(t.logs))].append(_Record(key, bytes(value), dict(headers or {})))
        if t.arrived is not None:
            async with t.arrived:
                t.arrived.notify_all()

    # -- consuming ----------------------------------------------------------------------------------

    async def _work(self, sub: Subscription, group: _Group, partition: int) -> None:
        topic = self._topics[sub.topic]
        log = topic.logs[partition]
        arrived = topic.arrived
        assert arrived is not None  # made by start() before the workers
        while True:
            async with arrived:
                await arrived.wait_for(lambda: self._stopping or group.offsets[partition] < len(log))
            if self._stopping:
                return
            offset = group.offsets[partition]
            record = log[offset]
            message = Message(sub.topic, record.key, record.value, dict(record.headers), partition, offset)
            await deliver(sub.handler, message, sub.retry, group=sub.group, dead_letter=self.publish)
            group.offsets[partition] = offset + 1
            BUS_CONSUMER_LAG.labels(sub.topic, sub.group, str(partition)).set(len(log) - offset - 1)
            if self._progress is not None:
                async with self._progress:
                    self._progress.notify_all()

    def lag(self) -> dict[tuple[str, str], int]:
        """Messages published but not yet handled, per subscribed (topic, group)."""
        return {
            (topic, name): sum(
                len(log) - offset for log, offset in zip(self._topics[topic].logs, group.offsets, strict=True)
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


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("bus.worker_crashed", task=task.get_name(), exc_info=task.exception())
