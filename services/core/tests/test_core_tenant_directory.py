"""The TenantDirectory port: the conformance suite against the in-memory fake and against the gRPC client
(talking to a small RetrievalService whose GetTenant reads a set), plus the client's cache rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from isthmus.retrieval.v1 import retrieval_pb2 as pb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import InvalidArgument, NotFound, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.ports.tenants import InMemoryTenantDirectory, TenantDirectory
from isthmus_core.testing.tenant_directory_conformance import (
    TenantDirectoryConformance,
    TenantDirectoryOutageConformance,
    TenantRegistry,
    fresh_tenant_id,
)


class FakeRetrieval(pb_grpc.RetrievalServiceServicer):
    """GetTenant over a set; counts the calls; can hold a call until ``release`` is set."""

    def __init__(self) -> None:
        self.tenants: set[str] = set()
        self.calls = 0
        self.entered = asyncio.Event()
        self.release: asyncio.Event | None = None
        self.fail_with: Exception | None = None

    async def GetTenant(self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext) -> pb.Tenant:
        self.calls += 1
        found = request.tenant_id in self.tenants  # the answer is decided before any hold
        self.entered.set()
        if self.release is not None:
            await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if not found:
            raise NotFound(f"tenant {request.tenant_id!r} does not exist")
        return pb.Tenant(tenant_id=request.tenant_id)


class Registry:
    """The conformance suite's registry: a set behind a fake service (or the in-memory directory), and
    the deletion notice delivered to whoever listens (the directory under test)."""

    def __init__(self, add: Callable[[TenantId], None], remove: Callable[[TenantId], None]) -> None:
        self._add, self._remove = add, remove
        self.listeners: list[Callable[[TenantDeleted], Awaitable[None]]] = []

    async def create(self, tenant_id: TenantId) -> None:
        self._add(tenant_id)

    async def delete(self, tenant_id: TenantId) -> None:
        self._remove(tenant_id)
        ev = TenantDeleted(tenant_id=tenant_id, idempotency_key=f"{tenant_id}/deleted")
        for listener in self.listeners:
            await listener(ev)


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRetrieval, str]]:
    servicer = FakeRetrieval()
    server = GrpcServer("127.0.0.1", 0)
    server.add([lambda s: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, s)], [])
    await server.start()
    await server.set_serving()
    yield servicer, server.address
    await server.stop(0)


class TestInMemoryTenantDirectory(TenantDirectoryConformance):
    @pytest.fixture
    def memory(self) -> InMemoryTenantDirectory:
        return InMemoryTenantDirectory()

    @pytest.fixture
    def registry(self, memory: InMemoryTenantDirectory) -> TenantRegistry:
        return Registry(memory.add, memory.remove)

    @pytest.fixture
    def directory(self, memory: InMemoryTenantDirectory) -> TenantDirectory:
        return memory


class TestGrpcTenantDirectory(TenantDirectoryConformance, TenantDirectoryOutageConformance):
    @pytest.fixture
    async def channel(self, fake: tuple[FakeRetrieval, str]) -> AsyncIterator[grpc.aio.Channel]:
        async with open_channel(fake[1]) as ch:
            yield ch

    @pytest.fixture
    def registry(self, fake: tuple[FakeRetrieval, str]) -> Registry:
        return Registry(fake[0].tenants.add, fake[0].tenants.discard)

    @pytest.fixture
    def directory(self, registry: Registry, channel: grpc.aio.Channel) -> TenantDirectory:
        d = GrpcTenantDirectory(channel, ttl_s=3600)  # a long cache: only the deletion notice clears it
        registry.listeners.append(d.on_tenant_deleted)
        return d

    @pytest.fixture
    async def unreachable_directory(self) -> AsyncIterator[TenantDirectory]:
        async with open_channel("127.0.0.1:1") as ch:  # nothing listens on port 1
            yield GrpcTenantDirectory(ch, timeout_s=5)


# -- the gRPC client's own rules ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_positive_answers_are_cached_for_the_ttl_only(fake: tuple[FakeRetrieval, str]) -> None:
    servicer, address = fake
    tenant = fresh_tenant_id()
    servicer.tenants.add(tenant)
    clock = Clock()
    async with open_channel(address) as ch:
        d = GrpcTenantDirectory(ch, ttl_s=5, clock=clock)
        assert await d.exists(tenant) and await d.exists(tenant)
        assert servicer.calls == 1  # the second answer came from the cache
        servicer.tenants.discard(tenant)  # deleted, but this instance never gets the event
        clock.now += 4.9
        assert await d.exists(tenant) is True
        clock.now += 0.2
        assert await d.exists(tenant) is False  # expired: asked again
        assert servicer.calls == 2


async def test_negative_answers_are_never_cached(fake: tuple[FakeRetrieval, str]) -> None:
    servicer, address = fake
    tenant = fresh_tenant_id()
    async with open_channel(address) as ch:
        d = GrpcTenantDirectory(ch, ttl_s=3600)
        assert not await d.exists(tenant) and not await d.exists(tenant)
        assert servicer.calls == 2


async def test_a_lookup_overlapping_a_deletion_notice_is_not_cached(fake: tuple[FakeRetrieval, str]) -> None:
    servicer, address = fake
    tenant = fresh_tenant_id()
    servicer.tenants.add(tenant)
    servicer.release = asyncio.Event()
    async with open_channel(address) as ch:
        d = GrpcTenantDirectory(ch, ttl_s=3600)
        lookup = asyncio.create_task(d.exists(tenant))
        await servicer.entered.wait()  # the registry answered "yes" before the deletion...
        servicer.tenants.discard(tenant)
        await d.on_tenant_deleted(TenantDeleted(tenant_id=tenant, idempotency_key="k"))
        servicer.release.set()
        assert await lookup is True  # ...so this answer stands, but it must not be remembered
        servicer.release = None
        assert await d.exists(tenant) is False


async def test_the_cache_is_bounded(fake: tuple[FakeRetrieval, str]) -> None:
    servicer, address = fake
    tenants = [parse_tenant_id(f"bounded-{i}") for i in range(3)]
    servicer.tenants.update(tenants)
    async with open_channel(address) as ch:
        d = GrpcTenantDirectory(ch, ttl_s=3600, max_entries=2)
        for t in tenants:
            assert await d.exists(t)
        assert servicer.calls == 3
        assert await d.exists(tenants[2]) and await d.exists(tenants[1])
        assert servicer.calls == 3
        assert await d.exists(tenants[0])  # the oldest entry was evicted
        assert servicer.calls == 4


@pytest.mark.parametrize(
    ("error", "raised"),
    [(InvalidArgument("bad id"), InvalidArgument), (RuntimeError("store exploded"), Unavailable)],
)
async def test_other_failures_raise_never_answer_no(
    fake: tuple[FakeRetrieval, str], error: Exception, raised: type[Exception]
) -> None:
    servicer, address = fake
    servicer.fail_with = error
    async with open_channel(address) as ch:
        with pytest.raises(raised):
            await GrpcTenantDirectory(ch).exists(fresh_tenant_id())
