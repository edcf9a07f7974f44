"""The bus admin port (consumer positions, dead letters and their replay): its conformance suite on the
in-process bus and on Kafka, and the pure parts (topic names, tenants, previews)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import structlog.testing
from prometheus_client import REGISTRY

from isthmus_core.bus.admin import BusAdmin, preview, resolve_topic, tenant_of
from isthmus_core.bus.inprocess import InProcessBus, InProcessBusAdmin
from isthmus_core.bus.kafka import KafkaBus
from isthmus_core.bus.port import EventBus, Message
from isthmus_core.bus.typed import H_TENANT
from isthmus_core.contracts.topics import ALL_TOPICS, CHUNKS_CREATED
from isthmus_core.errors import InvalidArgument
from isthmus_core.testing.bus_admin_conformance import BusAdminConformance


class TestInProcessBusAdminConformance(BusAdminConformance):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[EventBus]:
        bus = InProcessBus(partitions=self.partitions)
        yield bus
        await bus.stop()

    def admin_of(self, bus: EventBus) -> BusAdmin:
        assert isinstance(bus, InProcessBus)
        return InProcessBusAdmin(bus)


@pytest.mark.kafka
class TestKafkaBusAdminConformance(BusAdminConformance):
    timeout_s = 60.0

    @pytest.fixture
    async def bus(self, kafka_bootstrap: str) -> AsyncIterator[EventBus]:
        bus = KafkaBus(kafka_bootstrap, client_id="isthmus-admin-conformance", partitions=self.partitions)
        yield bus
        await bus.stop()

    def admin_of(self, bus: EventBus) -> BusAdmin:
        from isthmus_core.bus.kafka_admin import KafkaBusAdmin

        assert isinstance(bus, KafkaBus)
        return KafkaBusAdmin(bus)


def test_topics_resolve_from_the_registry() -> None:
    for name in ("isthmus.chunks.created.v1", "chunks.created.v1", "isthmus.chunks.created.v1.dlq"):
        assert resolve_topic(name) is CHUNKS_CREATED
    with pytest.raises(InvalidArgument) as refused:
        resolve_topic("nope")
    assert "unknown topic 'nope'; known topics:" in refused.value.reason
    assert all(t.name in refused.value.reason for t in ALL_TOPICS)


def _m(key: str, value: bytes, **headers: str) -> Message:
    return Message("t.dlq", key, value, headers)


@pytest.mark.parametrize(
    ("message", "tenant"),
    [
        (_m("acme/doc", b'{"tenant_id": "acme"}'), "acme"),
        (_m("acme", b"\x00"), "acme"),
        (_m("", b'{"tenant_id": "acme"}'), "acme"),
        (_m("", b"{}", **{H_TENANT: "acme"}), "acme"),
        (_m("acme/doc", b'{"tenant_id": "beta"}'), ""),  # they disagree
        (_m("acme/doc", b"{}", **{H_TENANT: "beta"}), ""),
        (_m("acme/doc", b'{"tenant_id": 7}'), ""),  # not a string
        (_m("../x/doc", b"{}"), ""),  # not a tenant id
        (_m("ACME/doc", b"{}"), ""),
        (_m("", b"not json"), ""),
        (_m("", b'{"tenant_id": ""}'), ""),
        (_m("acme/doc", b"{" + b"[" * 100_000), "acme"),  # undecodable: the key alone
    ],
)
def test_the_tenant_of_a_dead_letter_needs_every_clue_to_agree(message: Message, tenant: str) -> None:
    assert tenant_of(message) == tenant


def test_a_preview_never_cuts_a_character() -> None:
    text, cut = preview(("a" + "é" * 10).encode(), limit=4)
    assert (text, cut) == ("aé", True)
    assert preview(b"short") == ("short", False)
    assert preview(b"\xff\xfe")[0] == "\ufffd\ufffd"
    assert json.loads(preview(json.dumps({"x": 1}).encode())[0]) == {"x": 1}


async def test_the_in_process_bus_counts_and_logs_dead_letters_dropped_by_retention() -> None:
    bus = InProcessBus(partitions=1, retained_messages=3)

    def dropped() -> float:
        value = REGISTRY.get_sample_value("isthmus_bus_retention_dropped_total", {"topic": "events.dlq"})
        return value or 0.0

    before = dropped()
    with structlog.testing.capture_logs() as logs:
        for i in range(5):
            await bus.publish("events.dlq", "acme/doc", f"m{i}".encode())
    assert dropped() - before == 2
    gone = [e for e in logs if e["event"] == "bus.dead_letter_dropped_by_retention"]
    assert [e["offset"] for e in gone] == [0, 1] and all(e["topic"] == "events.dlq" for e in gone)
    admin = InProcessBusAdmin(bus)
    assert [m.offset async for m in admin.scan("events.dlq")] == [2, 3, 4]
    assert await admin.fetch("events.dlq", 0, 1) is None
