"""Deletion in retrieval: ``documents.deleted`` (local, or mirrored from a peer region) removes the
document's chunks from the store when the version indexed is one the deletion covers; a newer version,
uploaded after the deletion, stays; a tenant that does not live here is reported as such."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.replication import replica_subscriptions
from isthmus_core.bus.typed import publish_event, subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    ChunksEmbedded,
    ChunksIndexed,
    DocumentDeleted,
    EmbeddedChunk,
    TenantDeleted,
)
from isthmus_core.ports.embedding_client import QueryEmbedding
from isthmus_core.regions import mirrored
from isthmus_core.store.port import SearchMode, SearchQuery, chunk_uuid
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.store_embedded import EmbeddedStore

TENANT = "acme"


def batch(doc: str, version: int, n: int = 3) -> ChunksEmbedded:
    return ChunksEmbedded(
        tenant_id=TENANT,
        idempotency_key=f"{TENANT}/{doc}/v{version}/b0",
        document_id=doc,
        content_hash=f"h-{doc}-{version}",
        version=version,
        batch_index=0,
        batch_count=1,
        model_id="m",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_uuid(TENANT, doc, i),
                index=i,
                text=f"walrus fact {i} of {doc} version {version}",
                start=0,
                end=5,
                vector=[1.0, float(i), 0.0, 0.5],
            )
            for i in range(n)
        ],
    )


def deleted(doc: str, version: int, tenant: str = TENANT) -> DocumentDeleted:
    return DocumentDeleted(
        tenant_id=tenant,
        idempotency_key=f"{tenant}/{doc}/deleted/v{version}",
        document_id=doc,
        version=version,
    )


class NoEmbed:
    async def embed_query(self, text: str) -> QueryEmbedding:
        raise AssertionError("not used")


async def _ignore(ev: ChunksIndexed | TenantDeleted) -> None:
    return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store")
    await s.create_tenant(TENANT)
    yield s
    await s.close()


async def bm25(store: EmbeddedStore, text: str = "walrus") -> list[str]:
    hits = await store.search(TENANT, SearchQuery(text=text, mode=SearchMode.BM25, top_k=10))
    return sorted({h.document_id for h in hits})


async def test_a_deletion_removes_the_documents_chunks_and_only_its(store: EmbeddedStore) -> None:
    core = Retrieval(store, NoEmbed(), _ignore, _ignore)
    await core.index(batch("d1", 1))
    await core.index(batch("d2", 1))
    assert await bm25(store) == ["d1", "d2"]
    assert await core.delete_document(deleted("d1", 1)) == "applied"
    assert await bm25(store) == ["d2"]
    assert await store.document_version(TENANT, "d1") is None
    # again (a redelivery, the late-chunks re-publish): nothing left, still fine
    assert await core.delete_document(deleted("d1", 1)) == "applied"


async def test_a_newer_version_than_the_deletion_covers_stays(store: EmbeddedStore) -> None:
    core = Retrieval(store, NoEmbed(), _ignore, _ignore)
    await core.index(batch("d1", 3))
    assert await core.delete_document(deleted("d1", 2)) == "stale"  # uploaded again after the deletion
    assert await bm25(store) == ["d1"]
    assert await core.delete_document(deleted("d1", 3)) == "applied"
    assert await bm25(store) == []


async def test_a_tenant_that_does_not_live_here_is_reported_absent(store: EmbeddedStore) -> None:
    core = Retrieval(store, NoEmbed(), _ignore, _ignore)
    assert await core.delete_document(deleted("d1", 1, tenant="elsewhere")) == "tenant_absent"


async def test_local_and_mirrored_deletions_reach_the_store_through_the_bus(store: EmbeddedStore) -> None:
    core = Retrieval(store, NoEmbed(), _ignore, _ignore)
    await core.index(batch("d1", 1))
    await core.index(batch("d2", 1))
    bus = InProcessBus()
    bus.subscribe(subscribe(topics.DOCUMENTS_DELETED, "retrieval-deletion", core.on_document_deleted))
    for sub in replica_subscriptions(
        topics.DOCUMENTS_DELETED, "retrieval-deletion", ["eu"], core.delete_document, service="retrieval"
    ):
        bus.subscribe(sub)
    await bus.start()
    try:
        await publish_event(bus, topics.DOCUMENTS_DELETED, deleted("d1", 1))
        await publish_event(bus, mirrored(topics.DOCUMENTS_DELETED, "eu"), deleted("d2", 1))
        await bus.drain()
    finally:
        await bus.stop()
    assert await bm25(store) == []
