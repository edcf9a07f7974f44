"""Distributed mode on real Kafka and a real Weaviate: two retrieval replicas share one Weaviate
collection (one Weaviate tenant per Isthmus tenant). Exact counts under kill -9 of a replica, the same
answers from either replica, and a batch with bad chunks: the good ones indexed, the bad ones dead-lettered
with the reason, replayable with `isthmus dlq replay`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ChunksEmbedded, EmbeddedChunk
from isthmus_core.store.port import chunk_uuid
from isthmus_core.testing.cluster import Cluster

from .conftest import SMALL_CHUNKS, running_cluster
from .helpers import Tenant, cli, corpus

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wcluster(
    kafka_bootstrap: str, weaviate_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    env = {
        **SMALL_CHUNKS,
        "ISTHMUS_RETRIEVAL_STORE": "weaviate",
        "ISTHMUS_RETRIEVAL_WEAVIATE_URL": weaviate_server.url,
        "ISTHMUS_RETRIEVAL_WEAVIATE_GRPC_PORT": str(weaviate_server.grpc_port),
        "ISTHMUS_RETRIEVAL_WEAVIATE_COLLECTION": f"IsthmusDist{uuid.uuid4().hex[:8]}",
    }
    async with running_cluster(tmp_path_factory.mktemp("wcluster"), kafka_bootstrap, env) as c:
        yield c


async def _search(address: str, tenant: str, query: str) -> list[tuple[str, float]]:
    async with grpc.aio.insecure_channel(address) as ch:
        r = await retrieval_pb2_grpc.RetrievalServiceStub(ch).Search(
            retrieval_pb2.SearchRequest(tenant_id=tenant, query=query, top_k=10, rerank=False)
        )
    return [(h.context.chunk_id, round(h.context.score, 5)) for h in r.hits]


async def test_two_retrieval_replicas_share_weaviate_and_lose_nothing(wcluster: Cluster) -> None:
    replica = wcluster.start("retrieval", replica=True)
    await wcluster.wait_healthy("retrieval", replica)
    t = Tenant(wcluster, f"wdist-{uuid.uuid4().hex[:6]}")
    await t.create()
    await t.ingest(corpus(0, 150))
    assert t.expected >= 400, "this test needs hundreds of chunks"
    await t.wait_count(t.expected // 4, within=300)
    wcluster.procs["retrieval"][0].kill()  # kill -9 one of the two consumers mid-stream
    wcluster.procs["retrieval"][0].wait(timeout=30)
    restarted = wcluster.start("retrieval")
    await wcluster.wait_healthy("retrieval", restarted)
    await t.wait_all_indexed()
    # both replicas answer from the same shard
    for q in ("boundary layer transition", "heat transfer in hypersonic flow"):
        via_main = await _search(wcluster.endpoints["retrieval"], t.name, q)
        via_replica = await _search(f"127.0.0.1:{replica.isthmus_port}", t.name, q)  # type: ignore[attr-defined]
        assert via_main and via_main == via_replica


async def test_bad_chunks_in_a_batch_are_dead_lettered_alone(wcluster: Cluster, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    from isthmus_core.contracts.topics import partition_key

    t = Tenant(wcluster, f"wbad-{uuid.uuid4().hex[:6]}")
    await t.create()
    await t.ingest(corpus(200, 1))  # fixes the tenant's dimension (384) and model
    await t.wait_all_indexed()
    async with grpc.aio.insecure_channel(wcluster.endpoints["embedding"]) as ch:
        from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc

        info = await embedding_pb2_grpc.EmbeddingServiceStub(ch).GetModel(embedding_pb2.GetModelRequest())
    good = [1.0] + [0.0] * (info.dimension - 1)
    ev = ChunksEmbedded(
        tenant_id=t.name,
        idempotency_key=f"{t.name}/mixed",
        document_id="mixed",
        content_hash="x",
        version=1,
        batch_index=0,
        batch_count=1,
        model_id=info.model_id,
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_uuid(t.name, "mixed", i),
                index=i,
                text=f"mixed batch chunk {i}",
                start=0,
                end=10,
                vector=good if i != 1 else good[:8],
            )
            for i in range(3)
        ],
    )
    producer = AIOKafkaProducer(bootstrap_servers=wcluster.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.CHUNKS_EMBEDDED.name, ev.model_dump_json().encode(), key=partition_key(ev).encode()
        )
    finally:
        await producer.stop()
    before = t.expected
    await t.wait_count(before + 2, within=120)
    await asyncio.sleep(2)
    assert await t.count() == before + 2  # the two good chunks, not the bad one

    code, out, err = await cli(
        "dlq", "list", topics.CHUNKS_EMBEDDED.name, "--json", "--bootstrap", wcluster.bootstrap
    )
    assert code == 0, err
    [dead] = [d for d in json.loads(out) if d["key"] == partition_key(ev)]
    assert dead["error_class"] == "RejectedRecords" and dead["group"] == "retrieval"
    assert "dimension 8" in dead["error"] and str(info.dimension) in dead["error"]
