"""A region-aware typed client: one tenant, several regions (a :class:`~isthmus_core.regions.RegionsConfig`).

* **Writes** (Upload) go to the tenant's primary region (``config.primary_of(tenant)`` unless given;
  :meth:`RegionalClient.move_primary` changes it at run time). A write is never retried in another
  region: only the primary may accept it.
* **Reads** (Search, Ask, GetDocument, ListDocuments) go to the primary while it is healthy, else to
  another healthy region (by name); a read that fails with UNAVAILABLE or DEADLINE_EXCEEDED marks that
  region unhealthy and is retried on the next region, so a caller sees an error only when every region
  failed.
* **Health** is gRPC health (``grpc.health.v1`` Check of the server's overall status, a short
  deadline). Every region is probed on entry, then in the background every ``probe_interval_s``; a
  failed call marks its region down at once and the background probe brings it back when it reports
  SERVING again — reads then fail back to the primary by themselves. ``on_change`` hears every
  transition (the drill records them as detection markers).

Channels reconnect with a short backoff (≤ 1 s) so a region that returns is seen promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import grpc

from isthmus_cli.client import Stubs, channel
from isthmus_cli.options import LOCAL_REGIONS
from isthmus_cli.output import fail
from isthmus_core.errors import InvalidArgument
from isthmus_core.regions import RegionsConfig, load_regions

if TYPE_CHECKING:
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2
    from isthmus.ingestion.v1 import ingestion_pb2
    from isthmus.retrieval.v1 import retrieval_pb2

T = TypeVar("T")

#: the status codes that mean "this region is not answering": fail over
FAILOVER_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: reconnect quickly after a region comes back (gRPC's default backoff grows to two minutes)
CHANNEL_OPTIONS: Final = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


@dataclass(frozen=True, slots=True)
class Routed(Generic[T]):
    """A response and the region that gave it."""

    region: str
    value: T


@dataclass(frozen=True, slots=True)
class HealthChange:
    region: str
    healthy: bool
    reason: str  # SERVING, NOT_SERVING, UNAVAILABLE, DEADLINE_EXCEEDED...


def load_regions_or_fail(path: Path) -> RegionsConfig:
    """The regions file, or one line on stderr and exit 2 (a bad file is a bad argument)."""
    if not path.exists():
        hint = " (start the local regions with 'make regions-up')" if path == LOCAL_REGIONS else ""
        fail(f"no regions file at {path}{hint}", 2)
    try:
        return load_regions(path)
    except InvalidArgument as exc:
        fail(str(exc), 2)


class RegionalClient:
    """Typed calls for one tenant over every region of ``config`` (an async context manager)."""

    def __init__(
        self,
        config: RegionsConfig,
        tenant: str,
        *,
        primary: str | None = None,
        probe_timeout_s: float = 1.0,
        probe_interval_s: float = 1.0,
        on_change: Callable[[HealthChange], None] | None = None,
    ) -> None:
        self.config = config
        self.tenant = tenant
        self._primary = config.primary_of(tenant) if primary is None else primary
        config.region(self._primary)  # InvalidArgument for an unknown region
        self.probe_timeout_s = probe_timeout_s
        self.probe_interval_s = probe_interval_s
        self.on_change = on_change
        self._healthy = dict.fromkeys(config.names, True)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._prober: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RegionalClient:
        for name in self.config.names:
            self._channels[name] = channel(self.config.region(name).endpoint, CHANNEL_OPTIONS)
        await self.probe_all()
        self._prober = asyncio.create_task(self._probe_forever(), name="isthmus-regional-probe")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    # --- routing ---------------------------------------------------------------------------------------

    @property
    def primary(self) -> str:
        return self._primary

    def move_primary(self, region: str) -> None:
        """Writes (and preferred reads) go to ``region`` from now on."""
        self.config.region(region)
        self._primary = region

    def healthy(self, region: str) -> bool:
        return self._healthy[region]

    def read_order(self) -> list[str]:
        """The regions a read tries, in order: the primary, then the others by name; healthy ones first
        (an unhealthy region is still tried last: it may be back before the probe noticed)."""
        preferred = [self._primary, *(r for r in self.config.names if r != self._primary)]
        return [r for r in preferred if self._healthy[r]] + [r for r in preferred if not self._healthy[r]]

    def stubs(self, region: str) -> Stubs:
        """Typed stubs on ``region``'s channel (no routing: for per-region calls such as CreateTenant)."""
        return Stubs(self._channels[region])

    # --- health ----------------------------------------------------------------------------------------

    async def probe(self, region: str) -> bool:
        """One health Check of ``region`` (overall server status); records the result."""
        from grpc_health.v1 import health_pb2

        try:
            r = await self.stubs(region).health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self.probe_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            self._mark(region, False, exc.code().name)
            return False
        serving: bool = r.status == health_pb2.HealthCheckResponse.SERVING
        self._mark(region, serving, health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
        return serving

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(r) for r in self.config.names))

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            await self.probe_all()

    def _mark(self, region: str, healthy: bool, reason: str) -> None:
        if self._healthy[region] != healthy:
            self._healthy[region] = healthy
            if self.on_change is not None:
                self.on_change(HealthChange(region, healthy, reason))

    # --- calls -----------------------------------------------------------------------------------------

    async def write(self, call: Callable[[Stubs], Awaitable[T]]) -> Routed[T]:
        """``call`` on the primary (never elsewhere); a region that does not answer is marked down."""
        region = self._primary
        try:
            return Routed(region, await call(self.stubs(region)))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in FAILOVER_CODES:
                self._mark(region, False, exc.code().name)
            raise

    async def read(self, call: Callable[[Stubs], Awaitable[T]]) -> Routed[T]:
        """``call`` on the first region of :meth:`read_order` that answers; the last error when none."""
        last: grpc.aio.AioRpcError | None = None
        for region in self.read_order():
            try:
                return Routed(region, await call(self.stubs(region)))
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in FAILOVER_CODES:
                    raise
                self._mark(region, False, exc.code().name)
                last = exc
        assert last is not None
        raise last

    async def upload(
        self, parts: AsyncIterable[ingestion_pb2.UploadRequest], deadline_s: float = 300
    ) -> Routed[ingestion_pb2.UploadResponse]:
        async def call(s: Stubs) -> ingestion_pb2.UploadResponse:
            r: ingestion_pb2.UploadResponse = await s.ingestion.Upload(parts, timeout=deadline_s)
            return r

        return await self.write(call)

    async def search(
        self, request: retrieval_pb2.SearchRequest, deadline_s: float = 30
    ) -> Routed[retrieval_pb2.SearchResponse]:
        async def call(s: Stubs) -> retrieval_pb2.SearchResponse:
            r: retrieval_pb2.SearchResponse = await s.retrieval.Search(request, timeout=deadline_s)
            return r

        return await self.read(call)

    async def ask(
        self, request: agent_orchestrator_pb2.AskRequest, deadline_s: float = 120
    ) -> Routed[agent_orchestrator_pb2.AskResponse]:
        async def call(s: Stubs) -> agent_orchestrator_pb2.AskResponse:
            stub = s.agent_orchestrator
            r: agent_orchestrator_pb2.AskResponse = await stub.Ask(request, timeout=deadline_s)
            return r

        return await self.read(call)

    async def get_document(
        self, request: ingestion_pb2.GetDocumentRequest, deadline_s: float = 30
    ) -> Routed[ingestion_pb2.Document]:
        async def call(s: Stubs) -> ingestion_pb2.Document:
            r: ingestion_pb2.Document = await s.ingestion.GetDocument(request, timeout=deadline_s)
            return r

        return await self.read(call)

    async def list_documents(
        self, request: ingestion_pb2.ListDocumentsRequest, deadline_s: float = 30
    ) -> Routed[ingestion_pb2.ListDocumentsResponse]:
        async def call(s: Stubs) -> ingestion_pb2.ListDocumentsResponse:
            stub = s.ingestion
            r: ingestion_pb2.ListDocumentsResponse = await stub.ListDocuments(request, timeout=deadline_s)
            return r

        return await self.read(call)
