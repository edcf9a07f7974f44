"""The Kafka event bus, on aiokafka.

* Producer: idempotent, ``acks=all``; :meth:`KafkaBus.publish` returns once the broker acknowledged.
* One :class:`aiokafka.AIOKafkaConsumer` per subscription (``group_id`` = the subscription's group, no
  auto-commit, ``earliest`` for a new group). Each fetched batch is handled partition by partition in
  offset order (partitions concurrently) through :func:`isthmus_core.bus.delivery.deliver`, then the
  offsets of the handled (or dead-lettered) messages are committed. A retrying partition holds back the
  next fetch of its consumer for at most the retry budget of its policy.
* Back-pressure: a consumer holds a bounded amount of work. It takes at most ``max_poll_records``
  records per batch and fetches the next batch only once this one is handled and committed (one handler
  in flight per partition, no task or queue per message); aiokafka prefetches at most one fetch response
  per partition (``max_partition_fetch_bytes`` each, ``fetch_max_bytes`` per response; a single record
  larger than that still comes, alone). A slow handler therefore leaves the backlog on the broker, not
  in memory. The producer awaits every acknowledgement (``send_and_wait``) and aiokafka's accumulator
  holds one batch per partition (a sender waits for it to drain), so publishing is bounded too.
* On a rebalance the consumer waits for the batch in hand and commits it before giving partitions up,
  so a message is handled once unless a handler outlives ``stop_timeout_s`` or a commit fails
  (at-least-once).
* :meth:`KafkaBus.stop` lets in-flight handlers finish (bounded), commits, leaves the groups, then
  flushes and stops the producer. A stopped bus can be given more subscriptions and started again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    TopicAlreadyExistsError,
    for_code,
)

from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES, deliver, validate_policy
from isthmus_core.bus.kafka_security import KafkaSecurity
from isthmus_core.bus.port import Message, Subscription
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.telemetry.metrics import BUS_CONSUMER_LAG

_log = structlog.get_logger(__name__)

#: room for the key, headers and record overhead on top of the largest value
_REQUEST_OVERHEAD_BYTES = 256 * 1024
_FETCH_TIMEOUT_MS = 1000
DEFAULT_MAX_POLL_RECORDS = 500
DEFAULT_FETCH_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_PARTITION_FETCH_BYTES = 1024 * 1024


def to_kafka_headers(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode("utf-8")) for name, value in headers.items()]


def from_kafka_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a dict (the last value of a repeated name wins; binary values are decoded
    leniently, a null value becomes "")."""
    return {name: (value or b"").decode("utf-8", errors="replace") for name, value in headers or ()}


async def unreachable(
    action: str, bootstrap_servers: str, security: KafkaSecurity, options: Mapping[str, Any], exc: Exception
) -> Unavailable:
    """An :class:`Unavailable` for a client that could not bootstrap, saying why: aiokafka only logs the
    cause (refused credentials, an untrusted certificate, a closed connection), so the first bootstrap
    server is dialled once more, alone, for its own error."""
    reason = repr(exc)
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    if host and port.isdigit():  # else the address itself is the problem, and exc says so
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"), int(port), client_id="isthmus-probe", request_timeout_ms=5000, **options
                ),
                10,
            )
        except Exception as probe_error:  # the cause we are after, whatever its type
            name, text = type(probe_error).__name__, str(probe_error)
            reason = text if text.startswith((name, "[Error")) else f"{name}: {text}".rstrip(": ")
        else:
            conn.close()
    return Unavailable(f"{action} on Kafka at {bootstrap_servers} ({security.describe()}): {reason}")


def record_to_message(record: ConsumerRecord[bytes, bytes]) -> Message:
    key = record.key.decode("utf-8", errors="replace") if record.key is not None else ""
    return Message(
        topic=record.topic,
        key=key,
        value=record.value if record.value is not None else b"",
        headers=from_kafka_headers(record.headers),
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None,
    )


def new_topics(
    specs: Sequence[AnyTopic], *, dlq_partitions: int, replication_factor: int, retention_ms: int | None
) -> list[NewTopic]:
    """Each topic with its registry partitions and retention (``retention_ms`` overrides it), and its
    dead-letter twin with ``dlq_partitions``; both accept messages of the bus's maximum size."""
    topics: list[NewTopic] = []
    for spec in specs:
        configs = {
            "retention.ms": str(retention_ms if retention_ms is not None else spec.retention_ms),
            "max.message.bytes": str(MAX_MESSAGE_BYTES + _REQUEST_OVERHEAD_BYTES),
        }
        own = dict(configs)
        if spec.broker_timestamps:  # the broker stamps each record: a producer cannot backdate it
            own["message.timestamp.type"] = "LogAppendTime"
        topics.append(NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=own))
        topics.append(NewTopic(spec.dlq, dlq_partitions, replication_factor, topic_configs=dict(configs)))
    return topics


class KafkaBus:
    """:class:`~isthmus_core.bus.port.EventBus` on Kafka (see the module docstring).

    ``partitions`` is the partition count of the dead-letter topics (a topic itself gets the count its
    :class:`TopicSpec` declares); ``retention_ms``, when set, overrides every topic's retention.
    ``max_poll_records``, ``fetch_max_bytes`` and ``max_partition_fetch_bytes`` bound what each consumer
    holds (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str = "isthmus",
        partitions: int = 6,
        replication_factor: int = 1,
        retention_ms: int | None = None,
        stop_timeout_s: float = 10.0,
        security: KafkaSecurity | None = None,
        max_poll_records: int = DEFAULT_MAX_POLL_RECORDS,
        fetch_max_bytes: int = DEFAULT_FETCH_MAX_BYTES,
        max_partition_fetch_bytes: int = DEFAULT_MAX_PARTITION_FETCH_BYTES,
    ) -> None:
        if not bootstrap_servers.strip():
            raise ConfigurationError("KafkaBus needs bootstrap servers (host:port[,host:port...])")
        if partitions < 1 or replication_factor < 1:
            raise ConfigurationError(
                f"partitions and replication_factor must be >= 1, got {partitions} and {replication_factor}"
            )
        if retention_ms is not None and retention_ms < -1:
            raise ConfigurationError(f"retention_ms must be -1 (forever) or >= 0, got {retention_ms}")
        if min(max_poll_records, fetch_max_bytes, max_partition_fetch_bytes) < 1:
            raise ConfigurationError(
                "Kafka fetch bounds must be >= 1, got "
                f"max_poll_records={max_poll_records} fetch_max_bytes={fetch_max_bytes} "
                f"max_partition_fetch_bytes={max_partition_fetch_bytes}"
            )
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.security = security or KafkaSecurity()
        self.client_options = self.security.client_options()  # bad settings fail here, not at first use
        self._dlq_partitions = partitions
        self._replication_factor = replication_factor
        self._retention_ms = retention_ms
        self._stop_timeout_s = stop_timeout_s
        self.max_poll_records = max_poll_records
        self._fetch_max_bytes = fetch_max_bytes
        self._max_partition_fetch_bytes = max_partition_fetch_bytes
        self._subscriptions: list[Subscription] = []
        self._consumers: list[_SubscriptionConsumer] = []
        self._producer: AIOKafkaProducer | None = None

    def consumer_options(self, group: str) -> dict[str, Any]:
        """The options of a subscription's :class:`aiokafka.AIOKafkaConsumer` (bounded fetches)."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": f"{self.client_id}-{group}",
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": self.max_poll_records,
            "fetch_max_bytes": self._fetch_max_bytes,
            "max_partition_fetch_bytes": self._max_partition_fetch_bytes,
            **self.client_options,
        }

    async def ensure_topics(self, specs: Sequence[AnyTopic]) -> None:
        """Create the topics and their ``.dlq`` twins; existing ones are left as they are.

        Raises :class:`Unavailable` if the cluster cannot be reached or a creation fails transiently,
        :class:`ConfigurationError` if the cluster refuses a topic (e.g. replication factor too high)."""
        topics = new_topics(
            specs,
            dlq_partitions=self._dlq_partitions,
            replication_factor=self._replication_factor,
            retention_ms=self._retention_ms,
        )
        if not topics:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, client_id=self.client_id, **self.client_options
        )
        try:
            await admin.start()
            response = await admin.create_topics(topics)
        except KafkaError as exc:
            raise await unreachable(
                "cannot create topics", self.bootstrap_servers, self.security, self.client_options, exc
            ) from exc
        finally:
            await admin.close()
        for topic_error in response.topic_errors:
            topic, code = topic_error[0], topic_error[1]
            detail = topic_error[2] if len(topic_error) > 2 else ""
            if code == 0 or code == TopicAlreadyExistsError.errno:
                continue
            error = for_code(code)
            reason = f"Kafka refused to create topic {topic!r}: {error.__name__} {detail or ''}".strip()
            raise (Unavailable if error.retriable else ConfigurationError)(reason)
        _log.info("bus.topics_ensured", topics=[t.name for t in topics])

    def subscribe(self, subscription: Subscription) -> None:
        if self._producer is not None:
            raise FailedPrecondition(
                f"subscribe({subscription.topic!r}, group={subscription.group!r}) must be called before "
                "start(); stop the bus first to add subscriptions"
            )
        if not subscription.group:
            raise InvalidArgument(f"subscription to {subscription.topic!r} needs a consumer group")
        validate_policy(subscription.retry)
        self._subscriptions.append(subscription)

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer: AIOKafkaProducer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            max_request_size=MAX_MESSAGE_BYTES + _REQUEST_OVERHEAD_BYTES,
            **self.client_options,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise await unreachable(
                "cannot connect", self.bootstrap_servers, self.security, self.client_options, exc
            ) from exc
        self._producer = producer
        try:
            for sub in self._subscriptions:
                consumer = _SubscriptionConsumer(self, sub)
                await consumer.start()
                self._consumers.append(consumer)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, KafkaError):
                raise Unavailable(
                    f"cannot start Kafka consumers at {self.bootstrap_servers}: {exc!r}"
                ) from exc
            raise

    async def publish(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await self.append(topic, key, value, headers)

    async def append(
        self, topic: str, key: str, value: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, int]:
        """:meth:`publish`, returning where the broker put the message: ``(partition, offset)``."""
        if self._producer is None:
            raise FailedPrecondition(f"publish to {topic!r} before KafkaBus.start()")
        if not isinstance(value, bytes | bytearray):
            raise InvalidArgument(f"bus message values are bytes, got {type(value).__name__} for {topic!r}")
        try:
            metadata = await self._producer.send_and_wait(
                topic, bytes(value), key=key.encode("utf-8"), headers=to_kafka_headers(headers or {})
            )
        except MessageSizeTooLargeError as exc:
            raise InvalidArgument(f"message of {len(value)} bytes is too large for topic {topic!r}") from exc
        except KafkaError as exc:
            raise Unavailable(f"cannot publish to {topic!r} on {self.bootstrap_servers}: {exc!r}") from exc
        return metadata.partition, metadata.offset

    async def wait_ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every subscription's consumer has joined its group and received an assignment
        (possibly empty). Raises :class:`TimeoutError` naming the groups still joining."""
        try:
            async with asyncio.timeout(timeout):
                for consumer in self._consumers:
                    await consumer.assigned.wait()
        except TimeoutError:
            waiting = [f"{c.sub.topic} ({c.sub.group})" for c in self._consumers if not c.assigned.is_set()]
            raise TimeoutError(f"Kafka consumers not assigned after {timeout}s: {waiting}") from None

    async def stop(self) -> None:
        consumers, self._consumers = self._consumers, []
        if consumers:
            await asyncio.gather(*(c.stop(self._stop_timeout_s) for c in consumers), return_exceptions=True)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.flush()
            finally:
                await producer.stop()


class _SubscriptionConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """One subscription: its consumer, its fetch-and-handle loop and its rebalance callbacks."""

    def __init__(self, bus: KafkaBus, sub: Subscription) -> None:
        self.bus = bus
        self.sub = sub
        self.assigned = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()  # set while not handling a batch
        self._idle.set()
        self._stopping = False
        self._pending: dict[TopicPartition, int] = {}  # next offsets to commit

    async def start(self) -> None:
        consumer: AIOKafkaConsumer = AIOKafkaConsumer(**self.bus.consumer_options(self.sub.group))
        consumer.subscribe(topics=[self.sub.topic], listener=self)
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"kafka:{self.sub.topic}:{self.sub.group}")

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping:
            try:
                batches = await consumer.getmany(
                    timeout_ms=_FETCH_TIMEOUT_MS, max_records=self.bus.max_poll_records
                )
            except KafkaError as exc:
                _log.warning("bus.fetch_failed", topic=self.sub.topic, group=self.sub.group, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            if not batches:
                continue
            self._idle.clear()
            try:
                await asyncio.gather(*(self._handle(tp, records) for tp, records in batches.items()))
                await self._commit()
            finally:
                self._idle.set()

    async def _handle(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            if self._stopping:
                return
            await deliver(
                self.sub.handler,
                record_to_message(record),
                self.sub.retry,
                group=self.sub.group,
                dead_letter=self.bus.publish,
            )
            self._pending[tp] = record.offset + 1
        consumer = self._consumer
        highwater = consumer.highwater(tp) if consumer is not None else None
        if highwater is not None and tp in self._pending:
            BUS_CONSUMER_LAG.labels(tp.topic, self.sub.group, str(tp.partition)).set(
                max(0, highwater - self._pending[tp])
            )

    async def _commit(self) -> None:
        if not self._pending or self._consumer is None:
            return
        offsets, self._pending = self._pending, {}
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # the partitions moved on (rebalance): their new owner redelivers from the last commit
            _log.warning("bus.commit_failed", topic=self.sub.topic, group=self.sub.group, error=repr(exc))

    # rebalance callbacks (run by aiokafka's coordinator while our loop may be handling a batch)
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), self.bus._stop_timeout_s)
        except TimeoutError:
            _log.warning("bus.rebalance_with_handler_in_flight", topic=self.sub.topic, group=self.sub.group)
        await self._commit()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        _log.info(
            "bus.partitions_assigned",
            topic=self.sub.topic,
            group=self.sub.group,
            partitions=sorted(tp.partition for tp in assigned),
        )
        self.assigned.set()

    async def stop(self, grace_s: float) -> None:
        self._stopping = True
        task = self._task
        if task is not None:
            if self._idle.is_set():
                task.cancel()  # waiting in getmany: nothing in flight
            else:
                _, pending = await asyncio.wait({task}, timeout=grace_s)
                if pending:
                    _log.warning("bus.stop_cancelled_handler", topic=self.sub.topic, group=self.sub.group)
                    task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer = self._consumer
        if consumer is not None:
            try:
                await self._commit()
            finally:
                await consumer.stop()
