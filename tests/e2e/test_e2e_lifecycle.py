"""Platform lifecycle on the `all` target: the documents topic and its DLQ, restarts, tenant deletion,
startup errors. Each test boots its own platform (real models, in-process bus)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.errors import ConfigurationError

from .conftest import platform, upload, wait_indexed

pytestmark = pytest.mark.slow

TEXT = b"The Wright brothers flew the first powered aircraft at Kitty Hawk in December 1903."


async def _create(ch: grpc.aio.Channel, tenant: str) -> retrieval_pb2_grpc.RetrievalServiceStub:
    stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
    await stub.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=tenant))
    return stub


async def test_documents_topic_ingests_and_dead_letters_bad_events(tmp_path: Path) -> None:
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        await _create(ch, "t1")
        bus = rt.bus
        assert isinstance(bus, InProcessBus)
        # malformed bytes, then an oversize payload, then a valid event on the same key: it still flows
        await bus.publish(topics.DOCUMENTS_SUBMITTED.name, "t1/x", b"{not json")
        await bus.publish(topics.DOCUMENTS_SUBMITTED.name, "t1/x", b"x" * (9 * 1024 * 1024))
        bad_doc = DocumentSubmitted(
            tenant_id="t1",
            idempotency_key="k-bad",
            document_id="bad",
            filename="bad.pdf",
            content=b"not a pdf",
        )
        good_doc = DocumentSubmitted(
            tenant_id="t1", idempotency_key="k-good", document_id="good", filename="w.txt", content=TEXT
        )
        await publish_event(bus, topics.DOCUMENTS_SUBMITTED, bad_doc)
        await publish_event(bus, topics.DOCUMENTS_SUBMITTED, good_doc)
        await bus.drain()
        await wait_indexed(ch, "t1", ["good"])

        dead = bus.messages(topics.DOCUMENTS_SUBMITTED.dlq)
        assert [m.value[:9] for m in dead[:1]] == [b"{not json"]
        assert len(dead) == 3
        assert all(m.headers[H_ERROR_CLASS] == "InvalidArgument" for m in dead)
        assert dead[1].value == b"x" * (9 * 1024 * 1024)  # the original payload, untouched
        assert "pdf" in dead[2].headers[H_ERROR_MESSAGE].lower()

        stub = ingestion_pb2_grpc.IngestionServiceStub(ch)
        bad = await stub.GetDocument(ingestion_pb2.GetDocumentRequest(tenant_id="t1", document_id="bad"))
        assert bad.status == ingestion_pb2.DOCUMENT_STATUS_FAILED and "pdf" in bad.failure_reason.lower()


async def test_restart_keeps_tenants_documents_and_index(tmp_path: Path) -> None:
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        retrieval = await _create(ch, "keep")
        r = await upload(ch, "keep", "wright.txt", TEXT)
        await wait_indexed(ch, "keep", [r.document_id])
        before = await retrieval.Search(retrieval_pb2.SearchRequest(tenant_id="keep", query="Kitty Hawk"))
    assert before.hits
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        tenants = await retrieval.ListTenants(retrieval_pb2.ListTenantsRequest())
        assert [t.tenant_id for t in tenants.tenants] == ["keep"]
        after = await retrieval.Search(retrieval_pb2.SearchRequest(tenant_id="keep", query="Kitty Hawk"))
        assert [h.context.chunk_id for h in after.hits] == [h.context.chunk_id for h in before.hits]
        doc = await ingestion_pb2_grpc.IngestionServiceStub(ch).GetDocument(
            ingestion_pb2.GetDocumentRequest(tenant_id="keep", document_id=r.document_id)
        )
        assert doc.status == ingestion_pb2.DOCUMENT_STATUS_INDEXED
        again = await upload(ch, "keep", "same.txt", TEXT)
        assert again.duplicate and again.document_id == r.document_id


async def test_tenant_delete_removes_everything_and_only_that_tenant(tmp_path: Path) -> None:
    async with platform(tmp_path) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        retrieval = await _create(ch, "a")
        await _create(ch, "b")
        ra = await upload(ch, "a", "w.txt", TEXT)
        rb = await upload(ch, "b", "w.txt", TEXT)
        await wait_indexed(ch, "a", [ra.document_id])
        await wait_indexed(ch, "b", [rb.document_id])
        await retrieval.DeleteTenant(retrieval_pb2.DeleteTenantRequest(tenant_id="a"))
        await rt.bus.drain()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await retrieval.Search(retrieval_pb2.SearchRequest(tenant_id="a", query="Kitty Hawk"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        hits = await retrieval.Search(retrieval_pb2.SearchRequest(tenant_id="b", query="Kitty Hawk"))
        assert hits.hits and all(h.context.document_id == rb.document_id for h in hits.hits)
        # re-created, the tenant starts empty: its old documents are gone from ingestion too
        await retrieval.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id="a"))
        docs = await ingestion_pb2_grpc.IngestionServiceStub(ch).ListDocuments(
            ingestion_pb2.ListDocumentsRequest(tenant_id="a")
        )
        assert list(docs.documents) == []
        again = await upload(ch, "a", "w.txt", TEXT)
        assert not again.duplicate


async def test_missing_embedding_model_fails_at_startup_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigurationError) as info:
        async with platform(tmp_path / "data", embedding={"model_dir": str(missing)}):
            pass
    assert str(missing) in str(info.value)


async def test_model_dir_without_onnx_file_is_named(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigurationError) as info:
        async with platform(tmp_path / "data", embedding={"model_dir": str(model_dir)}):
            pass
    assert "model.onnx" in str(info.value)
