"""The :class:`~isthmus_core.ports.tenants.TenantDirectory` over gRPC: retrieval's ``GetTenant``.

Retrieval holds the tenant registry; every other service asks it through this client. Only positive
answers are cached, for ``ttl_s`` seconds: a tenant created right after a "no" is seen at once, and a
deleted one is forgotten when its ``tenants.deleted`` event arrives (:meth:`on_tenant_deleted`) or at
the latest when its entry expires (an instance that does not receive the event, e.g. another replica of
a consumer group). A lookup that started before a deletion notice never re-caches the deleted tenant.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import grpc

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.grpc.deadline import remaining
from isthmus_core.grpc.status import from_rpc_error

DEFAULT_TTL_S: Final = 5.0
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_ENTRIES: Final = 10_000


class GrpcTenantDirectory:
    """``exists`` = retrieval's ``GetTenant`` answers (NOT_FOUND → False; any other failure raises the
    matching Isthmus error, :class:`~isthmus_core.errors.Unavailable` for an outage — never False)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._max = max_entries
        self._clock = clock
        #: tenant → when its positive answer expires (oldest first, for eviction)
        self._known: OrderedDict[TenantId, float] = OrderedDict()
        #: bumped by every forget: a lookup that overlapped one does not cache its answer
        self._epoch = 0

    async def exists(self, tenant_id: TenantId) -> bool:
        expires = self._known.get(tenant_id)
        if expires is not None and expires > self._clock():
            return True
        epoch = self._epoch
        try:
            await self._stub.GetTenant(
                retrieval_pb2.GetTenantRequest(tenant_id=tenant_id), timeout=remaining(self._timeout)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self._known.pop(tenant_id, None)
                return False
            raise from_rpc_error(exc) from exc
        if epoch == self._epoch and self._ttl > 0:
            self._known[tenant_id] = self._clock() + self._ttl
            self._known.move_to_end(tenant_id)
            while len(self._known) > self._max:
                self._known.popitem(last=False)
        return True

    def forget(self, tenant_id: TenantId) -> None:
        """Drop the cached answer for ``tenant_id`` (it was deleted)."""
        self._epoch += 1
        self._known.pop(tenant_id, None)

    async def on_tenant_deleted(self, ev: TenantDeleted) -> None:
        """The ``tenants.deleted`` subscriber: forget the tenant."""
        self.forget(parse_tenant_id(ev.tenant_id))
