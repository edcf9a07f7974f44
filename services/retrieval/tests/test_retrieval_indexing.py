"""Retrieval.index with bad chunks in a batch: the good ones are indexed, the bad ones (only those) go to
the dead-letter topic with their reasons — for an adapter reporting per-object errors (Weaviate) and
for one rejecting a batch whole (the embedded store, retried chunk by chunk)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from isthmus_core.contracts.events import ChunksEmbedded, ChunksIndexed, EmbeddedChunk, TenantDeleted
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.embedding_client import QueryEmbedding
from isthmus_core.ports.generator import DOCUMENT_VERSION_KEY
from isthmus_core.store.port import ChunkRecord, RejectedRecords, SearchMode, VectorStore, chunk_uuid
from isthmus_retrieval.service import REJECTED_SUFFIX, Retrieval, SearchParams
from isthmus_retrieval.store_embedded import EmbeddedStore

DIM = 4
TENANT = "acme"


def event(dims: Sequence[int], *, version: int = 1) -> ChunksEmbedded:
    return ChunksEmbedded(
        tenant_id=TENANT,
        idempotency_key=f"doc/v{version}/0",
        document_id="doc",
        content_hash="h",
        version=version,
        batch_index=0,
        batch_count=1,
        model_id="m",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_uuid(TENANT, "doc", i),
                index=i,
                text=f"chunk number {i}",
                start=0,
                end=5,
                vector=[1.0] + [0.0] * (d - 1),
            )
            for i, d in enumerate(dims)
        ],
    )


class Recorder:
    def __init__(self) -> None:
        self.indexed: list[ChunksIndexed] = []
        self.dead: list[tuple[ChunksEmbedded, Exception]] = []

    async def on_indexed(self, ev: ChunksIndexed) -> None:
        self.indexed.append(ev)

    async def on_deleted(self, ev: TenantDeleted) -> None:
        pass

    async def on_dead(self, ev: ChunksEmbedded, exc: Exception) -> None:
        self.dead.append((ev, exc))


class NoEmbed:
    async def embed_query(self, text: str) -> QueryEmbedding:
        raise AssertionError("not used")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store")
    await s.create_tenant(TENANT)
    yield s
    await s.close()


def core(store: VectorStore, rec: Recorder) -> Retrieval:
    return Retrieval(store, NoEmbed(), rec.on_indexed, rec.on_deleted, rec.on_dead)


async def test_whole_batch_rejecting_store_is_split_chunk_by_chunk(store: EmbeddedStore) -> None:
    rec = Recorder()
    await core(store, rec).index(event([DIM, DIM, DIM // 2, DIM]))
    assert await store.count(TENANT) == 3
    assert [e.count for e in rec.indexed] == [3]
    [(dead, exc)] = rec.dead
    assert [c.index for c in dead.chunks] == [2]  # only the bad chunk, with its original payload
    assert dead.chunks[0].vector == [1.0, 0.0]
    assert dead.idempotency_key.endswith(REJECTED_SUFFIX)
    assert isinstance(exc, RejectedRecords) and "dimension 2" in str(exc)


async def test_nothing_writable_raises_so_the_bus_dead_letters_the_event(store: EmbeddedStore) -> None:
    rec = Recorder()
    await core(store, rec).index(event([DIM]))
    with pytest.raises(InvalidArgument):
        await core(store, rec).index(event([DIM // 2, DIM // 2]))
    assert rec.dead == [] and [e.count for e in rec.indexed] == [1]


class PerObjectStore:
    """Wraps a store; reports per-object errors for vectors of the wrong size, as Weaviate's batches do."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def upsert(self, tenant_id: str, records: Sequence[ChunkRecord]) -> None:
        good = [r for r in records if len(r.vector) == DIM]
        bad = {r.chunk_id: f"vector of dimension {len(r.vector)}" for r in records if len(r.vector) != DIM}
        if good:
            await self.inner.upsert(tenant_id, good)
        if bad:
            raise RejectedRecords(bad, len(good))


async def test_per_object_errors_go_to_the_dead_letter_topic(store: EmbeddedStore) -> None:
    rec = Recorder()
    await core(PerObjectStore(store), rec).index(event([DIM // 2, DIM, DIM // 2]))  # type: ignore[arg-type]
    assert await store.count(TENANT) == 1
    [(dead, exc)] = rec.dead
    assert sorted(c.index for c in dead.chunks) == [0, 2]
    assert isinstance(exc, RejectedRecords) and exc.written == 1


async def test_replaying_the_split_dead_letter_does_not_replace_the_document(store: EmbeddedStore) -> None:
    rec = Recorder()
    retrieval = core(store, rec)
    await retrieval.index(event([DIM, DIM, DIM], version=2))
    assert len(rec.indexed) == 1
    # a replayed split-out dead letter (its chunks fixed) adds to the document instead of replacing it
    fixed = event([DIM], version=2).model_copy(update={"idempotency_key": "doc/v2/0" + REJECTED_SUFFIX})
    fixed = fixed.model_copy(
        update={
            "chunks": [
                fixed.chunks[0].model_copy(update={"chunk_id": chunk_uuid(TENANT, "doc", 9), "index": 9})
            ]
        }
    )
    await retrieval.index(fixed)
    assert await store.count(TENANT) == 4


async def test_hits_carry_the_version_of_their_document(store: EmbeddedStore) -> None:
    """Answers' provenance names the document version of each chunk: indexing records it in the chunk's
    metadata, so every hit carries it."""
    rec = Recorder()
    retrieval = core(store, rec)
    await retrieval.index(event([DIM, DIM], version=1))
    await retrieval.index(event([DIM], version=3))
    hits, _ = await retrieval.search(SearchParams(TENANT, "chunk number", mode=SearchMode.BM25))
    assert hits and {h.metadata[DOCUMENT_VERSION_KEY] for h in hits} == {"3"}
