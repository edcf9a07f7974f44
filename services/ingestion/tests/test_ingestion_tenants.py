"""Tenants and document ids at ingestion's edge: every RPC parses the tenant id (INVALID_ARGUMENT) and
answers NOT_FOUND for an unknown tenant; a caller's document id is parsed before it becomes a key; a
deleted tenant's registry rows go when its tenants.deleted event arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus_core.contracts.events import ChunksCreated, DocumentSubmitted, TenantDeleted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_ingestion.api import IngestionServicer
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.registry import DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.watch import DocumentWatch

ACME, OTHER = TenantId("acme"), TenantId("other")
TEXT = b"Gliders stay aloft by circling in thermals, columns of rising warm air."


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


@pytest.fixture
def core(registry: DocumentRegistry, chunker: Chunker, published: list[ChunksCreated]) -> Ingestion:
    async def publish(ev: ChunksCreated) -> None:
        published.append(ev)

    directory = InMemoryTenantDirectory([ACME, OTHER])
    return Ingestion(registry, chunker, directory, publish, max_bytes=1_000_000, chunks_per_event=8)


async def _parts(header: pb.UploadHeader, data: bytes) -> AsyncIterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    yield pb.UploadRequest(data=data)


def _calls(tenant: str) -> list[tuple[str, Any]]:
    return [
        ("Upload", _parts(pb.UploadHeader(tenant_id=tenant, filename="a.txt"), TEXT)),
        ("GetDocument", pb.GetDocumentRequest(tenant_id=tenant, document_id="doc-1")),
        ("ListDocuments", pb.ListDocumentsRequest(tenant_id=tenant)),
    ]


async def test_every_rpc_answers_not_found_for_an_unknown_tenant(
    core: Ingestion, published: list[ChunksCreated]
) -> None:
    svc = IngestionServicer(core, DocumentWatch())
    for method, request in _calls("nobody"):
        with pytest.raises(NotFound, match="'nobody' does not exist"):
            await getattr(svc, method)(request, None)
    assert published == []


@pytest.mark.parametrize("bad", ["", "../../escaped", "Acme", "a/b"])
async def test_every_rpc_refuses_an_invalid_tenant_id(core: Ingestion, bad: str) -> None:
    svc = IngestionServicer(core, DocumentWatch())
    for method, request in _calls(bad):
        with pytest.raises(InvalidArgument, match="tenant_id"):
            await getattr(svc, method)(request, None)


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "with space", "x" * 129, "-lead"])
async def test_a_callers_document_id_is_parsed_before_it_becomes_a_key(
    core: Ingestion, registry: DocumentRegistry, published: list[ChunksCreated], bad: str
) -> None:
    svc = IngestionServicer(core, DocumentWatch())
    upload = _parts(pb.UploadHeader(tenant_id=ACME, filename="a.txt", document_id=bad), TEXT)
    with pytest.raises(InvalidArgument, match="document_id"):
        await svc.Upload(upload, None)
    with pytest.raises(InvalidArgument, match="document_id"):
        await svc.GetDocument(pb.GetDocumentRequest(tenant_id=ACME, document_id=bad), None)
    ev = DocumentSubmitted(
        tenant_id=ACME, idempotency_key="k", document_id=bad, filename="a.txt", content=TEXT
    )
    with pytest.raises(InvalidArgument, match="document_id"):
        await core.on_document_submitted(ev)
    assert published == [] and registry.list(ACME) == []  # no row keyed by the bad id either


async def test_documents_are_served_within_their_tenant(core: Ingestion) -> None:
    svc = IngestionServicer(core, DocumentWatch())
    up = await svc.Upload(
        _parts(pb.UploadHeader(tenant_id=ACME, filename="a.txt", document_id="MED-10"), TEXT), None
    )
    assert up.document_id == "MED-10"
    doc = await svc.GetDocument(pb.GetDocumentRequest(tenant_id=ACME, document_id="MED-10"), None)
    assert doc.status == pb.DOCUMENT_STATUS_CHUNKED
    with pytest.raises(NotFound, match="MED-10"):
        await svc.GetDocument(pb.GetDocumentRequest(tenant_id=OTHER, document_id="MED-10"), None)
    assert [
        d.document_id
        for d in (await svc.ListDocuments(pb.ListDocumentsRequest(tenant_id=ACME), None)).documents
    ] == ["MED-10"]


async def test_tenants_deleted_drops_the_tenants_rows_only(
    core: Ingestion, registry: DocumentRegistry
) -> None:
    for tenant in (ACME, OTHER):
        await core.ingest(tenant, "a.txt", TEXT)
    await core.on_tenant_deleted(TenantDeleted(tenant_id=ACME, idempotency_key="acme/deleted"))
    assert registry.list(ACME) == []
    assert [d.status for d in registry.list(OTHER)] == [Status.CHUNKED]
