"""Indexing across regions: the higher version of a document wins whatever order its batches arrive in,
on whichever topic (local or mirrored); a replayed batch never duplicates; mirrored batches of a tenant
this region does not hold are skipped, not dead-lettered."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus_core.contracts.events import ChunksEmbedded, ChunksIndexed, EmbeddedChunk, TenantDeleted
from isthmus_core.ports.embedding_client import QueryEmbedding
from isthmus_core.store.port import SearchMode, SearchQuery, chunk_uuid
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.store_embedded import EmbeddedStore

TENANT = "acme"


def batches(version: int, n_chunks: int, per_batch: int, word: str) -> list[ChunksEmbedded]:
    """One version of document ``doc``: ``n_chunks`` chunks whose text names the version's ``word``."""
    count = (n_chunks + per_batch - 1) // per_batch
    return [
        ChunksEmbedded(
            tenant_id=TENANT,
            idempotency_key=f"{TENANT}/doc/v{version}/b{b}",
            document_id="doc",
            content_hash=f"hash-v{version}",
            version=version,
            batch_index=b,
            batch_count=count,
            model_id="m",
            chunks=[
                EmbeddedChunk(
                    chunk_id=chunk_uuid(TENANT, "doc", i),
                    index=i,
                    text=f"{word} chunk {i}",
                    start=0,
                    end=5,
                    vector=[1.0, float(i), 0.0, 0.5],
                )
                for i in range(b * per_batch, min(n_chunks, (b + 1) * per_batch))
            ],
        )
        for b in range(count)
    ]


class Sink:
    def __init__(self) -> None:
        self.indexed: list[ChunksIndexed] = []

    async def on_indexed(self, ev: ChunksIndexed) -> None:
        self.indexed.append(ev)

    async def on_deleted(self, ev: TenantDeleted) -> None:
        pass


class NoEmbed:
    async def embed_query(self, text: str) -> QueryEmbedding:
        raise AssertionError("not used")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store")
    await s.create_tenant(TENANT)
    yield s
    await s.close()


def retrieval(store: EmbeddedStore, sink: Sink) -> Retrieval:
    return Retrieval(store, NoEmbed(), sink.on_indexed, sink.on_deleted)


async def texts(store: EmbeddedStore) -> list[str]:
    hits = await store.search(TENANT, SearchQuery(text="chunk", mode=SearchMode.BM25, top_k=100))
    return sorted(h.text for h in hits)


@pytest.mark.parametrize("seed", range(6))
async def test_interleaved_versions_converge_on_the_higher(store: EmbeddedStore, seed: int) -> None:
    """Version 3 (5 chunks, region a) and version 2 (7 chunks, region b) arrive interleaved as two
    topics would deliver them (each in order); the store ends with exactly version 3's chunks."""
    sink = Sink()
    core = retrieval(store, sink)
    local, remote = batches(3, 5, 2, "lynx"), batches(2, 7, 2, "otter")
    rng = random.Random(seed)
    order = [0] * len(local) + [1] * len(remote)
    rng.shuffle(order)
    streams = [iter(local), iter(remote)]
    outcomes = [await core.apply(next(streams[which])) for which in order]

    assert await texts(store) == sorted(f"lynx chunk {i}" for i in range(5))
    assert await store.document_version(TENANT, "doc") == 3
    assert outcomes.count("applied") >= len(local)  # every batch of the winner was written
    assert all(ev.version == 3 or ev.version == 2 for ev in sink.indexed)


async def test_concurrent_topics_never_mix_two_versions(store: EmbeddedStore) -> None:
    """The same two versions applied by two concurrent consumers (local and mirrored topic)."""
    core = retrieval(store, Sink())
    local, remote = batches(5, 6, 1, "heron"), batches(4, 9, 1, "crane")

    async def consume(stream: list[ChunksEmbedded]) -> None:
        for ev in stream:
            await core.apply(ev)
            await asyncio.sleep(0)

    await asyncio.gather(consume(local), consume(remote))
    assert await texts(store) == sorted(f"heron chunk {i}" for i in range(6))


async def test_replayed_and_late_batches_do_not_duplicate(store: EmbeddedStore) -> None:
    core = retrieval(store, Sink())
    v1, v3 = batches(1, 4, 2, "ibis"), batches(3, 3, 2, "kite")
    for ev in [*v1, *v3]:
        assert await core.apply(ev) == "applied"
    assert [await core.apply(ev) for ev in v1] == ["stale", "stale"]  # a late replay of version 1
    for ev in v3:  # failback replays the winner: overwrites itself, nothing doubles
        assert await core.apply(ev) == "applied"
    assert await texts(store) == sorted(f"kite chunk {i}" for i in range(3))
    assert await store.count(TENANT) == 3


async def test_a_mirrored_batch_of_a_tenant_not_held_here_is_skipped(store: EmbeddedStore) -> None:
    sink = Sink()
    core = retrieval(store, sink)
    foreign = batches(1, 2, 2, "puffin")[0].model_copy(update={"tenant_id": "elsewhere"})
    assert await core.apply_replica(foreign) == "tenant_absent"
    assert not sink.indexed
    assert await core.apply_replica(batches(1, 2, 2, "puffin")[0]) == "applied"
    assert [ev.document_id for ev in sink.indexed] == ["doc"]  # this region's ingestion sees it indexed
