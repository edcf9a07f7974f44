"""A region as six service processes applies what MirrorMaker 2 delivers from another region.

The records are put on ``a.isthmus.chunks.embedded.v1`` of this region's real Kafka exactly as MM2 writes
them (the original value and headers of a ``chunks.embedded`` record, under the source alias). The
all-in-one shape with real MirrorMaker 2 between two clusters is the multi-region tier
(tests/multiregion); this is the same code split into processes.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_core.bus.kafka_tools import read_topic
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ChunksEmbedded
from isthmus_core.regions import mirrored
from isthmus_core.store.port import chunk_uuid
from isthmus_core.testing.client import upload, wait_indexed

from .conftest import SMALL_CHUNKS, Cluster, running_cluster

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REGION_B = {**SMALL_CHUNKS, "ISTHMUS_REGION": "b", "ISTHMUS_REGIONS": '["a","b"]'}
MIRRORED = mirrored(topics.CHUNKS_EMBEDDED, "a").name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def region_b(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(
        tmp_path_factory.mktemp("region-b"), kafka_bootstrap, REGION_B, metrics=True
    ) as c:
        yield c


async def as_region_a_wrote_it(
    c: Cluster, source_tenant: str, doc: str, tenant: str, version: int
) -> list[tuple[bytes, list[tuple[str, bytes]], bytes]]:
    """The chunks.embedded records of ``source_tenant/doc`` rewritten as region a's ``tenant/doc`` at
    ``version`` (what MM2 would copy): key, headers, value."""
    messages, _ = await read_topic(
        c.bootstrap, topics.CHUNKS_EMBEDDED.name, key_prefix=f"{source_tenant}/{doc}"
    )
    assert messages
    out = []
    for m in messages:
        ev = ChunksEmbedded.model_validate_json(m.value)
        ev = ev.model_copy(
            update={
                "tenant_id": tenant,
                "version": version,
                "idempotency_key": f"{tenant}/{doc}/v{version}/b{ev.batch_index}",
                "chunks": [
                    ch.model_copy(update={"chunk_id": chunk_uuid(tenant, doc, ch.index)}) for ch in ev.chunks
                ],
            }
        )
        headers = [(k, v.encode()) for k, v in m.headers.items() if k != "isthmus-tenant"]
        out.append(
            (
                f"{tenant}/{doc}".encode(),
                [*headers, ("isthmus-tenant", tenant.encode())],
                ev.model_dump_json().encode(),
            )
        )
    return out


async def produce(bootstrap: str, records: list[tuple[bytes, list[tuple[str, bytes]], bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, headers, value in records:
            await producer.send_and_wait(MIRRORED, value, key=key, headers=headers)
    finally:
        await producer.stop()


def replication_events(c: Cluster, svc: str, outcome: str) -> float:
    body = (
        urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_ports[svc]}/metrics", timeout=5).read().decode()
    )
    total = 0.0
    for line in body.splitlines():
        if line.startswith("isthmus_replication_events_total{") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def document(ch: grpc.aio.Channel, tenant: str, doc: str) -> ipb.Document:
    return await igrpc.IngestionServiceStub(ch).GetDocument(
        ipb.GetDocumentRequest(tenant_id=tenant, document_id=doc), timeout=10
    )


async def test_a_mirrored_document_is_indexed_listed_and_outranked_by_versions(region_b: Cluster) -> None:
    c = region_b
    ingestion = grpc.aio.insecure_channel(c.endpoints["ingestion"])
    retrieval = grpc.aio.insecure_channel(c.endpoints["retrieval"])
    stub = rgrpc.RetrievalServiceStub(retrieval)
    for tenant in ("origin", "mirror"):
        await stub.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant), timeout=10)
    # a real document's embedded chunks, made by this region's own pipeline
    text = b"Estuaries mix fresh river water with salt sea water. Tides push the salt wedge upstream daily."
    r = await upload(ingestion, "origin", "estuary.txt", text, document_id="estuary")
    await wait_indexed(ingestion, "origin", [r.document_id], within_s=120)
    assert (await document(ingestion, "origin", "estuary")).version == 2  # region b draws even versions

    # region a wrote "mirror/estuary" at version 3: MM2 delivers it here as a.isthmus.chunks.embedded.v1
    await produce(c.bootstrap, await as_region_a_wrote_it(c, "origin", "estuary", "mirror", 3))
    await wait_indexed(ingestion, "mirror", ["estuary"], within_s=120)
    d = await document(ingestion, "mirror", "estuary")
    assert (d.version, d.content_hash, d.chunk_count) == (3, r.content_hash, r.chunk_count)
    hits = await stub.Search(
        rpb.SearchRequest(tenant_id="mirror", query="salt wedge tides", top_k=3), timeout=30
    )
    assert hits.hits and hits.hits[0].context.document_id == "estuary"
    assert (
        await stub.GetTenant(rpb.GetTenantRequest(tenant_id="mirror"), timeout=10)
    ).chunk_count == r.chunk_count

    # a write here after the mirrored one ranks above it (4), and a late mirrored version 1 loses
    new = b"Estuaries are brackish: river water meets the sea. Mangroves and salt marshes line many of them."
    r4 = await upload(ingestion, "mirror", "estuary.txt", new, document_id="estuary")
    await wait_indexed(ingestion, "mirror", ["estuary"], within_s=120)
    assert (await document(ingestion, "mirror", "estuary")).version == 4
    stale_before = replication_events(c, "retrieval", "stale")
    await produce(c.bootstrap, await as_region_a_wrote_it(c, "origin", "estuary", "mirror", 1))
    for _ in range(600):  # the stale batch is consumed and skipped, then counted
        if replication_events(c, "retrieval", "stale") > stale_before:
            break
        await asyncio.sleep(0.1)
    assert replication_events(c, "retrieval", "stale") > stale_before
    d = await document(ingestion, "mirror", "estuary")
    assert (d.version, d.content_hash) == (4, r4.content_hash)
    hits = await stub.Search(rpb.SearchRequest(tenant_id="mirror", query="mangroves", top_k=3), timeout=30)
    assert (
        hits.hits
        and hits.hits[0].context.document_id == "estuary"
        and "Mangroves" in hits.hits[0].context.text
    )
    assert (
        await stub.GetTenant(rpb.GetTenantRequest(tenant_id="mirror"), timeout=10)
    ).chunk_count == r4.chunk_count

    # a tenant this region does not hold: skipped and counted, never dead-lettered
    absent_before = replication_events(c, "retrieval", "tenant_absent")
    await produce(c.bootstrap, await as_region_a_wrote_it(c, "origin", "estuary", "elsewhere", 3))
    for _ in range(600):
        if replication_events(c, "retrieval", "tenant_absent") > absent_before:
            break
        await asyncio.sleep(0.1)
    assert replication_events(c, "retrieval", "tenant_absent") > absent_before
    dlq, _ = await read_topic(c.bootstrap, MIRRORED + ".dlq")
    assert dlq == []
    await ingestion.close()
    await retrieval.close()
