"""Tenant ids in retrieval: one rule (the core parser's) for the service and both store adapters, a
tenant directory that never resolves outside the embedded store's root, and NOT_FOUND for an unknown
tenant from Search, GetTenant (count) and ClearTenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from isthmus_core.contracts.events import ChunksIndexed, TenantDeleted
from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.embedding_client import QueryEmbedding
from isthmus_retrieval.service import Retrieval, SearchParams
from isthmus_retrieval.store_common import validate_tenant_id
from isthmus_retrieval.store_embedded import EmbeddedStore

#: names Weaviate accepts (its rule is wider) but the platform does not, and one at the length limit
WIDER = ["Acme", "under_score", "x" * 64, "ACME-1"]
LONGEST = "x" * 63


@given(st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9_.-]{1,66}", fullmatch=True)))
def test_the_store_check_accepts_exactly_the_core_rule(raw: str) -> None:
    if is_tenant_id(raw):
        assert validate_tenant_id(raw) == raw
    else:
        with pytest.raises(InvalidArgument, match="tenant"):
            validate_tenant_id(raw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store")
    yield s
    await s.close()


@pytest.mark.parametrize("name", WIDER)
async def test_the_embedded_store_refuses_names_outside_the_platform_rule(
    store: EmbeddedStore, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InvalidArgument, match="tenant"):
        await store.create_tenant(name)
    with pytest.raises(InvalidArgument, match="tenant"):
        await store.has_tenant(name)
    assert list((tmp_path / "store").iterdir()) == []


async def test_the_longest_valid_name_works(store: EmbeddedStore) -> None:
    await store.create_tenant(LONGEST)
    assert await store.list_tenants() == [LONGEST]


async def test_a_tenant_directory_resolving_outside_the_root_is_refused(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "store" / "acme").symlink_to(outside, target_is_directory=True)
    for call in (store.has_tenant, store.create_tenant, store.count, store.delete_tenant):
        with pytest.raises(InvalidArgument, match="inside"):
            await call("acme")
    assert list(outside.iterdir()) == []


class _NoEmbed:
    async def embed_query(self, text: str) -> QueryEmbedding:
        raise AssertionError("an unknown tenant must be refused before the query is embedded")


@pytest.fixture
def core(store: EmbeddedStore) -> tuple[Retrieval, list[TenantDeleted]]:
    deleted: list[TenantDeleted] = []

    async def on_indexed(ev: ChunksIndexed) -> None:
        raise AssertionError("not used")

    async def on_deleted(ev: TenantDeleted) -> None:
        deleted.append(ev)

    return Retrieval(store, _NoEmbed(), on_indexed, on_deleted), deleted


async def test_unknown_tenants_are_not_found(core: tuple[Retrieval, list[TenantDeleted]]) -> None:
    r, deleted = core
    with pytest.raises(NotFound, match="nobody"):
        await r.search(SearchParams(tenant_id="nobody", query="anything"))
    with pytest.raises(NotFound, match="nobody"):
        await r.tenant_count("nobody")
    with pytest.raises(NotFound, match="nobody"):
        await r.clear_tenant("nobody")
    with pytest.raises(NotFound, match="nobody"):
        await r.delete_tenant("nobody")
    assert deleted == [] and await r.store.list_tenants() == []  # ClearTenant created nothing


@pytest.mark.parametrize("bad", ["", "../../escaped", *WIDER])
async def test_every_tenant_call_parses_the_id(core: tuple[Retrieval, list[TenantDeleted]], bad: str) -> None:
    r, _ = core
    calls = [
        r.create_tenant(bad),
        r.delete_tenant(bad),
        r.clear_tenant(bad),
        r.tenant_count(bad),
        r.search(SearchParams(tenant_id=bad, query="anything")),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="tenant_id"):
            await call
