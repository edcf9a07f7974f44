"""The :class:`~isthmus_core.bus.admin.BusAdmin` of a :class:`~isthmus_core.bus.kafka.KafkaBus`.

Each call opens its own short-lived clients (a consumer without a group, which commits nothing, and for
consumer positions an admin client), with the bus's bootstrap servers and security; appends go through
the bus's producer (the bus must be started)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from isthmus_core.bus.admin import ConsumerPosition, Position
from isthmus_core.bus.kafka import KafkaBus, record_to_message, unreachable
from isthmus_core.bus.kafka_tools import partitions_of, started_consumer
from isthmus_core.bus.port import Message
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.errors import NotFound

_FETCH_TIMEOUT_MS = 1000
#: fetches (of up to _FETCH_TIMEOUT_MS each) before a message that should be there counts as missing
_FETCH_ROUNDS = 30


class KafkaBusAdmin:
    """:class:`~isthmus_core.bus.admin.BusAdmin` on Kafka (see the module docstring)."""

    kind = "kafka"

    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus

    async def ensure_topics(self, specs: Sequence[AnyTopic]) -> None:
        await self.bus.ensure_topics(specs)

    async def consumer_positions(self, subscriptions: Sequence[tuple[str, str]]) -> list[ConsumerPosition]:
        if not subscriptions:
            return []
        bus = self.bus
        committed: dict[str, dict[TopicPartition, int]] = {}
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bus.bootstrap_servers, client_id=f"{bus.client_id}-ops", **bus.client_options
        )
        try:
            await admin.start()
            for group in sorted({g for _, g in subscriptions}):
                offsets = await admin.list_consumer_group_offsets(group)
                committed[group] = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        except KafkaError as exc:
            raise await unreachable(
                "cannot read consumer group offsets",
                bus.bootstrap_servers,
                bus.security,
                bus.client_options,
                exc,
            ) from exc
        finally:
            await admin.close()
        consumer = await started_consumer(bus.bootstrap_servers, "consumer groups", bus.security)
        out: list[ConsumerPosition] = []
        try:
            for topic in sorted({t for t, _ in subscriptions}):
                try:
                    tps = await partitions_of(consumer, bus.bootstrap_servers, topic)
                except NotFound:
                    continue
                begin = await consumer.beginning_offsets(tps)
                end = await consumer.end_offsets(tps)
                for group in sorted({g for t, g in subscriptions if t == topic}):
                    for tp in tps:
                        at = committed[group].get(tp)
                        out.append(
                            ConsumerPosition(
                                topic,
                                group,
                                tp.partition,
                                at if at is not None else begin[tp],
                                end[tp],
                                committed=at is not None,
                            )
                        )
        finally:
            await consumer.stop()
        return out

    async def scan(self, topic: str) -> AsyncIterator[Message]:
        bus = self.bus
        consumer = await started_consumer(bus.bootstrap_servers, topic, bus.security)
        try:
            try:
                tps = await partitions_of(consumer, bus.bootstrap_servers, topic)
            except NotFound:
                return
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            remaining = {tp for tp in tps if end[tp] > await consumer.position(tp)}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=_FETCH_TIMEOUT_MS)
                for tp, records in batches.items():
                    for r in records:
                        if r.offset < end[tp]:
                            yield record_to_message(r)
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()

    async def fetch(self, topic: str, partition: int, offset: int) -> Message | None:
        bus = self.bus
        consumer = await started_consumer(bus.bootstrap_servers, topic, bus.security)
        try:
            try:
                tps = await partitions_of(consumer, bus.bootstrap_servers, topic)
            except NotFound:
                return None
            tp = TopicPartition(topic, partition)
            if tp not in tps:
                return None
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if not begin <= offset < end:
                return None
            consumer.assign([tp])
            consumer.seek(tp, offset)
            for _ in range(_FETCH_ROUNDS):
                if await consumer.position(tp) > offset:
                    break
                batches = await consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS, max_records=1)
                for r in batches.get(tp, []):
                    if r.offset == offset:
                        return record_to_message(r)
                    if r.offset > offset:  # a control record or a compacted gap held the offset
                        return None
            return None
        finally:
            await consumer.stop()

    async def append(self, topic: str, key: str, value: bytes, headers: dict[str, str]) -> Position:
        partition, offset = await self.bus.append(topic, key, value, headers)
        return Position(topic, partition, offset)
