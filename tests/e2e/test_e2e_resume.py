"""A crash of the `all` target mid-ingest (its in-process bus lives only in memory): documents whose
upload was acknowledged (CHUNKED) but never indexed, and a document indexed whose last report the registry
never got, are driven again when a new process starts on the same data directory. They end INDEXED with
exactly their chunks (chunk ids are deterministic, the store upserts: nothing duplicated), and a client
retrying the upload gets the document indexed, not "duplicate" of a document stuck forever."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow]


def secret() -> str:
    return "zyx" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12]) + "q"


def notes(word: str, topic: str) -> bytes:
    return (
        f"Field notes on {topic}. The courier logged the shipment under the code word {word}. "
        f"The code word {word} opens the archive room on the third floor. "
        f"Every visitor to the archive signs the ledger kept at the front desk. "
        f"The {topic} survey continues next spring, when the roads to the station open again."
    ).encode()


async def test_documents_acknowledged_before_a_crash_are_indexed_after_the_restart(tmp_path: Path) -> None:
    tenant = f"resume-{uuid.uuid4().hex[:10]}"
    indexed_word, lost_word = secret(), secret()
    indexed_text, lost_text = notes(indexed_word, "tides"), notes(lost_word, "rivers")

    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        retrieval = rgrpc.RetrievalServiceStub(ch)
        await retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
        first = await upload(ch, tenant, "tides.txt", indexed_text)
        await wait_indexed(ch, tenant, [first.document_id])
        stored = await retrieval.GetTenant(rpb.GetTenantRequest(tenant_id=tenant))
        assert stored.chunk_count == first.chunk_count > 0
        # the consumers stop: what is published from now on lives only in this process's memory
        assert rt.bus is not None
        await rt.bus.stop()
        lost = await upload(ch, tenant, "rivers.txt", lost_text)
        assert lost.status == ipb.DOCUMENT_STATUS_CHUNKED and not lost.duplicate  # acknowledged
    # the process is gone, and the chunk events of the acknowledged upload with it. The indexed document
    # as a crash between its indexing and the registry learning it leaves it: CHUNKED, no batch reported
    db = sqlite3.connect(tmp_path / "ingestion" / "documents.sqlite")
    with db:
        db.execute("UPDATE documents SET status='chunked' WHERE document_id=?", (first.document_id,))
        db.execute("DELETE FROM batches WHERE document_id=?", (first.document_id,))
    db.close()

    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        retrieval = rgrpc.RetrievalServiceStub(ch)
        ingestion = igrpc.IngestionServiceStub(ch)
        await wait_indexed(ch, tenant, [first.document_id, lost.document_id], within_s=90)
        # exactly their chunks: the indexed document's chunks upserted, not duplicated
        stored = await retrieval.GetTenant(rpb.GetTenantRequest(tenant_id=tenant))
        assert stored.chunk_count == first.chunk_count + lost.chunk_count
        hits = await retrieval.Search(
            rpb.SearchRequest(tenant_id=tenant, query=lost_word, mode=rpb.SEARCH_MODE_BM25, top_k=10)
        )
        assert lost.document_id in {h.context.document_id for h in hits.hits}
        doc = await ingestion.GetDocument(
            ipb.GetDocumentRequest(tenant_id=tenant, document_id=lost.document_id)
        )
        assert [h.status for h in doc.history].count(ipb.DOCUMENT_STATUS_INDEXED) == 1
        assert {h.version for h in doc.history} == {1}
        # the client's retry of the acknowledged upload: the same document, indexed
        retry = await upload(ch, tenant, "rivers.txt", lost_text)
        assert retry.duplicate and retry.document_id == lost.document_id
        assert retry.status == ipb.DOCUMENT_STATUS_INDEXED


async def test_a_retried_upload_of_a_stuck_document_ends_indexed(tmp_path: Path) -> None:
    """The document's record left CHUNKED, its chunk events lost, and a process that did not drive it
    again at start: the client's retry of the same bytes drives it, and it ends indexed. (The start's own
    resume is kept out of the way: the record reads INDEXED while the new process starts, and CHUNKED,
    as the crash left it, once it is up.)"""
    tenant = f"resume-{uuid.uuid4().hex[:10]}"
    word = secret()
    text = notes(word, "glaciers")
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        await rgrpc.RetrievalServiceStub(ch).CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
        assert rt.bus is not None
        await rt.bus.stop()
        stuck = await upload(ch, tenant, "glaciers.txt", text)
        assert stuck.status == ipb.DOCUMENT_STATUS_CHUNKED
    # the next process starts with nothing pending; the crash's state is back once it is up
    db = sqlite3.connect(tmp_path / "ingestion" / "documents.sqlite")
    with db:
        db.execute("UPDATE documents SET status='indexed' WHERE document_id=?", (stuck.document_id,))
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        with db:
            db.execute("UPDATE documents SET status='chunked' WHERE document_id=?", (stuck.document_id,))
        db.close()
        retry = await upload(ch, tenant, "glaciers.txt", text)
        assert retry.duplicate and retry.document_id == stuck.document_id
        await wait_indexed(ch, tenant, [stuck.document_id], within_s=60)
        stored = await rgrpc.RetrievalServiceStub(ch).GetTenant(rpb.GetTenantRequest(tenant_id=tenant))
        assert stored.chunk_count == stuck.chunk_count
