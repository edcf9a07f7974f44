"""Distributed mode on a real Apache Kafka: six service processes, delivery guarantees under faults.

Counts are exact: every document's chunks are indexed once (deterministic ids make redelivery an
overwrite), none is lost, whatever is killed or restarted mid-stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.kafka_tools import read_topic
from isthmus_core.contracts import topics
from isthmus_core.testing.client import upload, wait_indexed

from .conftest import Cluster
from .helpers import Tenant, cli, corpus

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    return {}


async def test_six_processes_answer_with_citations(cluster: Cluster) -> None:
    t = Tenant(cluster, "dist")
    await t.create()
    text = b"Gliders are aircraft without engines. Gliders stay aloft by soaring in thermals and ridge lift."
    async with t.channel("ingestion") as ch:
        r = await upload(ch, "dist", "gliders.txt", text, document_id="gliders")
        await wait_indexed(ch, "dist", [r.document_id], within_s=120)
    async with t.channel("agent-orchestrator") as ch:
        resp = await ao_grpc.AgentOrchestratorServiceStub(ch).Ask(
            ao.AskRequest(tenant_id="dist", question="How do gliders stay aloft?"), timeout=60
        )
    assert not resp.blocked and "thermals" in resp.answer
    assert resp.citations[0].document_id == "gliders"
    # one trace from upload to indexed: every hop's event carries the upload's trace id
    trace_ids = set()
    for spec in (topics.CHUNKS_CREATED, topics.CHUNKS_EMBEDDED, topics.CHUNKS_INDEXED):
        messages, _ = await read_topic(cluster.bootstrap, spec.name, key_prefix="dist/gliders")
        assert messages, spec.name
        for m in messages:
            trace_ids.add(m.headers["traceparent"].split("-")[1])
            trace_ids.add(json.loads(m.value)["trace_context"]["traceparent"].split("-")[1])
    assert len(trace_ids) == 1 and trace_ids != {"0" * 32}
    for proc in (cluster.procs[s][0] for s in cluster.procs):
        assert proc.poll() is None


async def test_poison_message_is_dead_lettered_and_its_partition_keeps_flowing(cluster: Cluster) -> None:
    key = "dist/after-poison"  # the same key as the document uploaded next: the same partition
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.CHUNKS_CREATED.name, b"\x00not an event", key=key.encode())
    finally:
        await producer.stop()
    async with grpc.aio.insecure_channel(cluster.endpoints["ingestion"]) as ch:
        r = await upload(
            ch,
            "dist",
            "after.txt",
            b"Ridge lift happens where wind meets a slope.",
            document_id="after-poison",
        )
        await wait_indexed(ch, "dist", [r.document_id], within_s=120)
    code, out, err = await cli(
        "dlq", "list", topics.CHUNKS_CREATED.name, "--json", "--bootstrap", cluster.bootstrap
    )
    assert code == 0, err
    dead = [d for d in json.loads(out) if d["key"] == key]
    assert len(dead) == 1
    assert dead[0]["error_class"] == "InvalidArgument" and dead[0]["group"] == "embedding"
    assert dead[0]["value_preview"].endswith("not an event")


async def test_dlq_replay_redrives_each_dead_letter_once(cluster: Cluster) -> None:
    key = "dist/after-poison"

    async def dead() -> list[dict[str, Any]]:
        code, out, err = await cli(
            "dlq", "list", topics.CHUNKS_CREATED.name, "--json", "--bootstrap", cluster.bootstrap
        )
        assert code == 0, err
        return [d for d in json.loads(out) if d["key"] == key]

    before = len(await dead())
    code, out, err = await cli("dlq", "replay", topics.CHUNKS_CREATED.name, "--bootstrap", cluster.bootstrap)
    assert code == 0, err
    assert f"replayed {before} dead letter(s)" in out
    # still poison: embedding dead-letters it again, so the DLQ grows by exactly the replayed messages
    for _ in range(120):  # bounded: up to 60 s
        if len(await dead()) >= 2 * before:
            break
        await asyncio.sleep(0.5)
    assert len(await dead()) == 2 * before
    # a second replay only re-drives what was dead-lettered since the first
    code, out, _ = await cli("dlq", "replay", topics.CHUNKS_CREATED.name, "--bootstrap", cluster.bootstrap)
    assert code == 0 and f"replayed {before} dead letter(s)" in out


async def test_kill_9_embedding_and_retrieval_mid_ingest_lose_and_duplicate_nothing(
    cluster: Cluster, state: dict[str, Any]
) -> None:
    t = Tenant(cluster, "faults")
    await t.create()
    await t.ingest(corpus(0, 700))
    assert t.expected >= 2000, "this test needs thousands of chunks"
    await t.wait_count(t.expected // 10, within=300)
    cluster.kill("embedding")
    await asyncio.sleep(1)
    cluster.start("embedding")
    await cluster.wait_healthy("embedding")
    await t.wait_count(t.expected // 2, within=600)
    cluster.kill("retrieval")
    await asyncio.sleep(1)
    cluster.start("retrieval")
    await cluster.wait_healthy("retrieval")
    await t.wait_all_indexed()
    state["faults"] = t


async def test_a_second_embedding_replica_joins_and_leaves_mid_stream(cluster: Cluster) -> None:
    t = Tenant(cluster, "rebalance")
    await t.create()
    await t.ingest(corpus(700, 350))
    await t.wait_count(t.expected // 10, within=300)
    replica = cluster.start("embedding", replica=True)
    await cluster.wait_healthy("embedding", replica)
    await t.wait_count(t.expected * 2 // 3, within=600)
    replica.terminate()  # graceful leave: a second rebalance
    replica.wait(timeout=60)
    await t.wait_all_indexed()


async def test_broker_restart_during_ingestion(cluster: Cluster, kafka_broker: Any) -> None:
    t = Tenant(cluster, "broker")
    await t.create()
    await t.ingest(corpus(1050, 300))
    await t.wait_count(t.expected // 10, within=300)
    kafka_broker.stop()
    await asyncio.sleep(5)
    kafka_broker.start()
    await t.wait_all_indexed(within=900)
    for svc, procs in cluster.procs.items():
        assert procs[0].poll() is None or svc in ("embedding", "retrieval"), (
            f"{svc} died: {cluster.log_tail(svc)}"
        )


async def test_reindex_rebuilds_an_identical_index(cluster: Cluster, state: dict[str, Any]) -> None:
    t: Tenant = state["faults"]
    queries = ["boundary layer transition", "heat transfer at hypersonic speed", "flutter of wings"]

    async def snapshot() -> list[list[tuple[str, float]]]:
        out = []
        async with t.channel("retrieval") as ch:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
            for q in queries:
                for mode in (retrieval_pb2.SEARCH_MODE_BM25, retrieval_pb2.SEARCH_MODE_DENSE):
                    r = await stub.Search(
                        retrieval_pb2.SearchRequest(tenant_id=t.name, query=q, mode=mode, top_k=30)
                    )
                    hits = [(h.context.chunk_id, round(h.context.score, 4)) for h in r.hits]
                    # equal scores may come in any order, and a tie straddling the cut may keep any of
                    # its members: compare the top 20 without the tie group at the boundary
                    cut = hits[19][1]
                    out.append(sorted((h for h in hits if h[1] > cut), key=lambda h: (-h[1], h[0])))
        return out

    before = await snapshot()
    assert all(len(hits) >= 5 for hits in before), "the comparison must cover real rankings"
    code, out, err = await cli(
        "reindex",
        "--tenant",
        t.name,
        "--endpoint",
        cluster.endpoints["retrieval"],
        "--bootstrap",
        cluster.bootstrap,
    )
    assert code == 0, err
    assert "replayed" in out
    assert await t.count() < t.expected  # it really was emptied first
    await t.wait_count(t.expected, within=600)
    await asyncio.sleep(3)
    assert await t.count() == t.expected
    assert await snapshot() == before
