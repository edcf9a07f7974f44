"""What the operator asks each region, besides its tenant registry: the documents it holds (replication
lag, RPO) and its gRPC health (a drill's recovery).

:class:`DocumentIndex` and :class:`HealthProbe` are the ports; the gRPC adapters call the region's
endpoint (ingestion ``ListDocuments``, ``grpc.health.v1.Health/Check``), the in-memory fakes serve the
tests. :class:`RegionClients` bundles one region's three clients (the tenant registry of
:mod:`.retrieval` included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as ipb_grpc
from isthmus_core.auth.outbound import TokenSource
from isthmus_core.errors import InvalidArgument, NotFound, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.status import from_rpc_error
from isthmus_operator.guardrail import GrpcPolicyApplier, PolicyApplier
from isthmus_operator.measure import DocumentState
from isthmus_operator.retrieval import GrpcTenantRegistry, TenantRegistry


@runtime_checkable
class DocumentIndex(Protocol):
    async def indexed(self, tenant_id: str) -> dict[str, DocumentState]:
        """The tenant's INDEXED documents in this region by id. NotFound: the region does not hold the
        tenant; Unavailable: the region cannot be asked now."""

    async def close(self) -> None: ...


@runtime_checkable
class HealthProbe(Protocol):
    async def serving(self) -> bool:
        """True when the region answers its gRPC health check with SERVING (False on any failure)."""

    async def close(self) -> None: ...


@dataclass
class RegionClients:
    """One region as the operator reaches it: its tenant registry, and optionally its documents (lag,
    RPO), health (a drill's recovery, RTO) and guardrail policies (a Tenant's guardrailPolicyRef)."""

    endpoint: str
    tenants: TenantRegistry
    documents: DocumentIndex | None = None
    health: HealthProbe | None = None
    policies: PolicyApplier | None = None

    async def close(self) -> None:
        for c in (self.tenants, self.documents, self.health, self.policies):
            if c is not None:
                await c.close()


class _Channel:
    def __init__(self, endpoint: str, tokens: TokenSource | None = None) -> None:
        if not endpoint or ":" not in endpoint:
            raise InvalidArgument(f"region endpoint must be host:port, got {endpoint!r}")
        self.endpoint = endpoint
        self._tokens = tokens
        self._channel: grpc.aio.Channel | None = None

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = open_channel(self.endpoint, self._tokens)
        return self._channel

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


class GrpcDocumentIndex(_Channel):
    """Ingestion's ``ListDocuments(tenant, INDEXED)`` at the region's endpoint."""

    def __init__(self, endpoint: str, timeout_s: float = 5.0, tokens: TokenSource | None = None) -> None:
        super().__init__(endpoint, tokens)
        self._timeout = timeout_s

    async def indexed(self, tenant_id: str) -> dict[str, DocumentState]:
        stub = ipb_grpc.IngestionServiceStub(self.channel())
        try:
            response = await stub.ListDocuments(
                ipb.ListDocumentsRequest(tenant_id=tenant_id, status=ipb.DOCUMENT_STATUS_INDEXED),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            err = from_rpc_error(exc)
            if isinstance(err, NotFound | InvalidArgument):
                raise err from exc
            raise Unavailable(f"ingestion at {self.endpoint}: ListDocuments failed: {err.reason}") from exc
        return {
            d.document_id: DocumentState(
                version=d.version,
                updated_at=d.updated_at.ToDatetime().timestamp() if d.HasField("updated_at") else 0.0,
            )
            for d in response.documents
        }


class GrpcHealthProbe(_Channel):
    """``grpc.health.v1.Health/Check`` of the server's overall health (service ``""``)."""

    def __init__(self, endpoint: str, timeout_s: float = 2.0) -> None:
        super().__init__(endpoint)
        self._timeout = timeout_s

    async def serving(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channel())
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=self._timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def grpc_region(endpoint: str, timeout_s: float = 5.0, tokens: TokenSource | None = None) -> RegionClients:
    """The real clients of a region whose gRPC endpoint serves retrieval, ingestion, guardrail and health
    (the all-in-one platform; ``tokens``: the operator's own bearer, when the platform's authentication
    is on)."""
    return RegionClients(
        endpoint=endpoint,
        tenants=GrpcTenantRegistry(endpoint, timeout_s, tokens),
        documents=GrpcDocumentIndex(endpoint, timeout_s, tokens),
        health=GrpcHealthProbe(endpoint, min(timeout_s, 2.0)),
        policies=GrpcPolicyApplier(endpoint, timeout_s, tokens),
    )


@dataclass
class InMemoryDocumentIndex:
    """The fake: tenant -> document id -> state; ``down`` makes every call Unavailable."""

    documents: dict[str, dict[str, DocumentState]] = field(default_factory=dict)
    down: bool = False

    async def indexed(self, tenant_id: str) -> dict[str, DocumentState]:
        if self.down:
            raise Unavailable("in-memory region: down (injected)")
        if tenant_id not in self.documents:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return dict(self.documents[tenant_id])

    async def close(self) -> None:
        return None


@dataclass
class InMemoryHealthProbe:
    """The fake: ``up`` is the answer; ``checks`` counts the calls."""

    up: bool = True
    checks: int = 0

    async def serving(self) -> bool:
        self.checks += 1
        return self.up

    async def close(self) -> None:
        return None


def describe_known(regions: Mapping[str, object]) -> str:
    """``'a', 'b'`` — the known regions for messages (or a note that none is configured)."""
    return ", ".join(repr(r) for r in sorted(regions)) or "none (ISTHMUS_OPERATOR_REGIONS is empty)"
