"""InProcessBus: the bus conformance suite plus what only the in-process adapter offers (drain, restart
after a cancelled handler, stable partitioning)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import structlog.testing
from prometheus_client import REGISTRY

from isthmus_core.bus.inprocess import InProcessBus, partition_for
from isthmus_core.bus.port import EventBus, Message, RetryPolicy, Subscription
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.topics import TopicSpec
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.runtime.runtime import make_bus
from isthmus_core.settings import CommonSettings
from isthmus_core.testing.bus_conformance import BusConformance, Collector

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.01)


class TestInProcessBusConformance(BusConformance):
    max_backlog = 8  # small: every conformance test also runs with publishers held back

    @pytest.fixture
    async def bus(self) -> AsyncIterator[EventBus]:
        bus = InProcessBus(partitions=self.partitions, max_backlog_messages=self.max_backlog)
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


# -- retention: handled records are dropped, offsets stay stable -------------------------------------


def _offsets(bus: InProcessBus, topic: str) -> list[int]:
    return [m.offset for m in bus.messages(topic)]


async def test_records_every_group_handled_are_dropped_beyond_the_retention() -> None:
    bus = InProcessBus(partitions=1, retained_messages=3)
    first, second = Collector(), Collector()
    bus.subscribe(Subscription("t", "first", first))
    bus.subscribe(Subscription("t", "second", second))
    await bus.start()
    try:
        for i in range(10):
            await bus.publish("t", "k", f"m{i}".encode())
        await bus.drain(timeout=5)
        assert _offsets(bus, "t") == [7, 8, 9], "the newest 3 handled records are kept"
        assert bus.log_start("t", 0) == 7
        await bus.publish("t", "k", b"m10")
        await bus.drain(timeout=5)
        assert _offsets(bus, "t") == [8, 9, 10], "offsets go on from where they were"
        assert [m.offset for m in first.messages] == list(range(11))
    finally:
        await bus.stop()


async def test_a_record_a_group_has_not_handled_is_kept_whatever_the_retention() -> None:
    bus = InProcessBus(partitions=1, retained_messages=0)
    release = asyncio.Event()

    async def stuck(message: Message) -> None:
        await release.wait()

    fast_done = asyncio.Event()

    async def fast(message: Message) -> None:
        if message.offset == 3:
            fast_done.set()

    bus.subscribe(Subscription("t", "fast", fast))
    bus.subscribe(Subscription("t", "stuck", stuck))
    await bus.start()
    try:
        for i in range(4):
            await bus.publish("t", "k", f"m{i}".encode())
        await asyncio.wait_for(fast_done.wait(), 5)
        assert _offsets(bus, "t") == [0, 1, 2, 3], "the stuck group has not handled them"
        release.set()
        await bus.drain(timeout=5)
        assert _offsets(bus, "t") == [], "handled by every group and nothing retained"
        assert bus.log_start("t", 0) == 4
    finally:
        await bus.stop()


async def test_retained_bytes_bound_the_history() -> None:
    bus = InProcessBus(partitions=1, retained_messages=100, retained_bytes=250)
    got = Collector()
    bus.subscribe(Subscription("t", "g", got))
    await bus.start()
    try:
        for i in range(10):
            await bus.publish("t", "k", bytes([i]) * 99)  # 99 value bytes + 1 key byte each
        await bus.drain(timeout=5)
        assert _offsets(bus, "t") == [8, 9], "at most 250 bytes of handled records are kept"
    finally:
        await bus.stop()


async def test_a_topic_nobody_subscribes_keeps_its_newest_records_and_never_blocks() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=2, publish_timeout_s=0, retained_messages=5)
    await bus.start()
    try:
        for i in range(50):  # far past the backlog bound: there is no group to wait for
            await bus.publish("events.dlq", "k", f"m{i}".encode())
        assert [m.value for m in bus.messages("events.dlq")] == [f"m{i}".encode() for i in range(45, 50)]
        assert _offsets(bus, "events.dlq") == list(range(45, 50))
    finally:
        await bus.stop()


async def test_a_group_that_joins_later_starts_at_the_log_start() -> None:
    bus = InProcessBus(partitions=1, retained_messages=2)
    old = Collector()
    bus.subscribe(Subscription("t", "old", old))
    await bus.start()
    for i in range(6):
        await bus.publish("t", "k", f"m{i}".encode())
    await bus.drain(timeout=5)
    await bus.stop()

    new = Collector()
    bus.subscribe(Subscription("t", "new", new))
    await bus.start()
    try:
        await bus.publish("t", "k", b"m6")
        await bus.drain(timeout=5)
        assert [(m.offset, m.value) for m in new.messages] == [(4, b"m4"), (5, b"m5"), (6, b"m6")]
        assert old.values()[-1] == b"m6" and len(old.messages) == 7
    finally:
        await bus.stop()


# -- back-pressure: a full backlog holds publishers back, then refuses them -----------------------------


async def _stuck_consumer(bus: InProcessBus, topic: str, group: str = "slow") -> asyncio.Event:
    """Subscribe a group that blocks on its first message until the returned event is set."""
    release = asyncio.Event()
    got = Collector()

    async def handler(message: Message) -> None:
        await release.wait()
        await got(message)

    bus.subscribe(Subscription(topic, group, handler))
    return release


async def test_a_full_backlog_refuses_the_publish_naming_topic_partition_backlog_and_group() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=3, publish_timeout_s=0)
    release = await _stuck_consumer(bus, "orders", "billing")
    bus.subscribe(Subscription("orders", "audit", Collector()))
    await bus.start()
    try:
        for i in range(3):
            await bus.publish("orders", "k", f"m{i}".encode())
        with pytest.raises(Unavailable) as refused:
            await bus.publish("orders", "k", b"one too many")
        text = str(refused.value)
        for part in ("'orders'", "partition 0", "3 messages", "'billing'"):
            assert part in text, text
        assert len(bus.messages("orders")) == 3, "the refused message was not appended"
        release.set()
        await bus.drain(timeout=5)
        await bus.publish("orders", "k", b"later")  # room again once the group caught up
        await bus.drain(timeout=5)
        assert bus.lag() == {("orders", "billing"): 0, ("orders", "audit"): 0}
    finally:
        await bus.stop()


async def test_a_publish_that_waited_too_long_is_refused() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=1, publish_timeout_s=0.01)
    release = await _stuck_consumer(bus, "t")
    await bus.start()
    try:
        await bus.publish("t", "k", b"first")
        with pytest.raises(Unavailable, match=r"after waiting 0\.01s"):
            await bus.publish("t", "k", b"second")
    finally:
        release.set()
        await bus.stop()


async def test_the_byte_bound_holds_publishers_back_but_an_empty_backlog_takes_any_message() -> None:
    bus = InProcessBus(partitions=1, max_backlog_bytes=100, publish_timeout_s=0)
    release = await _stuck_consumer(bus, "t")
    await bus.start()
    try:
        await bus.publish("t", "k", b"x" * 1000)  # larger than the bound, but the backlog is empty
        with pytest.raises(Unavailable, match=r"1001 bytes"):
            await bus.publish("t", "k", b"y")
        release.set()
        await bus.drain(timeout=5)
        await bus.publish("t", "k", b"x" * 60)
        with pytest.raises(Unavailable, match="100 bytes"):
            await bus.publish("t", "k", b"x" * 60)  # 61 + 61 bytes would pass the bound
    finally:
        release.set()
        await bus.stop()


async def test_stop_refuses_publishers_waiting_for_room() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=1, publish_timeout_s=60, stop_timeout_s=5)
    release = await _stuck_consumer(bus, "t")
    await bus.start()
    await bus.publish("t", "k", b"first")
    waiting = asyncio.create_task(bus.publish("t", "k", b"second"))
    await asyncio.sleep(0)  # one scheduling step: the publisher runs until it waits for room
    stopping = asyncio.create_task(bus.stop())
    with pytest.raises(Unavailable, match="stopping"):
        await waiting
    release.set()
    await stopping
    assert [m.value for m in bus.messages("t")] == [b"first"]


async def test_a_full_partition_of_a_stopped_bus_refuses_at_once() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=1, publish_timeout_s=60)
    bus.subscribe(Subscription("t", "g", Collector()))
    await bus.publish("t", "k", b"first")  # before start: kept for the group
    with pytest.raises(Unavailable, match="not running"):
        await bus.publish("t", "k", b"second")  # nothing would make room


async def test_the_lag_gauge_rises_while_a_consumer_is_stuck() -> None:
    bus = InProcessBus(partitions=1)
    topic = f"gauge-{uuid.uuid4().hex[:8]}"
    release = await _stuck_consumer(bus, topic, "stuck")
    await bus.start()
    try:
        for i in range(5):
            await bus.publish(topic, "k", f"m{i}".encode())
        labels = {"topic": topic, "group": "stuck", "partition": "0"}
        assert REGISTRY.get_sample_value("isthmus_bus_consumer_lag", labels) == 5
        assert (
            REGISTRY.get_sample_value("isthmus_bus_backlog_bytes", {"topic": topic, "partition": "0"}) == 15
        )
        release.set()
        await bus.drain(timeout=5)
        assert REGISTRY.get_sample_value("isthmus_bus_consumer_lag", labels) == 0
    finally:
        release.set()
        await bus.stop()


def test_bad_bounds_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="backlog bounds"):
        InProcessBus(max_backlog_messages=0)
    with pytest.raises(ConfigurationError, match="publish_timeout_s"):
        InProcessBus(publish_timeout_s=-1)
    with pytest.raises(ConfigurationError, match="retention"):
        InProcessBus(retained_bytes=-1)


async def test_the_settings_bound_the_in_process_bus() -> None:
    common = CommonSettings(
        bus="inprocess",
        inprocess_max_backlog_messages=2,
        inprocess_publish_timeout_s=0,
        inprocess_retained_messages=1,
    )
    bus = make_bus(common, all_in_one=True)
    assert isinstance(bus, InProcessBus)
    release = await _stuck_consumer(bus, "t")
    await bus.start()
    try:
        await bus.publish("t", "k", b"m0")
        await bus.publish("t", "k", b"m1")
        with pytest.raises(Unavailable, match="bounds: 2 messages"):
            await bus.publish("t", "k", b"m2")
        release.set()
        await bus.drain(timeout=5)
        assert [m.value for m in bus.messages("t")] == [b"m1"], "one handled message retained"
    finally:
        release.set()
        await bus.stop()


async def _forwarding(bus: InProcessBus) -> tuple[asyncio.Event, list[int]]:
    """Started ``bus`` with a stuck consumer of "downstream" and a handler forwarding "upstream" to it;
    the stuck consumer's release and the handler's attempt numbers."""
    release = await _stuck_consumer(bus, "downstream")
    attempts: list[int] = []

    async def forward(message: Message) -> None:
        attempts.append(message.attempt)
        await bus.publish("downstream", message.key, message.value)

    bus.subscribe(Subscription("upstream", "forwarder", forward, FAST))
    await bus.start()
    return release, attempts


async def test_a_handler_publishing_into_a_full_partition_waits_and_does_not_redo_its_work() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=1, publish_timeout_s=0.01)
    release, attempts = await _forwarding(bus)
    try:
        with structlog.testing.capture_logs() as logs:
            await bus.publish("upstream", "k", b"m0")  # fills downstream (its consumer is stuck)
            await bus.publish("upstream", "k", b"m1")  # its handler waits for room downstream
            deadline = asyncio.get_running_loop().time() + 5
            while not any(entry["event"] == "bus.publish_held_back" for entry in logs):
                assert asyncio.get_running_loop().time() < deadline, f"not held back: {attempts}"
                await asyncio.sleep(0.01)
        held = next(entry for entry in logs if entry["event"] == "bus.publish_held_back")
        assert "'downstream' partition 0" in held["reason"] and "'slow'" in held["reason"]
        release.set()
        await bus.drain(timeout=5)
        assert attempts == [1, 1], "each message handled once: no Unavailable, no retry"
        assert [m.value for m in bus.messages("downstream")] == [b"m0", b"m1"]
    finally:
        release.set()
        await bus.stop()


async def test_stop_lets_a_held_back_handler_publish_and_finish() -> None:
    bus = InProcessBus(partitions=1, max_backlog_messages=1, publish_timeout_s=60, stop_timeout_s=30)
    release, attempts = await _forwarding(bus)
    await bus.publish("upstream", "k", b"m0")
    await bus.publish("upstream", "k", b"m1")  # its handler will wait: downstream is full
    with structlog.testing.capture_logs() as logs:
        stopping = asyncio.create_task(bus.stop())
        deadline = asyncio.get_running_loop().time() + 10
        while len(bus.messages("downstream")) < 2:  # the held-back handler publishes once stop begins
            assert asyncio.get_running_loop().time() < deadline, bus.messages("downstream")
            await asyncio.sleep(0.01)
        release.set()  # the stuck downstream consumer finishes too
        await stopping
    assert attempts == [1, 1], "the held-back handler finished: not refused, not retried"
    assert not [e for e in logs if e["event"] == "bus.stop_cancelled_handler"]
    assert bus.lag() == {("upstream", "forwarder"): 0, ("downstream", "slow"): 1}
