"""InProcessBus: the bus conformance suite plus what only the in-process adapter offers (drain, restart
after a cancelled handler, stable partitioning)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from isthmus_core.bus.inprocess import InProcessBus, partition_for
from isthmus_core.bus.port import EventBus, Message, RetryPolicy, Subscription
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.topics import TopicSpec
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument
from isthmus_core.testing.bus_conformance import BusConformance, Collector

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)


class TestInProcessBusConformance(BusConformance):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[EventBus]:
        bus = InProcessBus(partitions=self.partitions)
        yield bus
        await bus.stop()


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=3, stop_timeout_s=2.0)
    yield bus
    await bus.stop()


def test_in_process_bus_is_an_event_bus() -> None:
    assert isinstance(InProcessBus(), EventBus)


def test_partitioning_is_stable_across_processes() -> None:
    keys = [f"tenant-{i}/doc-{i}" for i in range(50)]
    script = (
        "import sys, json; from isthmus_core.bus.inprocess import partition_for; "
        f"print(json.dumps([partition_for(k, 7) for k in {keys!r}]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    here = str([partition_for(k, 7) for k in keys]).replace("'", '"')
    assert outputs == {here + "\n"}
    assert len({partition_for(k, 7) for k in keys}) > 1, "keys spread over partitions"


async def test_drain_waits_for_messages_published_by_handlers(bus: InProcessBus) -> None:
    downstream: list[bytes] = []

    async def forward(message: Message) -> None:
        await asyncio.sleep(0.01)
        await bus.publish("second", message.key, message.value + b"!")

    async def record(message: Message) -> None:
        downstream.append(message.value)

    bus.subscribe(Subscription("first", "g", forward))
    bus.subscribe(Subscription("second", "g", record))
    await bus.start()
    for i in range(10):
        await bus.publish("first", f"k{i}", f"m{i}".encode())
    await bus.drain(timeout=5)
    assert sorted(downstream) == sorted(f"m{i}!".encode() for i in range(10))
    assert bus.lag() == {("first", "g"): 0, ("second", "g"): 0}


async def test_drain_times_out_naming_the_lagging_topic(bus: InProcessBus) -> None:
    release = asyncio.Event()

    async def blocked(message: Message) -> None:
        await release.wait()

    bus.subscribe(Subscription("stuck", "g", blocked))
    await bus.start()
    await bus.publish("stuck", "k", b"x")
    with pytest.raises(TimeoutError, match=r"stuck \(g\)"):
        await bus.drain(timeout=0.1)
    release.set()
    await bus.drain(timeout=2)
    assert bus.lag() == {("stuck", "g"): 0}


async def test_drain_on_a_stopped_bus_with_backlog_is_refused(bus: InProcessBus) -> None:
    bus.subscribe(Subscription("t", "g", Collector()))
    await bus.drain()  # nothing published: nothing to wait for
    await bus.publish("t", "k", b"x")
    with pytest.raises(FailedPrecondition, match="start"):
        await bus.drain()


async def test_messages_published_before_start_are_delivered(bus: InProcessBus) -> None:
    got = Collector()
    await bus.publish("early", "k", b"before-start")
    bus.subscribe(Subscription("early", "late-group", got))
    await bus.start()
    await bus.drain(timeout=2)
    assert got.values() == [b"before-start"]


async def test_a_handler_cancelled_at_stop_is_delivered_again_after_restart() -> None:
    bus = InProcessBus(partitions=2, stop_timeout_s=0.05)
    calls: list[tuple[bytes, int]] = []
    called = asyncio.Event()
    hang = True

    async def handler(message: Message) -> None:
        calls.append((message.value, message.offset))
        called.set()
        if hang:
            await asyncio.Event().wait()

    bus.subscribe(Subscription("t", "g", handler))
    await bus.start()
    await bus.publish("t", "k", b"x")
    await asyncio.wait_for(called.wait(), 2)
    await asyncio.wait_for(bus.stop(), 2)  # does not wait for the hung handler beyond its bound
    assert bus.lag() == {("t", "g"): 1}, "the cancelled message is not committed"
    hang = False
    await bus.start()
    await bus.drain(timeout=2)
    await bus.stop()
    assert calls == [(b"x", 0), (b"x", 0)]


async def test_subscribe_after_start_is_refused(bus: InProcessBus) -> None:
    await bus.start()
    with pytest.raises(FailedPrecondition, match="before start"):
        bus.subscribe(Subscription("t", "g", Collector()))


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="at least 1 partition"):
        InProcessBus(partitions=0)
    bus = InProcessBus()
    with pytest.raises(ConfigurationError, match="max_attempts"):
        bus.subscribe(Subscription("t", "g", Collector(), RetryPolicy(max_attempts=0)))
    with pytest.raises(InvalidArgument, match="consumer group"):
        bus.subscribe(Subscription("t", "", Collector()))


async def test_publish_rejects_non_bytes(bus: InProcessBus) -> None:
    with pytest.raises(InvalidArgument, match="bytes, got str"):
        await bus.publish("t", "k", "text")  # type: ignore[arg-type]


async def test_ensure_topics_uses_the_declared_partitions(bus: InProcessBus) -> None:
    spec = TopicSpec("declared", TenantDeleted, "tenant_id", partitions=5)
    await bus.ensure_topics([spec])
    await bus.ensure_topics([TopicSpec("declared", TenantDeleted, "tenant_id", partitions=2)])
    assert bus.partitions_of("declared") == 5, "an existing topic is left as it is"
    assert bus.partitions_of(spec.dlq) == 3
    assert bus.partitions_of("undeclared") == 3


async def test_members_beyond_the_partition_count_stay_idle(bus: InProcessBus) -> None:
    members = [Collector() for _ in range(5)]
    for member in members:
        bus.subscribe(Subscription("t", "g", member, FAST))
    await bus.start()
    for i in range(60):
        await bus.publish("t", f"key-{i}", str(i).encode())
    await bus.drain(timeout=2)
    counts = [len(m.messages) for m in members]
    assert sum(counts) == 60
    assert sum(1 for c in counts if c) <= 3
