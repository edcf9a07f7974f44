"""Conformance suite for :class:`~isthmus_core.bus.admin.BusAdmin` adapters, with
:class:`~isthmus_core.bus.admin.DeadLetters` (listing and replay) on top of each.

Mix :class:`BusAdminConformance` into a test class and provide an async ``bus`` fixture yielding a bus
that is *not started yet* (tests subscribe first) and stopped at teardown, plus ``admin_of(bus)``::

    class TestInProcessBusAdminConformance(BusAdminConformance):
        @pytest.fixture
        async def bus(self) -> AsyncIterator[EventBus]:
            bus = InProcessBus()
            yield bus
            await bus.stop()

        def admin_of(self, bus: EventBus) -> BusAdmin:
            return InProcessBusAdmin(bus)

Dead letters are made the way the platform makes them: a subscribed handler refuses a message and the
bus dead-letters it. Every test uses fresh topic and group names, so the suite runs on a shared broker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from isthmus_core.bus.admin import (
    DEAD_LETTER_HEADERS,
    PREVIEW_BYTES,
    BusAdmin,
    DeadLetters,
)
from isthmus_core.bus.port import EventBus, Message, RetryPolicy, Subscription
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.topics import AnyTopic, TopicSpec
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)


def letter(tenant: str, n: int, **extra: object) -> bytes:
    return json.dumps({"tenant_id": tenant, "n": n, **extra}).encode()


class BusAdminConformance:
    """The admin port's semantics, as tests. Needs a ``bus`` fixture and :meth:`admin_of`."""

    timeout_s: float = 10.0
    partitions: int = 2

    def admin_of(self, bus: EventBus) -> BusAdmin:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------------

    def spec(self, name: str) -> TopicSpec[TenantDeleted]:
        return TopicSpec(
            f"isthmus.admin-conformance.{name}.{uuid.uuid4().hex[:10]}.v1",
            TenantDeleted,
            "tenant_id",
            partitions=self.partitions,
        )

    @staticmethod
    def group(name: str) -> str:
        return f"admin-conformance-{name}-{uuid.uuid4().hex[:10]}"

    async def start(self, bus: EventBus, *specs: AnyTopic) -> None:
        await bus.ensure_topics(list(specs))
        await bus.start()
        ready: Callable[[float], Awaitable[None]] | None = getattr(bus, "wait_ready", None)
        if ready is not None:
            await ready(self.timeout_s)

    async def scanned(self, admin: BusAdmin, topic: str) -> list[Message]:
        return [m async for m in admin.scan(topic)]

    async def wait_for(self, admin: BusAdmin, topic: str, count: int) -> list[Message]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = await self.scanned(admin, topic)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} messages on {topic}, got {len(found)}")
            await asyncio.sleep(0.1)

    async def dead_lettered(
        self,
        bus: EventBus,
        spec: AnyTopic,
        sent: list[tuple[str, bytes]],
        headers: dict[str, str] | None = None,
    ) -> tuple[BusAdmin, list[Message]]:
        """Subscribe a handler refusing everything but ``ok`` values, start, publish ``sent``, and wait
        until each refused one is on the DLQ."""
        group = self.group("refuse")

        async def refuse(message: Message) -> None:
            if b'"ok"' not in message.value:
                raise InvalidArgument(f"refused message {message.value[:20]!r}")

        bus.subscribe(Subscription(spec.name, group, refuse, FAST))
        await self.start(bus, spec)
        for key, value in sent:
            await bus.publish(spec.name, key, value, headers)
        admin = self.admin_of(bus)
        return admin, await self.wait_for(admin, spec.dlq, sum(1 for _, v in sent if b'"ok"' not in v))

    # -- consumer positions -------------------------------------------------------------------------

    async def test_consumer_positions_per_partition_reach_the_end(self, bus: EventBus) -> None:
        spec = self.spec("positions")
        group = self.group("positions")
        handled: list[Message] = []

        async def handle(message: Message) -> None:
            handled.append(message)

        bus.subscribe(Subscription(spec.name, group, handle, FAST))
        await self.start(bus, spec)
        for i in range(10):
            await bus.publish(spec.name, f"t{i % 4}/d{i}", b"{}")
        admin = self.admin_of(bus)
        deadline = time.monotonic() + self.timeout_s
        while True:
            positions = await admin.consumer_positions([(spec.name, group)])
            if len(handled) >= 10 and positions and sum(p.lag for p in positions) == 0:
                break
            assert time.monotonic() < deadline, f"lag never reached 0: {positions}"
            await asyncio.sleep(0.2)
        assert sorted(p.partition for p in positions) == list(range(self.partitions))
        assert {(p.topic, p.group) for p in positions} == {(spec.name, group)}
        assert sum(p.end for p in positions) == 10
        assert all(p.position == p.end for p in positions if p.committed)
        assert await admin.consumer_positions([]) == []
        assert await admin.consumer_positions([(self.spec("absent").name, group)]) == []

    async def test_a_stuck_group_shows_its_lag(self, bus: EventBus) -> None:
        spec = self.spec("lag")
        group = self.group("lag")
        release = asyncio.Event()

        async def stuck(message: Message) -> None:
            await release.wait()

        bus.subscribe(Subscription(spec.name, group, stuck, FAST))
        await self.start(bus, spec)
        for i in range(3):
            await bus.publish(spec.name, "one-key", str(i).encode())
        admin = self.admin_of(bus)
        try:
            deadline = time.monotonic() + self.timeout_s
            while True:
                positions = await admin.consumer_positions([(spec.name, group)])
                if sum(p.end for p in positions) == 3:
                    break
                assert time.monotonic() < deadline, positions
                await asyncio.sleep(0.1)
            assert sum(p.lag for p in positions) == 3, positions
        finally:
            release.set()

    # -- scan, fetch, append ------------------------------------------------------------------------

    async def test_scan_fetch_and_append_agree(self, bus: EventBus) -> None:
        spec = self.spec("append")
        await self.start(bus, spec)
        admin = self.admin_of(bus)
        at = await admin.append(spec.name, "t1/doc", b"payload", {"x-custom": "1"})
        assert at.topic == spec.name and 0 <= at.partition < self.partitions and at.offset >= 0
        fetched = await admin.fetch(spec.name, at.partition, at.offset)
        assert fetched is not None
        assert (fetched.key, fetched.value, fetched.headers.get("x-custom")) == ("t1/doc", b"payload", "1")
        assert [m.value for m in await self.scanned(admin, spec.name)] == [b"payload"]
        assert await admin.fetch(spec.name, at.partition, at.offset + 1) is None
        assert await admin.fetch(spec.name, self.partitions + 5, 0) is None
        assert await admin.fetch(self.spec("absent").name, 0, 0) is None
        assert await self.scanned(admin, self.spec("absent").name) == []

    # -- dead letters -------------------------------------------------------------------------------

    async def test_dead_letters_are_listed_with_their_error_tenant_and_source(self, bus: EventBus) -> None:
        spec = self.spec("list")
        sent = [
            ("acme/doc-1", letter("acme", 1)),
            ("beta/doc-2", letter("beta", 2)),
            ("acme/doc-3", letter("acme", 3, state="ok")),  # handled: not a dead letter
        ]
        admin, _ = await self.dead_lettered(bus, spec, sent, {"x-custom": "kept"})
        listing = await DeadLetters(admin).listing(spec.dlq)
        assert listing.topic == spec.dlq and listing.total == 2
        by_key = {d.key: d for d in listing.dead_letters}
        assert set(by_key) == {"acme/doc-1", "beta/doc-2"}
        d = by_key["acme/doc-1"]
        assert (d.tenant_id, d.error_class, d.attempts, d.replay) == ("acme", "InvalidArgument", 1, None)
        assert "refused message" in d.error_message
        assert d.group.startswith("admin-conformance-refuse-")
        assert d.source.topic == spec.name and d.source.partition >= 0 and d.source.offset >= 0
        assert d.at.topic == spec.dlq and d.timestamp_ms is not None and d.timestamp_ms > 0
        assert d.payload_size == len(letter("acme", 1)) and d.payload_preview == letter("acme", 1).decode()
        assert not d.payload_truncated
        only_beta = await DeadLetters(admin).listing(spec.dlq, tenant="beta")
        assert [x.key for x in only_beta.dead_letters] == ["beta/doc-2"] and only_beta.total == 1
        assert (await DeadLetters(admin).listing(spec.dlq, tenant="gamma")).dead_letters == []

    async def test_the_newest_dead_letters_come_first_within_the_limit(self, bus: EventBus) -> None:
        spec = self.spec("limit")
        admin, _ = await self.dead_lettered(bus, spec, [(f"acme/d{i}", letter("acme", i)) for i in range(5)])
        listing = await DeadLetters(admin).listing(spec.dlq, limit=2)
        assert listing.total == 5 and len(listing.dead_letters) == 2
        stamps = [(d.timestamp_ms or 0) for d in listing.dead_letters]
        assert stamps == sorted(stamps, reverse=True)
        everyone = await DeadLetters(admin).listing(spec.dlq)
        oldest_listed = min((d.timestamp_ms or 0) for d in listing.dead_letters)
        assert all(
            (d.timestamp_ms or 0) <= oldest_listed
            for d in everyone.dead_letters
            if d not in listing.dead_letters
        )
        for bad in (-1, 1001):
            with pytest.raises(InvalidArgument, match="limit"):
                await DeadLetters(admin).listing(spec.dlq, limit=bad)

    async def test_a_letter_of_no_known_tenant_is_listed_platform_wide_only(self, bus: EventBus) -> None:
        spec = self.spec("tenantless")
        sent = [
            ("acme/doc", b"\x00not json"),  # the key alone says acme
            ("acme/doc", letter("beta", 1)),  # key and payload disagree: no tenant
            ("", b"\xff\xfe"),  # nothing says
        ]
        admin, _ = await self.dead_lettered(bus, spec, sent)
        tenants = sorted(d.tenant_id for d in (await DeadLetters(admin).listing(spec.dlq)).dead_letters)
        assert tenants == ["", "", "acme"]
        assert (await DeadLetters(admin).listing(spec.dlq, tenant="beta")).total == 0

    async def test_a_large_payload_is_previewed_not_copied(self, bus: EventBus) -> None:
        spec = self.spec("preview")
        big = letter("acme", 1, text="é" * 5000)
        admin, _ = await self.dead_lettered(bus, spec, [("acme/big", big)])
        [d] = (await DeadLetters(admin).listing(spec.dlq)).dead_letters
        assert d.payload_size == len(big) and d.payload_truncated
        assert len(d.payload_preview.encode()) <= PREVIEW_BYTES and "\ufffd" not in d.payload_preview
        assert big.decode().startswith(d.payload_preview)

    async def test_a_replay_republishes_the_original_once(self, bus: EventBus) -> None:
        spec = self.spec("replay")
        admin, [dead] = await self.dead_lettered(
            bus, spec, [("acme/doc-1", letter("acme", 1))], {"x-custom": "kept"}
        )
        desk = DeadLetters(admin)
        replayed = await desk.replay(spec.dlq, dead.partition, dead.offset, tenant="acme", by="alice")
        assert replayed.replay is not None and replayed.replay.replayed_by == "alice"
        to = replayed.replay.to
        assert to.topic == spec.name
        again = await admin.fetch(to.topic, to.partition, to.offset)
        assert again is not None
        assert (again.key, again.value) == ("acme/doc-1", letter("acme", 1))
        assert again.headers.get("x-custom") == "kept"
        assert not set(DEAD_LETTER_HEADERS) & set(again.headers), again.headers
        # the handler refuses it again: a second dead letter, not yet replayed; the first one is marked
        await self.wait_for(admin, spec.dlq, 2)
        listing = await desk.listing(spec.dlq)
        marks = {(d.at.partition, d.at.offset): d.replay for d in listing.dead_letters}
        assert marks[(dead.partition, dead.offset)] is not None
        assert sum(1 for r in marks.values() if r is None) == 1
        with pytest.raises(FailedPrecondition, match="replayed already"):
            await desk.replay(spec.dlq, dead.partition, dead.offset)
        with pytest.raises(FailedPrecondition, match="replayed already"):
            await DeadLetters(admin).replay(spec.dlq, dead.partition, dead.offset)  # a new desk reads it too

    async def test_a_replay_of_an_unknown_or_foreign_letter_is_not_found(self, bus: EventBus) -> None:
        spec = self.spec("unknown")
        admin, [dead] = await self.dead_lettered(bus, spec, [("acme/doc-1", letter("acme", 1))])
        desk = DeadLetters(admin)
        with pytest.raises(NotFound, match="of tenant 'beta'"):
            await desk.replay(spec.dlq, dead.partition, dead.offset, tenant="beta")
        with pytest.raises(NotFound):
            await desk.replay(spec.dlq, dead.partition, dead.offset + 100)
        with pytest.raises(NotFound):
            await desk.replay(spec.dlq, self.partitions + 50, 0)
        with pytest.raises(InvalidArgument):
            await desk.replay(spec.dlq, -1, 0)
        assert (await desk.listing(spec.dlq)).dead_letters[0].replay is None  # nothing was replayed

    async def test_replay_pending_replays_each_letter_once(self, bus: EventBus) -> None:
        spec = self.spec("pending")
        sent = [(f"acme/d{i}", letter("acme", i)) for i in range(3)] + [("beta/d9", letter("beta", 9))]
        admin, dead = await self.dead_lettered(bus, spec, sent)
        desk = DeadLetters(admin)
        first = next(m for m in dead if m.key == "acme/d0")
        await desk.replay(spec.dlq, first.partition, first.offset, by="alice")
        await self.wait_for(admin, spec.dlq, len(dead) + 1)  # the handler refuses it again: a new letter
        replayed = await desk.replay_pending(spec.dlq, key_prefix="acme/", by="cli")
        assert sorted(d.key for d in replayed) == ["acme/d0", "acme/d1", "acme/d2"]
        assert (first.partition, first.offset) not in {(d.at.partition, d.at.offset) for d in replayed}
        assert all(d.replay is not None and d.replay.replayed_by == "cli" for d in replayed)
        # each is dead-lettered again (new letters): only those are pending now
        await self.wait_for(admin, spec.dlq, len(dead) + 4)
        again = await desk.replay_pending(spec.dlq, key_prefix="acme/")
        assert sorted(d.key for d in again) == ["acme/d0", "acme/d1", "acme/d2"]
        earlier = {(d.at.partition, d.at.offset) for d in replayed} | {(first.partition, first.offset)}
        assert earlier.isdisjoint((d.at.partition, d.at.offset) for d in again)
        assert [d.key for d in await desk.replay_pending(spec.dlq, key_prefix="beta/")] == ["beta/d9"]
