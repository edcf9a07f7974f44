"""Deleting a document end to end on the `all` target (issue 18, item 3): after ``DeleteDocument`` (and
``isthmus delete``) the document is gone from Search in every mode and from answers (the answer cache
included), while ``GetDocument`` shows it DELETED with its status history; a replay of its older
``documents.submitted`` event does not bring it back, and a submission written after the deletion is
a new version, indexed again."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Final

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.client import run_cli

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MODES: Final = (rpb.SEARCH_MODE_BM25, rpb.SEARCH_MODE_DENSE, rpb.SEARCH_MODE_HYBRID)
QUESTION: Final = "What does the code word open?"


def secret() -> str:
    """A word no corpus holds: letters only, so the analyser keeps it one term."""
    return "zyx" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12]) + "q"


def notes(word: str, topic: str) -> bytes:
    return (
        f"Field notes on {topic}. The courier logged the shipment under the code word {word}. "
        f"The code word {word} opens the archive room on the third floor. "
        f"Every visitor to the archive signs the ledger kept at the front desk."
    ).encode()


class Env:
    def __init__(self, rt: Runtime, ch: grpc.aio.Channel) -> None:
        self.rt, self.ch = rt, ch
        self.ingestion = igrpc.IngestionServiceStub(ch)
        self.retrieval = rgrpc.RetrievalServiceStub(ch)
        self.orchestrator = ao_grpc.AgentOrchestratorServiceStub(ch)

    async def tenant(self) -> str:
        tenant = f"delete-{uuid.uuid4().hex[:10]}"
        await self.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
        return tenant

    async def found(self, tenant: str, query: str) -> set[str]:
        docs: set[str] = set()
        for mode in MODES:
            r = await self.retrieval.Search(
                rpb.SearchRequest(tenant_id=tenant, query=query, mode=mode, top_k=50)
            )
            docs |= {h.context.document_id for h in r.hits}
        return docs

    async def cited(self, tenant: str) -> set[str]:
        answer = await self.orchestrator.Ask(ao.AskRequest(tenant_id=tenant, question=QUESTION))
        return {c.document_id for c in answer.citations}

    async def document(self, tenant: str, doc: str) -> ipb.Document:
        return await self.ingestion.GetDocument(ipb.GetDocumentRequest(tenant_id=tenant, document_id=doc))

    async def drain(self) -> None:
        assert isinstance(self.rt.bus, InProcessBus)
        await self.rt.bus.drain()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    data_dir = tmp_path_factory.mktemp("deletion") / "data"
    async with platform(data_dir) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        yield Env(rt, ch)


async def test_a_deleted_document_leaves_search_and_answers_and_keeps_its_history(env: Env) -> None:
    tenant = await env.tenant()
    word, other = secret(), secret()
    gone = (await upload(env.ch, tenant, "gone.txt", notes(word, "tides"))).document_id
    stays = (await upload(env.ch, tenant, "stays.txt", notes(other, "rivers"))).document_id
    await wait_indexed(env.ch, tenant, [gone, stays])
    assert gone in await env.found(tenant, word)
    assert gone in await env.cited(tenant)  # and the answer is now in the answer cache

    deleted = await env.ingestion.DeleteDocument(
        ipb.DeleteDocumentRequest(tenant_id=tenant, document_id=gone, reason="superseded")
    )
    assert deleted.status == ipb.DOCUMENT_STATUS_DELETED
    await env.drain()  # retrieval has consumed documents.deleted

    assert gone not in await env.found(tenant, word)
    assert gone not in await env.found(tenant, "code word archive room tides courier")
    assert stays in await env.found(tenant, other)
    assert gone not in await env.cited(tenant)  # the cached answer was dropped, not served again
    d = await env.document(tenant, gone)
    assert d.status == ipb.DOCUMENT_STATUS_DELETED and d.filename == "gone.txt"
    statuses = [h.status for h in d.history]
    assert statuses[0] == ipb.DOCUMENT_STATUS_RECEIVED and ipb.DOCUMENT_STATUS_INDEXED in statuses
    assert statuses[-1] == ipb.DOCUMENT_STATUS_DELETED and d.history[-1].detail == "superseded"
    assert all(h.version == 1 for h in d.history)
    listed = await env.ingestion.ListDocuments(
        ipb.ListDocumentsRequest(tenant_id=tenant, status=ipb.DOCUMENT_STATUS_DELETED)
    )
    assert [x.document_id for x in listed.documents] == [gone]
    # deleting it again changes nothing
    again = await env.ingestion.DeleteDocument(ipb.DeleteDocumentRequest(tenant_id=tenant, document_id=gone))
    assert again.status == ipb.DOCUMENT_STATUS_DELETED and len(again.history) == len(d.history)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await env.ingestion.DeleteDocument(ipb.DeleteDocumentRequest(tenant_id=tenant, document_id="never"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_cli_deletes_and_a_replayed_submission_does_not_bring_it_back(env: Env) -> None:
    tenant = await env.tenant()
    word = secret()
    content = notes(word, "glaciers")
    written = datetime.now(UTC) - timedelta(seconds=30)
    submission = DocumentSubmitted(
        tenant_id=tenant,
        idempotency_key=f"{tenant}/glaciers",
        document_id="glaciers",
        filename="glaciers.txt",
        content=content,
        occurred_at=written,
    )
    assert isinstance(env.rt.bus, InProcessBus)
    await publish_event(env.rt.bus, topics.DOCUMENTS_SUBMITTED, submission)
    await wait_indexed(env.ch, tenant, ["glaciers"])
    assert "glaciers" in await env.found(tenant, word)

    code, out, err = await run_cli(
        "delete", "glaciers", "--tenant", tenant, "--reason", "retention", "--json", endpoint=env.rt.address
    )
    assert code == 0, err
    printed = json.loads(out)
    last = printed["history"][-1]
    assert printed["status"] == "deleted" and (last["status"], last["detail"], last["version"]) == (
        "deleted",
        "retention",
        1,
    )
    await env.drain()
    assert "glaciers" not in await env.found(tenant, word)

    # the same event again (a Kafka replay: offsets reset, a dead letter replayed): still deleted
    await publish_event(env.rt.bus, topics.DOCUMENTS_SUBMITTED, submission)
    await env.drain()
    d = await env.document(tenant, "glaciers")
    assert (d.status, d.version) == (ipb.DOCUMENT_STATUS_DELETED, 1)
    assert "glaciers" not in await env.found(tenant, word)

    # a submission written after the deletion is an upload again: a new version, indexed
    fresh = submission.model_copy(
        update={"occurred_at": datetime.now(UTC), "idempotency_key": f"{tenant}/g2"}
    )
    await publish_event(env.rt.bus, topics.DOCUMENTS_SUBMITTED, fresh)
    await wait_indexed(env.ch, tenant, ["glaciers"])
    d = await env.document(tenant, "glaciers")
    assert d.version > 1 and d.history[-1].status == ipb.DOCUMENT_STATUS_INDEXED
    assert "glaciers" in await env.found(tenant, word)
