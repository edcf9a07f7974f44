"""Deleting a document on a real Apache Kafka, six service processes (issue 18, item 3): a deletion
requested on ``isthmus.deletions.requested.v1`` takes the document out of search and answers;
``isthmus reindex`` replays the chunk history without it; a replay of its older
``isthmus.documents.submitted.v1`` record does not bring it back, while a submission written after the
deletion is a new version, indexed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import pytest
from aiokafka import AIOKafkaProducer

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_core.bus.kafka_tools import read_topic
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DeletionRequested, DocumentSubmitted, Event
from isthmus_core.testing.client import upload, wait_indexed

from .conftest import Cluster
from .helpers import Tenant, cli

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

GONE_WORD: Final = "zyxkwvelthorpq"
KEPT_WORD: Final = "zyxmarlquenbq"
QUESTION: Final = "What does the code word open?"


def notes(word: str, topic: str) -> bytes:
    return (
        f"Field notes on {topic}. The courier logged the shipment under the code word {word}. "
        f"The code word {word} opens the archive room on the third floor."
    ).encode()


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not await check():
        assert loop.time() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.2)


async def produce(bootstrap: str, spec: topics.AnyTopic, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(spec.name, value, key=key.encode())
    finally:
        await producer.stop()


def encoded(ev: Event) -> bytes:
    return ev.model_dump_json().encode()


async def test_deleted_over_kafka_gone_from_search_answers_reindex_and_replay(cluster: Cluster) -> None:
    tenant = f"deldist-{uuid.uuid4().hex[:6]}"
    t = Tenant(cluster, tenant)
    await t.create()
    # the document to delete comes from a producer (the documents topic), the one kept by Upload
    submission = DocumentSubmitted(
        tenant_id=tenant,
        idempotency_key=f"{tenant}/gone/1",
        document_id="gone",
        filename="gone.txt",
        content=notes(GONE_WORD, "tides"),
    )
    await produce(cluster.bootstrap, topics.DOCUMENTS_SUBMITTED, f"{tenant}/gone", encoded(submission))
    async with t.channel("ingestion") as ch:
        kept = await upload(ch, tenant, "kept.txt", notes(KEPT_WORD, "rivers"), document_id="kept")
        await wait_indexed(ch, tenant, ["gone", "kept"], within_s=180)
    ingestion = igrpc.IngestionServiceStub(t.channel("ingestion"))
    retrieval = rgrpc.RetrievalServiceStub(t.channel("retrieval"))
    orchestrator = ao_grpc.AgentOrchestratorServiceStub(t.channel("agent-orchestrator"))

    async def found(word: str) -> set[str]:
        docs: set[str] = set()
        for mode in (rpb.SEARCH_MODE_BM25, rpb.SEARCH_MODE_DENSE):
            r = await retrieval.Search(rpb.SearchRequest(tenant_id=tenant, query=word, mode=mode, top_k=20))
            docs |= {h.context.document_id for h in r.hits}
        return docs

    async def cited() -> set[str]:
        answer = await orchestrator.Ask(ao.AskRequest(tenant_id=tenant, question=QUESTION), timeout=60)
        return {c.document_id for c in answer.citations}

    async def document(doc: str) -> ipb.Document:
        return await ingestion.GetDocument(ipb.GetDocumentRequest(tenant_id=tenant, document_id=doc))

    assert "gone" in await found(GONE_WORD)
    assert "gone" in await cited()  # and cached in the orchestrator's answer cache

    # delete it over Kafka, as a producer would
    request = DeletionRequested(tenant_id=tenant, idempotency_key=f"{tenant}/gone/del", document_id="gone")
    await produce(cluster.bootstrap, topics.DELETIONS_REQUESTED, f"{tenant}/gone", encoded(request))

    async def deleted() -> bool:
        return (await document("gone")).status == ipb.DOCUMENT_STATUS_DELETED

    await until(deleted, "the document is deleted in the registry")
    kept_chunks = (await document("kept")).chunk_count

    async def only_kept_indexed() -> bool:
        return await t.count() == kept_chunks

    await until(only_kept_indexed, "retrieval removed the deleted document's chunks")
    assert "gone" not in await found(GONE_WORD) and "kept" in await found(KEPT_WORD)

    async def not_cited() -> bool:  # the answer cache of the orchestrator process drops it too
        return "gone" not in await cited()

    await until(not_cited, "answers stop citing the deleted document")

    # reindex: the chunk history of the deleted document is not replayed
    kept_batches, _ = await read_topic(
        cluster.bootstrap, topics.CHUNKS_CREATED.name, key_prefix=f"{tenant}/kept"
    )
    all_batches, _ = await read_topic(cluster.bootstrap, topics.CHUNKS_CREATED.name, key_prefix=f"{tenant}/")
    assert len(all_batches) > len(kept_batches) > 0
    code, out, err = await cli(
        "reindex",
        "--tenant",
        tenant,
        "--endpoint",
        cluster.endpoints["retrieval"],
        "--ingestion-endpoint",
        cluster.endpoints["ingestion"],
        "--bootstrap",
        cluster.bootstrap,
    )
    assert code == 0, err
    assert f"replayed {len(kept_batches)} chunk batch event(s)" in " ".join(out.split()), out
    await t.wait_count(kept_chunks, within=300)
    assert "gone" not in await found(GONE_WORD) and "kept" in await found(KEPT_WORD)
    # without ingestion's registry (only retrieval at --endpoint): the documents.deleted topic suffices
    # (the first reindex appended the kept document's batches to the history again)
    kept_batches, _ = await read_topic(
        cluster.bootstrap, topics.CHUNKS_CREATED.name, key_prefix=f"{tenant}/kept"
    )
    code, out, err = await cli(
        "reindex",
        "--tenant",
        tenant,
        "--endpoint",
        cluster.endpoints["retrieval"],
        "--bootstrap",
        cluster.bootstrap,
    )
    assert code == 0, err
    assert "--ingestion-endpoint" in " ".join(err.split()), err
    assert f"replayed {len(kept_batches)} chunk batch event(s)" in " ".join(out.split()), out
    await t.wait_count(kept_chunks, within=300)
    assert "gone" not in await found(GONE_WORD)
    assert (await document("gone")).status == ipb.DOCUMENT_STATUS_DELETED

    # a replay of the old submission (offsets reset, or a producer resending), then a new submission of
    # the document written after the deletion, on the same partition (same key: consumed in order)
    await produce(cluster.bootstrap, topics.DOCUMENTS_SUBMITTED, f"{tenant}/gone", encoded(submission))
    fresh = submission.model_copy(
        update={"idempotency_key": f"{tenant}/gone/2", "occurred_at": datetime.now(UTC)}
    )
    await produce(cluster.bootstrap, topics.DOCUMENTS_SUBMITTED, f"{tenant}/gone", encoded(fresh))

    async def new_version_indexed() -> bool:
        d = await document("gone")
        return d.version > 1 and d.status == ipb.DOCUMENT_STATUS_INDEXED

    await until(new_version_indexed, "the submission written after the deletion is indexed", within_s=180)
    history = [(h.version, h.status) for h in (await document("gone")).history]
    v1 = [s for v, s in history if v == 1]
    assert v1[-1] == ipb.DOCUMENT_STATUS_DELETED  # the replay did not move version 1 again
    assert v1.count(ipb.DOCUMENT_STATUS_RECEIVED) == 1
    assert "gone" in await found(GONE_WORD)
    assert kept.chunk_count == kept_chunks
