"""The per-region ports besides the tenant registry: documents (ingestion ListDocuments) and health.
One contract run against the in-memory fakes and the gRPC adapters; the adapters talk to the real
shared gRPC server (isthmus_core.grpc.server: health, error mapping) hosting a small ingestion servicer
that answers ListDocuments from a dict."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as pb_grpc
from isthmus_core.errors import NotFound, Unavailable
from isthmus_core.grpc.server import GrpcServer
from isthmus_operator.measure import DocumentState
from isthmus_operator.regional import (
    DocumentIndex,
    GrpcDocumentIndex,
    GrpcHealthProbe,
    HealthProbe,
    InMemoryDocumentIndex,
    InMemoryHealthProbe,
)

WRITTEN = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
DOCS = {"acme": {"d1": DocumentState(1, WRITTEN.timestamp()), "d2": DocumentState(4, WRITTEN.timestamp())}}


class Listing(pb_grpc.IngestionServiceServicer):
    """ListDocuments from DOCS; asked for anything but INDEXED it returns nothing (the adapter must ask
    for INDEXED)."""

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDocumentsResponse:
        if request.tenant_id not in DOCS:
            raise NotFound(f"tenant {request.tenant_id!r} not found")
        if request.status != pb.DOCUMENT_STATUS_INDEXED:
            return pb.ListDocumentsResponse()
        out = pb.ListDocumentsResponse()
        for doc, state in DOCS[request.tenant_id].items():
            d = out.documents.add(tenant_id=request.tenant_id, document_id=doc, version=state.version)
            d.status = pb.DOCUMENT_STATUS_INDEXED
            d.updated_at.FromDatetime(WRITTEN)
        return out


@pytest.fixture
async def server() -> AsyncIterator[str]:
    srv = GrpcServer("127.0.0.1", 0)
    srv.add(
        [lambda s: pb_grpc.add_IngestionServiceServicer_to_server(Listing(), s)],
        ["isthmus.ingestion.v1.IngestionService"],
    )
    await srv.start()
    await srv.set_serving()
    yield srv.address
    await srv.stop(0.2)


@pytest.fixture(params=["in-memory", "grpc"])
async def index(request: pytest.FixtureRequest, server: str) -> AsyncIterator[DocumentIndex]:
    if request.param == "in-memory":
        impl: DocumentIndex = InMemoryDocumentIndex({t: dict(d) for t, d in DOCS.items()})
    else:
        impl = GrpcDocumentIndex(server)
    yield impl
    await impl.close()


async def test_indexed_documents_come_with_versions_and_write_times(index: DocumentIndex) -> None:
    assert isinstance(index, DocumentIndex)
    assert await index.indexed("acme") == DOCS["acme"]


async def test_a_tenant_the_region_does_not_hold_is_not_found(index: DocumentIndex) -> None:
    with pytest.raises(NotFound):
        await index.indexed("ghost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


async def test_an_unreachable_region_is_unavailable() -> None:
    port = free_port()
    impl = GrpcDocumentIndex(f"127.0.0.1:{port}", timeout_s=1)
    try:
        with pytest.raises(Unavailable, match=f"ingestion at 127.0.0.1:{port}: ListDocuments failed"):
            await impl.indexed("acme")
    finally:
        await impl.close()
    fake = InMemoryDocumentIndex(down=True)
    with pytest.raises(Unavailable, match="injected"):
        await fake.indexed("acme")


async def test_health_probe_reads_serving_and_reports_a_dead_region_as_not(server: str) -> None:
    live: HealthProbe = GrpcHealthProbe(server)
    dead: HealthProbe = GrpcHealthProbe(f"127.0.0.1:{free_port()}", timeout_s=1)
    try:
        assert await live.serving() is True
        assert await dead.serving() is False
    finally:
        await live.close()
        await dead.close()
    fake = InMemoryHealthProbe(up=False)
    assert isinstance(fake, HealthProbe)
    assert await fake.serving() is False and fake.checks == 1
