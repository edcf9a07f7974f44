"""Documents written in another region: the registry learns them from the mirrored chunks.embedded batches
(so this region lists, dedups and versions them), marks them INDEXED when this region's retrieval has
indexed every batch — in whichever order those events arrive — and keeps the higher version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus_core.contracts.events import ChunksCreated, ChunksEmbedded, EmbeddedChunk
from isthmus_core.contracts.ids import TenantId
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.store.port import chunk_uuid
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.registry import DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion

ACME = TenantId("acme")


def mirrored(version: int, batch_index: int, batch_count: int, indexes: range, digest: str) -> ChunksEmbedded:
    return ChunksEmbedded(
        tenant_id=ACME,
        idempotency_key=f"acme/doc-1/v{version}/b{batch_index}",
        document_id="doc-1",
        content_hash=digest,
        version=version,
        batch_index=batch_index,
        batch_count=batch_count,
        model_id="m",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_uuid(ACME, "doc-1", i),
                index=i,
                text=f"part {i}",
                start=0,
                end=6,
                vector=[0.1, 0.2],
                metadata={"filename": "notes/gliders.md", "source_name": "gliders.md", "team": "ops"},
            )
            for i in indexes
        ],
    )


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DocumentRegistry]:
    r = DocumentRegistry(tmp_path / "documents.sqlite")
    yield r
    r.close()


def ingestion(registry: DocumentRegistry, region: str, published: list[ChunksCreated]) -> Ingestion:
    async def publish(ev: ChunksCreated) -> None:
        published.append(ev)

    chunker = Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=64, overlap_tokens=8)
    return Ingestion(
        registry,
        chunker,
        InMemoryTenantDirectory([ACME]),
        publish,
        max_bytes=1_000_000,
        chunks_per_event=8,
        region=region,
        regions=("a", "b"),
    )


@pytest.mark.parametrize("indexed_first", [False, True])
async def test_a_mirrored_document_is_listed_and_becomes_indexed(
    registry: DocumentRegistry, indexed_first: bool
) -> None:
    core = ingestion(registry, "b", [])
    b0, b1 = mirrored(3, 0, 2, range(0, 8), "h3"), mirrored(3, 1, 2, range(8, 11), "h3")
    if indexed_first:  # this region's retrieval indexed the batches before the record arrived
        for b in (b0, b1):
            registry.mark_batch(ACME, "doc-1", 3, Status.INDEXED, b.batch_index)
    assert await core.on_replicated_batch(b0) == "applied"
    doc = registry.get(ACME, "doc-1")
    assert doc is not None
    # every batch already indexed here: INDEXED at once; else it waits for this region's index events
    assert doc.status == (Status.INDEXED if indexed_first else Status.CHUNKED)
    assert await core.on_replicated_batch(b1) == "applied"
    if not indexed_first:
        for b in (b0, b1):  # this region's chunks.indexed events, after the record
            registry.mark_batch(ACME, "doc-1", 3, Status.INDEXED, b.batch_index)
    doc = registry.get(ACME, "doc-1")
    assert doc is not None
    assert (doc.status, doc.version, doc.content_hash, doc.chunk_count) == (Status.INDEXED, 3, "h3", 11)
    assert doc.filename == "notes/gliders.md" and doc.metadata == {"team": "ops"}
    assert [d.document_id for d in registry.list(ACME)] == ["doc-1"]


async def test_the_higher_version_wins_and_a_replay_changes_nothing(registry: DocumentRegistry) -> None:
    core = ingestion(registry, "b", [])
    assert await core.on_replicated_batch(mirrored(3, 0, 1, range(2), "h3")) == "applied"
    assert await core.on_replicated_batch(mirrored(1, 0, 1, range(5), "h1")) == "stale"
    assert await core.on_replicated_batch(mirrored(3, 0, 1, range(2), "h3")) == "applied"  # replay
    doc = registry.get(ACME, "doc-1")
    assert doc is not None and (doc.version, doc.content_hash, doc.chunk_count) == (3, "h3", 2)
    assert await core.on_replicated_batch(mirrored(5, 0, 1, range(4), "h5")) == "applied"
    doc = registry.get(ACME, "doc-1")
    assert doc is not None and (doc.version, doc.content_hash, doc.chunk_count) == (5, "h5", 4)


async def test_a_tenant_not_held_here_is_skipped(registry: DocumentRegistry) -> None:
    core = ingestion(registry, "b", [])
    foreign = mirrored(1, 0, 1, range(1), "h").model_copy(update={"tenant_id": "elsewhere"})
    assert await core.on_replicated_batch(foreign) == "tenant_absent"
    assert registry.list(TenantId("elsewhere")) == []


async def test_a_local_write_after_a_mirrored_one_ranks_above_it(registry: DocumentRegistry) -> None:
    """Region b (even versions) rewrites a document it learnt from a at version 3: it writes 4, which
    wins in a too; region a rewriting its own version 3 would write 5."""
    published: list[ChunksCreated] = []
    await ingestion(registry, "b", published).on_replicated_batch(mirrored(3, 0, 1, range(1), "h3"))
    result = await ingestion(registry, "b", published).ingest(
        ACME, "gliders.md", b"Gliders circle in thermals.", document_id="doc-1"
    )
    assert {ev.version for ev in published} == {4}
    doc = registry.get(ACME, "doc-1")
    assert doc is not None and doc.version == 4 and result.document_id == "doc-1"
    region_a = ingestion(registry, "a", published)
    await region_a.ingest(ACME, "gliders.md", b"Gliders soar.", document_id="doc-1")
    assert {ev.version for ev in published} == {4, 5}
