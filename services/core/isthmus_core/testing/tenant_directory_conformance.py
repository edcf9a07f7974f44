"""Conformance suite for :class:`~isthmus_core.ports.tenants.TenantDirectory` adapters.

A directory only reads the tenant registry, so the suite also needs the registry's writer. Mix
:class:`TenantDirectoryConformance` into a test class and provide two fixtures::

    class TestMyDirectory(TenantDirectoryConformance):
        @pytest.fixture
        async def registry(self) -> AsyncIterator[TenantRegistry]:
            ...  # creates / deletes tenants where the directory looks them up

        @pytest.fixture
        def directory(self, registry: TenantRegistry) -> TenantDirectory:
            ...  # the adapter under test, reading that registry

``TenantRegistry.delete`` deletes the tenant *and* delivers its deletion notice (the
``tenants.deleted`` event) to the directory under test, as the service hosting it would. An adapter
whose registry can be made unreachable also mixes in :class:`TenantDirectoryOutageConformance` and
provides ``unreachable_directory`` (an outage raises :class:`~isthmus_core.errors.Unavailable` and never
answers "no such tenant").

The suite pins what callers rely on: an unknown tenant is absent and :func:`require_tenant` raises
NotFound naming it; a created tenant is present at once, even right after a negative lookup (negative
answers are never cached); a deleted one is absent once its deletion notice arrived, even after a
positive lookup (positive answers do not outlive the notice); tenants are independent of each other.
Tenant names are fresh and random, so a shared registry may hold other tenants.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import pytest

from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import NotFound, Unavailable
from isthmus_core.ports.tenants import TenantDirectory, require_tenant


class TenantRegistry(Protocol):
    """The test's handle on the registry behind a directory."""

    async def create(self, tenant_id: TenantId) -> None: ...

    async def delete(self, tenant_id: TenantId) -> None:
        """Delete the tenant and deliver its deletion notice to the directory under test."""
        ...


def fresh_tenant_id(label: str = "t") -> TenantId:
    """A fresh, valid tenant id (random, so a shared registry may hold other tenants)."""
    return parse_tenant_id(f"dir-{label}-{uuid.uuid4().hex[:12]}")


class TenantDirectoryConformance:
    """What every TenantDirectory must do. Subclasses provide ``registry`` and ``directory``."""

    @pytest.fixture
    def registry(self) -> TenantRegistry:
        raise NotImplementedError(f"subclasses of {type(self).__name__} provide 'registry'")

    @pytest.fixture
    def directory(self, registry: TenantRegistry) -> TenantDirectory:
        raise NotImplementedError(f"subclasses of {type(self).__name__} provide 'directory'")

    async def test_it_is_a_tenant_directory(self, directory: TenantDirectory) -> None:
        assert isinstance(directory, TenantDirectory)

    async def test_an_unknown_tenant_does_not_exist(self, directory: TenantDirectory) -> None:
        missing = fresh_tenant_id("missing")
        assert await directory.exists(missing) is False
        with pytest.raises(NotFound, match=missing):
            await require_tenant(directory, missing)

    async def test_a_created_tenant_exists(
        self, directory: TenantDirectory, registry: TenantRegistry
    ) -> None:
        tenant = fresh_tenant_id()
        await registry.create(tenant)
        try:
            assert await directory.exists(tenant) is True
            assert await directory.exists(tenant) is True  # and again (a cached answer agrees)
            assert await require_tenant(directory, tenant) == tenant
        finally:
            await registry.delete(tenant)

    async def test_a_tenant_created_after_a_negative_lookup_exists_at_once(
        self, directory: TenantDirectory, registry: TenantRegistry
    ) -> None:
        tenant = fresh_tenant_id("late")
        assert await directory.exists(tenant) is False
        await registry.create(tenant)
        try:
            assert await directory.exists(tenant) is True  # "no" is never cached
        finally:
            await registry.delete(tenant)

    async def test_a_deleted_tenant_does_not_exist(
        self, directory: TenantDirectory, registry: TenantRegistry
    ) -> None:
        tenant = fresh_tenant_id("gone")
        await registry.create(tenant)
        assert await directory.exists(tenant) is True  # cached as present, if the adapter caches
        await registry.delete(tenant)
        assert await directory.exists(tenant) is False  # the deletion notice beats the cache
        with pytest.raises(NotFound, match=tenant):
            await require_tenant(directory, tenant)

    async def test_a_tenant_deleted_and_created_again_exists(
        self, directory: TenantDirectory, registry: TenantRegistry
    ) -> None:
        tenant = fresh_tenant_id("again")
        await registry.create(tenant)
        await registry.delete(tenant)
        assert await directory.exists(tenant) is False
        await registry.create(tenant)
        try:
            assert await directory.exists(tenant) is True
        finally:
            await registry.delete(tenant)

    async def test_tenants_are_independent(
        self, directory: TenantDirectory, registry: TenantRegistry
    ) -> None:
        kept, dropped, never = fresh_tenant_id("kept"), fresh_tenant_id("dropped"), fresh_tenant_id("never")
        await registry.create(kept)
        await registry.create(dropped)
        try:
            assert await directory.exists(kept) and await directory.exists(dropped)
            await registry.delete(dropped)
            assert await directory.exists(kept) is True
            assert await directory.exists(dropped) is False
            assert await directory.exists(never) is False
        finally:
            await registry.delete(kept)


class TenantDirectoryOutageConformance:
    """For adapters that reach a remote service: an outage raises
    :class:`~isthmus_core.errors.Unavailable` (never a wrong answer). Mix it in beside the main suite and
    provide ``unreachable_directory`` (a directory whose registry cannot be reached)."""

    @pytest.fixture
    def unreachable_directory(self) -> TenantDirectory:
        raise NotImplementedError(
            "subclasses of TenantDirectoryOutageConformance provide a 'unreachable_directory' fixture"
        )

    async def test_an_unreachable_registry_raises_unavailable(
        self, unreachable_directory: TenantDirectory
    ) -> None:
        with pytest.raises(Unavailable):
            await unreachable_directory.exists(fresh_tenant_id("outage"))
