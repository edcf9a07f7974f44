"""Tenant directory port: does a tenant exist? The tenant registry lives in retrieval; every other
service asks it through an adapter of this Protocol (a gRPC client in a deployment, a fake in unit
tests), so an unknown or deleted tenant gets NOT_FOUND everywhere, not a default answer.

Conformance: :mod:`isthmus_core.testing.tenant_directory_conformance`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import NotFound


@runtime_checkable
class TenantDirectory(Protocol):
    async def exists(self, tenant_id: TenantId) -> bool:
        """True when the tenant exists now; raises :class:`~isthmus_core.errors.Unavailable` when the
        registry cannot be reached (never answers False for an outage)."""
        ...


async def require_tenant(directory: TenantDirectory, tenant_id: TenantId) -> TenantId:
    """``tenant_id`` when it exists, else :class:`NotFound` with the reason."""
    if not await directory.exists(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} does not exist (create it with 'isthmus tenant create')")
    return tenant_id


class InMemoryTenantDirectory:
    """A :class:`TenantDirectory` over a set held in memory: the fake for unit tests (it passes the same
    conformance suite as the gRPC client), and a registry a test can ``add`` to and ``remove`` from."""

    def __init__(self, tenants: Iterable[TenantId] = ()) -> None:
        self._tenants: set[TenantId] = set(tenants)

    async def exists(self, tenant_id: TenantId) -> bool:
        return tenant_id in self._tenants

    def add(self, tenant_id: TenantId) -> None:
        self._tenants.add(tenant_id)

    def remove(self, tenant_id: TenantId) -> None:
        self._tenants.discard(tenant_id)
