"""Erasure in retrieval: the erased documents' chunks leave the store — and its files: the sqlite rows are
zeroed, the write-ahead log truncated, the BM25 vocabulary and vector files of the older state removed —
a whole-tenant erasure deletes the tenant through the tenants.deleted path, and every outcome is
reported (``erasures.applied``, place ``retrieval``, this region), mirrored requests included."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.contracts.events import (
    ChunksEmbedded,
    ChunksIndexed,
    EmbeddedChunk,
    ErasureApplied,
    ErasureRequested,
    TenantDeleted,
)
from isthmus_core.ports.embedding_client import QueryEmbedding
from isthmus_core.store.port import SearchMode, SearchQuery, chunk_uuid
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.store_embedded import EmbeddedStore

TENANT = "acme"


def batch(doc: str, secret: str, n: int = 3) -> ChunksEmbedded:
    return ChunksEmbedded(
        tenant_id=TENANT,
        idempotency_key=f"{TENANT}/{doc}/v1/b0",
        document_id=doc,
        content_hash=f"h-{doc}",
        version=1,
        batch_index=0,
        batch_count=1,
        model_id="m",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_uuid(TENANT, doc, i),
                index=i,
                text=f"{secret} appears in chunk {i} of {doc}",
                start=0,
                end=5,
                vector=[1.0, float(i), 0.0, 0.5],
                metadata={"data_subject": f"{secret}-subject"},
            )
            for i in range(n)
        ],
    )


class Sink:
    def __init__(self) -> None:
        self.deleted: list[TenantDeleted] = []
        self.applied: list[ErasureApplied] = []

    async def on_indexed(self, ev: ChunksIndexed) -> None:
        return None

    async def on_deleted(self, ev: TenantDeleted) -> None:
        self.deleted.append(ev)

    async def on_applied(self, ev: ErasureApplied) -> None:
        self.applied.append(ev)


class NoEmbed:
    async def embed_query(self, text: str) -> QueryEmbedding:
        raise AssertionError("not used")


@pytest.fixture
async def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedStore]:
    # act as a SQLite build that does not zero deleted rows by default: the store must ask for it
    connect = sqlite3.connect

    def insecure_by_default(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", insecure_by_default)
    s = EmbeddedStore(tmp_path / "store")
    await s.create_tenant(TENANT)
    yield s
    await s.close()


def request(**kw: Any) -> ErasureRequested:
    return ErasureRequested(
        tenant_id=kw.pop("tenant_id", TENANT), idempotency_key="e", erasure_id="c" * 32, **kw
    )


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_erased_documents_leave_the_store_and_its_files(store: EmbeddedStore, tmp_path: Path) -> None:
    sink = Sink()
    core = Retrieval(
        store, NoEmbed(), sink.on_indexed, sink.on_deleted, publish_applied=sink.on_applied, region="b"
    )
    await core.index(batch("d1", "zanzibarite"))
    await core.index(batch("d2", "quokkalith"))
    # a BM25 search writes the index (and its vocabulary) to disk; close() would write the vectors
    hits = await store.search(TENANT, SearchQuery(text="zanzibarite", mode=SearchMode.BM25, top_k=10))
    assert len(hits) == 3
    await store.close()  # vectors.usearch and the BM25 files on disk, every page in the database
    store2 = EmbeddedStore(tmp_path / "store")
    core = Retrieval(
        store2, NoEmbed(), sink.on_indexed, sink.on_deleted, publish_applied=sink.on_applied, region="b"
    )
    try:
        await store2.search(TENANT, SearchQuery(text="quokkalith", mode=SearchMode.BM25, top_k=10))
        assert b"zanzibarite" in all_bytes(tmp_path / "store")
        assert await core.erase(request(document_ids=["d1", "unknown-doc", "../bad"])) == "applied"
        (report,) = sink.applied
        assert (report.place, report.region, report.status, report.count) == ("retrieval", "b", "done", 3)
        assert report.erasure_id == "c" * 32
        assert await store2.count(TENANT) == 3
        data = all_bytes(tmp_path / "store")
        # rows zeroed, log truncated, the stale BM25 vocabulary (stemmed terms) removed
        assert b"zanzibarit" not in data
        assert b"quokkalith" in data
        assert (
            await store2.search(TENANT, SearchQuery(text="zanzibarite", mode=SearchMode.BM25, top_k=10)) == []
        )
    finally:
        await store2.close()


async def test_whole_tenant_erasure_deletes_the_tenant_through_tenants_deleted(store: EmbeddedStore) -> None:
    sink = Sink()
    core = Retrieval(store, NoEmbed(), sink.on_indexed, sink.on_deleted, publish_applied=sink.on_applied)
    await core.index(batch("d1", "zanzibarite", n=4))
    assert await core.erase(request(whole_tenant=True)) == "applied"
    assert not await store.has_tenant(TENANT)
    assert [e.tenant_id for e in sink.deleted] == [TENANT]
    (report,) = sink.applied
    assert (report.count, report.status, report.region) == (4, "done", "")


async def test_a_tenant_this_region_does_not_hold_is_reported_with_nothing_erased(
    store: EmbeddedStore,
) -> None:
    sink = Sink()
    core = Retrieval(
        store, NoEmbed(), sink.on_indexed, sink.on_deleted, publish_applied=sink.on_applied, region="b"
    )
    assert await core.erase(request(tenant_id="elsewhere", document_ids=["d1"])) == "tenant_absent"
    (report,) = sink.applied
    assert (report.count, report.status) == (0, "done") and "does not live" in report.detail
