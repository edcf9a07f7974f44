"""Storage quotas at ingestion: a tenant's ``max_documents`` and ``max_bytes`` are checked against the
registry before anything is stored or published (upload and documents topic alike); a duplicate stores
nothing and a new version replaces the old one's bytes; other tenants are not affected."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus_core.auth.access_file import AccessFile, Quota, StaticAccess
from isthmus_core.auth.quotas import TenantQuotas
from isthmus_core.contracts.events import ChunksCreated, DocumentSubmitted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import QuotaExceeded
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_ingestion.api import IngestionServicer
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.registry import _SCHEMA, DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.watch import DocumentWatch

ACME, OTHER = TenantId("acme"), TenantId("other")


def text(i: int, size: int = 40) -> bytes:
    """``size`` bytes of text, different for each ``i``."""
    return (f"Document {i} is about gliders. " * 20).encode()[:size]


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=64, overlap_tokens=8)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DocumentRegistry]:
    r = DocumentRegistry(tmp_path / "documents.sqlite")
    yield r
    r.close()


@pytest.fixture
def published() -> list[ChunksCreated]:
    return []


def ingestion(
    registry: DocumentRegistry, chunker: Chunker, published: list[ChunksCreated], quota: Quota
) -> Ingestion:
    async def publish(ev: ChunksCreated) -> None:
        published.append(ev)

    quotas = TenantQuotas(StaticAccess(AccessFile().with_quota("acme", quota)))
    directory = InMemoryTenantDirectory([ACME, OTHER])
    return Ingestion(
        registry, chunker, directory, publish, max_bytes=1_000_000, chunks_per_event=8, quotas=quotas
    )


async def test_max_documents_refuses_before_storing(
    registry: DocumentRegistry, chunker: Chunker, published: list[ChunksCreated]
) -> None:
    core = ingestion(registry, chunker, published, Quota(max_documents=2))
    await core.ingest(ACME, "a.txt", text(1))
    await core.ingest(ACME, "b.txt", text(2))
    sent = len(published)
    with pytest.raises(QuotaExceeded) as info:
        await core.ingest(ACME, "c.txt", text(3))
    assert info.value.violations[0][0] == "tenant:acme/max_documents"
    assert info.value.retry_after_s is None
    assert len(registry.list(ACME)) == 2 and len(published) == sent  # nothing stored, nothing sent

    again = await core.ingest(ACME, "a-copy.txt", text(1))  # a duplicate stores nothing: no quota
    assert again.duplicate
    await core.ingest(ACME, "a.txt", text(4), document_id=registry.list(ACME)[0].document_id)  # a version
    await core.ingest(OTHER, "c.txt", text(3))  # no quota there


async def test_max_bytes_counts_what_is_stored(
    registry: DocumentRegistry, chunker: Chunker, published: list[ChunksCreated]
) -> None:
    core = ingestion(registry, chunker, published, Quota(max_bytes=200))
    await core.ingest(ACME, "a.txt", text(1, 120), document_id="doc-a")
    assert registry.usage(ACME) == (1, 120)
    await core.ingest(ACME, "a.txt", text(2, 180), document_id="doc-a")  # replaces the 120 bytes
    assert registry.usage(ACME) == (1, 180)
    with pytest.raises(QuotaExceeded) as info:
        await core.ingest(ACME, "b.txt", text(3, 40), document_id="doc-b")
    assert [s for s, _ in info.value.violations] == ["tenant:acme/max_bytes"]
    assert registry.get(ACME, "doc-b") is None
    await core.ingest(ACME, "b.txt", text(3, 20), document_id="doc-b")
    assert registry.usage(ACME) == (2, 200)

    registry.fail(ACME, "doc-b", "downstream gave up")  # a failed document holds no storage
    assert registry.usage(ACME) == (1, 180)
    kept = registry.get(ACME, "doc-a")
    assert kept is not None and kept.status == Status.CHUNKED and kept.size_bytes == 180


async def _upload(header: pb.UploadHeader, data: bytes) -> AsyncIterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    yield pb.UploadRequest(data=data)


async def test_upload_and_documents_topic_are_both_held_to_it(
    registry: DocumentRegistry, chunker: Chunker, published: list[ChunksCreated]
) -> None:
    core = ingestion(registry, chunker, published, Quota(max_documents=0))
    svc = IngestionServicer(core, DocumentWatch())
    with pytest.raises(QuotaExceeded):
        await svc.Upload(_upload(pb.UploadHeader(tenant_id=ACME, filename="a.txt"), text(1)), None)
    event = DocumentSubmitted(
        tenant_id=ACME, idempotency_key="k", filename="a.txt", content=text(2), document_id="doc-2"
    )
    with pytest.raises(QuotaExceeded) as info:  # permanent: the bus dead-letters it with the reason
        await core.on_document_submitted(event)
    assert info.value.permanent
    assert registry.list(ACME) == [] and published == []


def test_an_older_registry_gains_the_size_column(tmp_path: Path) -> None:
    path = tmp_path / "documents.sqlite"
    with closing(sqlite3.connect(path)) as db:  # the registry as the release before sizes wrote it
        db.executescript(_SCHEMA)
        db.execute("ALTER TABLE documents ADD COLUMN title TEXT NOT NULL DEFAULT ''")
        db.execute(
            "INSERT INTO documents VALUES "
            "('acme', 'old', 'a.txt', 'text/plain', 'h', 'indexed', 1, 1, 1, '', '{}', 1, 1, '')"
        )
        db.commit()
    registry = DocumentRegistry(path)
    try:
        assert registry.usage(ACME) == (1, 0)  # counted; its size unknown
        old = registry.get(ACME, "old")
        assert old is not None and old.size_bytes == 0
    finally:
        registry.close()
