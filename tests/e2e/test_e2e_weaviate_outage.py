"""Retrieval on a real Weaviate that goes away and comes back: readiness turns NOT_SERVING (so load
balancers stop routing searches here), searches fail with UNAVAILABLE within a bounded time, chunk events
wait instead of being dead-lettered, and everything uploaded during the outage is indexed afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.contracts import topics

from .conftest import platform, upload, wait_indexed

pytestmark = pytest.mark.slow
SERVICE = "isthmus.retrieval.v1.RetrievalService"


async def _wait_health(ch: grpc.aio.Channel, service: str, want: int, within_s: float = 30) -> None:
    stub = health_pb2_grpc.HealthStub(ch)
    deadline = time.monotonic() + within_s
    while True:
        got = (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"health of {service!r} stayed {got}, expected {want}")
        await asyncio.sleep(0.1)


async def test_outage_readiness_and_no_lost_chunks(tmp_path: Path, weaviate_server) -> None:  # type: ignore[no-untyped-def]
    retrieval = {
        "store": "weaviate",
        "weaviate_url": weaviate_server.url,
        "weaviate_grpc_port": weaviate_server.grpc_port,
        "weaviate_collection": f"IsthmusOutage{uuid.uuid4().hex[:8]}",
        "weaviate_timeout_s": 3.0,
        "weaviate_attempts": 2,
        "readiness_interval_s": 0.2,
    }
    tenant = f"outage-{uuid.uuid4().hex[:6]}"
    async with platform(tmp_path, retrieval=retrieval) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        stub = rgrpc.RetrievalServiceStub(ch)
        await stub.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
        first = await upload(ch, tenant, "a.txt", b"Puffins nest in burrows on sea cliffs.")
        await wait_indexed(ch, tenant, [first.document_id])
        await _wait_health(ch, SERVICE, health_pb2.HealthCheckResponse.SERVING)

        weaviate_server.stop()
        try:
            await _wait_health(ch, SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
            await _wait_health(ch, "", health_pb2.HealthCheckResponse.NOT_SERVING)
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Search(rpb.SearchRequest(tenant_id=tenant, query="puffins"))
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            assert "Weaviate" in (err.value.details() or "")
            assert time.monotonic() - started < 20  # bounded retries, not the client's minute of backoff
            # uploaded during the outage: chunked and embedded, then waiting for the store
            during = await upload(ch, tenant, "b.txt", b"Gannets dive into the sea from great heights.")
            await asyncio.sleep(2.0)
            ingestion = ingestion_pb2_grpc.IngestionServiceStub(ch)
            doc = await ingestion.GetDocument(
                ingestion_pb2.GetDocumentRequest(tenant_id=tenant, document_id=during.document_id)
            )
            assert doc.status != ingestion_pb2.DOCUMENT_STATUS_FAILED
        finally:
            weaviate_server.start()

        await _wait_health(ch, SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await _wait_health(ch, "", health_pb2.HealthCheckResponse.SERVING)
        await wait_indexed(ch, tenant, [during.document_id], within_s=90)
        hits = await stub.Search(rpb.SearchRequest(tenant_id=tenant, query="gannets dive", top_k=3))
        assert hits.hits[0].context.document_id == during.document_id
        bus = rt.bus
        if isinstance(bus, InProcessBus):
            assert bus.messages(topics.CHUNKS_EMBEDDED.dlq) == []  # the outage dead-lettered nothing
