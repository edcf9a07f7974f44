"""The retrieval service's tenant registry, as the operator needs it: ensure / remove a tenant.

:class:`TenantRegistry` is the port; :class:`GrpcTenantRegistry` calls retrieval's ``CreateTenant``
/ ``DeleteTenant`` over gRPC (endpoint: ``ISTHMUS_OPERATOR_RETRIEVAL_ENDPOINT``);
:class:`InMemoryTenantRegistry` is the fake for unit tests. Both are idempotent: ensuring an existing
tenant or removing an absent one succeeds (returns False), so a handler retried by kopf converges.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

import grpc

from isthmus.retrieval.v1 import retrieval_pb2 as pb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from isthmus_core.auth.outbound import TokenSource
from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.status import from_rpc_error


@runtime_checkable
class TenantRegistry(Protocol):
    async def ensure_tenant(self, tenant_id: str) -> bool:
        """Create the tenant if absent; True if it was created now. Unavailable: retry later;
        InvalidArgument: the id is refused (retrying cannot help)."""

    async def remove_tenant(self, tenant_id: str) -> bool:
        """Delete the tenant and its data if present; True if it was removed now."""

    async def close(self) -> None: ...


class GrpcTenantRegistry:
    """Retrieval's tenant RPCs over gRPC. The channel opens lazily, on the caller's event loop."""

    def __init__(self, endpoint: str, timeout_s: float = 5.0, tokens: TokenSource | None = None) -> None:
        if not endpoint or ":" not in endpoint:
            raise InvalidArgument(f"retrieval endpoint must be host:port, got {endpoint!r}")
        self._endpoint = endpoint
        self._tokens = tokens
        self._timeout = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.RetrievalServiceStub | None = None

    def _client(self) -> pb_grpc.RetrievalServiceStub:
        if self._stub is None:
            self._channel = open_channel(self._endpoint, self._tokens)
            self._stub = pb_grpc.RetrievalServiceStub(self._channel)
        return self._stub

    def _translate(self, method: str, exc: grpc.aio.AioRpcError) -> Exception:
        err = from_rpc_error(exc)
        if isinstance(err, AlreadyExists | NotFound | InvalidArgument):
            return err
        return Unavailable(f"retrieval at {self._endpoint}: {method} failed: {err.reason}")

    async def ensure_tenant(self, tenant_id: str) -> bool:
        try:
            await self._client().CreateTenant(
                pb.CreateTenantRequest(tenant_id=tenant_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            err = self._translate("CreateTenant", exc)
            if isinstance(err, AlreadyExists):
                return False
            raise err from exc
        return True

    async def remove_tenant(self, tenant_id: str) -> bool:
        try:
            await self._client().DeleteTenant(
                pb.DeleteTenantRequest(tenant_id=tenant_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            err = self._translate("DeleteTenant", exc)
            if isinstance(err, NotFound):
                return False
            raise err from exc
        return True

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()


class InMemoryTenantRegistry:
    """The fake: a set of tenant ids, a call log, and ``fail_next`` Unavailable errors on demand."""

    def __init__(self) -> None:
        self.tenants: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.fail_next = 0
        self._lock = asyncio.Lock()

    async def _maybe_fail(self, op: str, tenant_id: str) -> None:
        self.calls.append((op, tenant_id))
        if not is_tenant_id(tenant_id):
            raise InvalidArgument(f"invalid tenant id {tenant_id!r}")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise Unavailable(f"in-memory retrieval: {op} {tenant_id!r} failed (injected)")

    async def ensure_tenant(self, tenant_id: str) -> bool:
        async with self._lock:
            await self._maybe_fail("ensure", tenant_id)
            if tenant_id in self.tenants:
                return False
            self.tenants.add(tenant_id)
            return True

    async def remove_tenant(self, tenant_id: str) -> bool:
        async with self._lock:
            await self._maybe_fail("remove", tenant_id)
            if tenant_id not in self.tenants:
                return False
            self.tenants.discard(tenant_id)
            return True

    async def close(self) -> None:
        return None
