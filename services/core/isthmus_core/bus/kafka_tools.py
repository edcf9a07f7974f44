"""Operator tools over a Kafka cluster: read a topic from the beginning, re-drive messages.

Used by ``isthmus reindex`` (it talks to Kafka directly, like any Kafka admin tool, because chunk history
lives there) and by :mod:`isthmus_core.bus.kafka_admin` (dead letters: ``isthmus dlq``, OperationsService).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from isthmus_core.bus.kafka import from_kafka_headers, record_to_message, to_kafka_headers, unreachable
from isthmus_core.bus.kafka_security import KafkaSecurity
from isthmus_core.bus.port import Message
from isthmus_core.errors import NotFound


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    key_prefix: str = "",
    group: str | None = None,
    limit: int = 0,
    security: KafkaSecurity | None = None,
) -> tuple[list[Message], Callable[[], Awaitable[None]] | None]:
    """Every message of ``topic`` up to its current end (from the group's committed offsets when a
    group is given, else from the beginning). Returns the messages and, for a group, a ``commit``
    coroutine function that marks them consumed."""
    consumer = await started_consumer(bootstrap, topic, security or KafkaSecurity(), group_id=group)
    out: list[Message] = []
    try:
        tps = await partitions_of(consumer, bootstrap, topic)
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        if group is None:
            await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if end[tp] > await consumer.position(tp)}
        while remaining and not (limit and len(out) >= limit):
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < end[tp] and r.key is not None and r.key.decode().startswith(key_prefix):
                        out.append(record_to_message(r))
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        positions = {tp: min(await consumer.position(tp), end[tp]) for tp in tps}
    except BaseException:
        await consumer.stop()
        raise
    if group is None:
        await consumer.stop()
        return out, None

    async def commit() -> None:
        try:
            await consumer.commit(positions)
        finally:
            await consumer.stop()

    return out, commit


async def started_consumer(
    bootstrap: str, topic: str, security: KafkaSecurity, **config: object
) -> AIOKafkaConsumer:
    """A started consumer (no subscription, no group unless ``config`` gives one); :class:`Unavailable`
    naming ``bootstrap`` if it cannot start."""
    options = security.client_options()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **config,
        **options,
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise await unreachable(f"cannot read {topic!r}", bootstrap, security, options, exc) from exc
    return consumer


async def partitions_of(consumer: AIOKafkaConsumer, bootstrap: str, topic: str) -> list[TopicPartition]:
    """``topic``'s partitions; :class:`NotFound` if the topic does not exist."""
    partitions = consumer.partitions_for_topic(topic)
    if partitions is None:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise NotFound(f"topic {topic!r} does not exist on {bootstrap}")
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def newest_timestamp_ms(
    bootstrap: str, topic: str, security: KafkaSecurity, clock: Callable[[], float] = time.time
) -> tuple[int | None, float]:
    """``(newest, observed_ms)``: the largest timestamp among the last records of ``topic``'s partitions
    as they stood at ``observed_ms`` (``clock()`` when the partition ends were read; ``newest`` None: the
    topic is empty). :class:`~isthmus_core.errors.NotFound` if the topic does not exist, ``Unavailable``
    if Kafka is unreachable. ``isthmus regions status`` reads MirrorMaker 2's heartbeats with it."""
    consumer = await started_consumer(bootstrap, topic, security, request_timeout_ms=5000)
    try:
        tps = await partitions_of(consumer, bootstrap, topic)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        observed_ms = clock() * 1000
        live = [tp for tp in tps if end[tp] > begin[tp]]
        newest: int | None = None
        if not live:
            return None, observed_ms
        # the last record of each partition as of ``end``; anything written since is ignored
        consumer.assign(live)
        for tp in live:
            consumer.seek(tp, end[tp] - 1)
        pending = set(live)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                for r in records:
                    if r.offset == end[tp] - 1:
                        newest = r.timestamp if newest is None else max(newest, r.timestamp)
                        pending.discard(tp)
        return newest, observed_ms
    finally:
        await consumer.stop()


async def republish(
    bootstrap: str,
    messages: Sequence[Message],
    topic_of: Callable[[Message], str],
    *,
    strip: Sequence[str] = (),
    security: KafkaSecurity | None = None,
) -> int:
    """Publish each message's original key, value and headers (less ``strip``) to ``topic_of(m)``."""
    security = security or KafkaSecurity()
    options = security.client_options()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", **options)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise await unreachable("cannot publish", bootstrap, security, options, exc) from exc
    try:
        for m in messages:
            headers = {k: v for k, v in m.headers.items() if k not in strip}
            await producer.send_and_wait(
                topic_of(m), m.value, key=m.key.encode(), headers=to_kafka_headers(headers)
            )
    finally:
        await producer.stop()
    return len(messages)


__all__ = [
    "from_kafka_headers",
    "newest_timestamp_ms",
    "partitions_of",
    "read_topic",
    "republish",
    "started_consumer",
]
