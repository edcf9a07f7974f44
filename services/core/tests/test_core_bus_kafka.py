"""KafkaBus: the pieces that need no broker, plus the conformance suite against a real Apache Kafka
broker (the session fixture ``kafka_bootstrap`` in the root conftest starts one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import ConsumerRecord

from isthmus_core.bus.delivery import MAX_MESSAGE_BYTES
from isthmus_core.bus.kafka import (
    KafkaBus,
    from_kafka_headers,
    new_topics,
    record_to_message,
    to_kafka_headers,
)
from isthmus_core.bus.port import EventBus, RetryPolicy, Subscription
from isthmus_core.contracts import topics
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument
from isthmus_core.runtime.runtime import make_bus
from isthmus_core.settings import CommonSettings
from isthmus_core.testing.bus_conformance import BusConformance, Collector


def test_headers_convert_both_ways() -> None:
    headers = {"traceparent": "00-abc-def-01", "x-unicode": "café", "x-empty": ""}
    kafka = to_kafka_headers(headers)
    assert all(isinstance(v, bytes) for _, v in kafka)
    assert from_kafka_headers(kafka) == headers


def test_foreign_headers_are_decoded_leniently() -> None:
    assert from_kafka_headers([("bin", b"\xff"), ("null", None), ("dup", b"1"), ("dup", b"2")]) == {
        "bin": "\ufffd",
        "null": "",
        "dup": "2",
    }
    assert from_kafka_headers(None) == {}


def test_records_become_messages() -> None:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic="t",
        partition=3,
        offset=99,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=None,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=-1,
        headers=[("h", b"v")],
    )
    message = record_to_message(record)
    assert (message.topic, message.partition, message.offset) == ("t", 3, 99)
    assert message.timestamp_ms == 0
    assert (message.key, message.value, message.headers, message.attempt) == ("", b"", {"h": "v"}, 1)


def test_topics_get_registry_partitions_and_dlqs_get_the_bus_default() -> None:
    created = new_topics(
        [topics.CHUNKS_CREATED, topics.TENANTS_DELETED],
        dlq_partitions=2,
        replication_factor=3,
        retention_ms=None,
    )
    by_name = {t.name: t for t in created}
    assert set(by_name) == {
        topics.CHUNKS_CREATED.name,
        topics.CHUNKS_CREATED.dlq,
        topics.TENANTS_DELETED.name,
        topics.TENANTS_DELETED.dlq,
    }
    assert by_name[topics.TENANTS_DELETED.name].num_partitions == topics.TENANTS_DELETED.partitions
    assert by_name[topics.CHUNKS_CREATED.name].num_partitions == topics.CHUNKS_CREATED.partitions
    assert by_name[topics.CHUNKS_CREATED.dlq].num_partitions == 2
    assert all(t.replication_factor == 3 for t in created)
    configs = by_name[topics.CHUNKS_CREATED.name].topic_configs
    assert configs["retention.ms"] == str(topics.CHUNKS_CREATED.retention_ms)
    assert int(configs["max.message.bytes"]) > MAX_MESSAGE_BYTES


def test_document_events_are_stamped_by_the_broker_and_other_topics_by_their_producer() -> None:
    created = {
        t.name: t.topic_configs
        for t in new_topics(
            [topics.DOCUMENTS_SUBMITTED, topics.CHUNKS_CREATED],
            dlq_partitions=1,
            replication_factor=1,
            retention_ms=None,
        )
    }
    assert created[topics.DOCUMENTS_SUBMITTED.name]["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in created[topics.CHUNKS_CREATED.name]
    assert "message.timestamp.type" not in created[topics.DOCUMENTS_SUBMITTED.dlq]


def test_retention_override_applies_to_every_topic() -> None:
    created = new_topics([topics.CHUNKS_CREATED], dlq_partitions=1, replication_factor=1, retention_ms=60_000)
    assert [t.topic_configs["retention.ms"] for t in created] == ["60000", "60000"]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="bootstrap servers"):
        KafkaBus(" ")
    with pytest.raises(ConfigurationError, match="replication_factor"):
        KafkaBus("localhost:9092", replication_factor=0)
    with pytest.raises(ConfigurationError, match="retention_ms"):
        KafkaBus("localhost:9092", retention_ms=-5)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        KafkaBus("localhost:9092").subscribe(Subscription("t", "g", Collector(), RetryPolicy(max_attempts=0)))
    with pytest.raises(InvalidArgument, match="consumer group"):
        KafkaBus("localhost:9092").subscribe(Subscription("t", "", Collector()))


FETCH_BOUNDS = ("max_poll_records", "fetch_max_bytes", "max_partition_fetch_bytes")


def test_consumers_fetch_bounded_batches() -> None:
    default = KafkaBus("localhost:9092", client_id="svc").consumer_options("g")
    # aiokafka's own defaults: no max_poll_records, 50 MiB per fetch response
    assert [default[k] for k in FETCH_BOUNDS] == [500, 16 * 1024 * 1024, 1024 * 1024]
    assert (default["group_id"], default["client_id"], default["enable_auto_commit"]) == ("g", "svc-g", False)
    bounded = KafkaBus(
        "localhost:9092", max_poll_records=7, fetch_max_bytes=4096, max_partition_fetch_bytes=1024
    ).consumer_options("g")
    assert [bounded[k] for k in FETCH_BOUNDS] == [7, 4096, 1024]
    with pytest.raises(ConfigurationError, match="fetch bounds"):
        KafkaBus("localhost:9092", max_partition_fetch_bytes=0)


def test_the_settings_bound_the_kafka_consumers() -> None:
    common = CommonSettings(
        bus="kafka",
        kafka_max_poll_records=9,
        kafka_fetch_max_bytes=2048,
        kafka_max_partition_fetch_bytes=512,
    )
    kafka = make_bus(common, all_in_one=False)
    assert isinstance(kafka, KafkaBus)
    assert [kafka.consumer_options("g")[k] for k in FETCH_BOUNDS] == [9, 2048, 512]


async def test_publish_before_start_is_refused_without_touching_the_network() -> None:
    bus = KafkaBus("127.0.0.1:1")
    assert isinstance(bus, EventBus)
    with pytest.raises(FailedPrecondition, match=r"before KafkaBus\.start"):
        await bus.publish("t", "k", b"v")
    await bus.ensure_topics([])  # nothing to create: no connection attempted
    await bus.stop()  # stopping a bus that never started is a no-op


@pytest.mark.kafka
class TestKafkaBusConformance(BusConformance):
    timeout_s = 60.0
    quiet_s = 1.0

    @pytest.fixture
    async def bus(self, kafka_bootstrap: str) -> AsyncIterator[EventBus]:
        bus = KafkaBus(kafka_bootstrap, client_id="isthmus-conformance", partitions=2)
        yield bus
        await bus.stop()


@pytest.mark.kafka
async def test_a_producer_cannot_backdate_a_document_event(kafka_bootstrap: str) -> None:
    """On the real broker: the topic is created with LogAppendTime, so a record sent with a timestamp
    from last year arrives stamped with the broker's time (what the producer check verifies tokens at)."""
    import time

    from aiokafka import AIOKafkaProducer

    bus = KafkaBus(kafka_bootstrap, client_id="isthmus-backdate", partitions=1)
    got = Collector()
    spec = topics.DOCUMENTS_SUBMITTED
    bus.subscribe(Subscription(spec.name, f"backdate-{time.time_ns()}", got))
    try:
        await bus.ensure_topics([spec])
        await bus.start()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        year_ago_ms = int((time.time() - 365 * 86400) * 1000)
        before = int(time.time() * 1000)
        try:
            await producer.send_and_wait(spec.name, b"{}", key=b"k", timestamp_ms=year_ago_ms)
        finally:
            await producer.stop()
        stamped: list[int | None] = []
        for _ in range(600):  # the topic may hold other tests' records before this one
            stamped = [m.timestamp_ms for m in got.messages if m.value == b"{}"]
            if stamped:
                break
            await asyncio.sleep(0.1)
        assert stamped and all(t is not None and t >= before - 5_000 for t in stamped), stamped
    finally:
        await bus.stop()
