"""Erasure end to end on the `all` target (issue 14, item 7): erase a data subject, documents by id, or a
whole tenant over gRPC, wait for the receipt, then look in every place the content went — GetDocument,
ListDocuments, WatchDocuments, Search in every mode, the tenant's chunk count, answers — and in every
file under the platform's data directory (SQLite databases and their logs included): the erased secret
is nowhere, the rest of the tenant is intact.

The receipt expects a report from every place in :data:`EXPECTED_PLACES` (ingestion, retrieval,
evaluation — the answers' provenance — and kafka); this test waits for them all and checks the receipt
is complete.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import grpc
import pytest
import pytest_asyncio

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.evaluation.v1 import evaluation_pb2 as epb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as egrpc
from isthmus.ingestion.v1 import ingestion_pb2 as ipb
from isthmus.ingestion.v1 import ingestion_pb2_grpc as igrpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc
from isthmus_agent_orchestrator.sentences import spans_cache_info
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.client import run_cli
from isthmus_guardrail.grounding import content_words
from isthmus_ingestion.erasure import EXPECTED_PLACES

from .conftest import platform, upload, wait_indexed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

#: the places that report to an erasure receipt
REPORTING_PLACES: Final = ("ingestion", "retrieval", "evaluation", "kafka")
PENDING_PLACES: Final = tuple(p for p in EXPECTED_PLACES if p not in REPORTING_PLACES)
MODES: Final = (
    rpb.SEARCH_MODE_BM25,
    rpb.SEARCH_MODE_DENSE,
    rpb.SEARCH_MODE_HYBRID,
    rpb.SEARCH_MODE_UNSPECIFIED,
)


def secret() -> str:
    """A word no corpus holds: letters only, so the analyser keeps it one term."""
    return "zyx" + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12]) + "q"


class Env:
    def __init__(self, rt: Runtime, ch: grpc.aio.Channel, data_dir: Path) -> None:
        self.rt, self.ch, self.data_dir = rt, ch, data_dir
        self.ingestion = igrpc.IngestionServiceStub(ch)
        self.retrieval = rgrpc.RetrievalServiceStub(ch)
        self.orchestrator = ao_grpc.AgentOrchestratorServiceStub(ch)
        self.evaluation = egrpc.EvaluationServiceStub(ch)

    async def tenant(self) -> str:
        tenant = f"erase-{uuid.uuid4().hex[:10]}"
        await self.retrieval.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
        return tenant

    async def chunks(self, tenant: str) -> int:
        return int((await self.retrieval.GetTenant(rpb.GetTenantRequest(tenant_id=tenant))).chunk_count)

    async def erase(self, request: ipb.EraseRequest, within_s: float = 60) -> ipb.ErasureReceipt:
        """Erase, then poll the receipt until every reporting place of this region is done."""
        receipt: ipb.ErasureReceipt = await self.ingestion.Erase(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not all(_status(receipt, p) == ipb.ERASURE_STEP_STATUS_DONE for p in REPORTING_PLACES):
            assert loop.time() < deadline, f"the receipt did not fill within {within_s}s: {receipt}"
            await asyncio.sleep(0.1)
            receipt = await self.ingestion.GetErasure(
                ipb.GetErasureRequest(tenant_id=request.tenant_id, erasure_id=receipt.erasure_id)
            )
        return receipt

    async def search_texts(self, tenant: str, query: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for mode in MODES:
            r = await self.retrieval.Search(
                rpb.SearchRequest(tenant_id=tenant, query=query, mode=mode, top_k=50)
            )
            found += [(h.context.document_id, h.context.text) for h in r.hits]
        return found

    def files_holding(self, *needles: str) -> dict[str, list[str]]:
        """Every file under the data directory whose bytes contain one of ``needles`` (by needle)."""
        found: dict[str, list[str]] = {n: [] for n in needles}
        for path in sorted(self.data_dir.rglob("*")):
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # a temporary file replaced while walking
                continue
            for n in needles:
                if n.encode() in data:
                    found[n].append(str(path.relative_to(self.data_dir)))
        return found


def _status(receipt: ipb.ErasureReceipt, place: str) -> int:
    (step,) = [s for s in receipt.steps if s.place == place and s.region == ""]
    return int(step.status)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    data_dir = tmp_path_factory.mktemp("erasure") / "data"
    async with platform(data_dir) as rt, grpc.aio.insecure_channel(rt.address) as ch:
        yield Env(rt, ch, data_dir)


async def _code(call: Any) -> grpc.StatusCode | None:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return None


def _doc(subject_secret: str, topic: str) -> bytes:
    return (
        f"Field notes on {topic}. The courier logged the shipment under the code word {subject_secret}. "
        f"The code word {subject_secret} opens the archive room on the third floor. "
        f"Every visitor to the archive signs the ledger kept at the front desk."
    ).encode()


async def test_erasing_a_data_subject_leaves_nothing_of_it_anywhere(env: Env) -> None:
    tenant = await env.tenant()
    alice, bob = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    alice_secret, bob_secret = secret(), secret()
    docs: dict[str, tuple[str, str]] = {}  # id -> (subject, secret)
    for name, subject, word, topic in (
        ("a1.txt", alice, alice_secret, "gliders"),
        ("a2.txt", alice, alice_secret, "harbour cranes"),
        ("b1.txt", bob, bob_secret, "lighthouses"),
    ):
        r = await upload(env.ch, tenant, name, _doc(word, topic), metadata={"data_subject": subject})
        docs[r.document_id] = (subject, word)
    await wait_indexed(env.ch, tenant, list(docs))
    alice_docs = sorted(d for d, (s, _) in docs.items() if s == alice)
    (bob_doc,) = [d for d, (s, _) in docs.items() if s == bob]
    alice_chunks = 0
    for d in alice_docs:
        alice_chunks += (
            await env.ingestion.GetDocument(ipb.GetDocumentRequest(tenant_id=tenant, document_id=d))
        ).chunk_count
    before = await env.chunks(tenant)
    assert any(d in alice_docs for d, _ in await env.search_texts(tenant, alice_secret))
    answer = await env.orchestrator.Ask(
        ao.AskRequest(tenant_id=tenant, question="What does the code word open?")
    )
    assert answer.answer  # a question over the tenant's content was answered before the erasure
    assert isinstance(env.rt.bus, InProcessBus)
    await env.rt.bus.drain()  # evaluation has kept the answer's provenance
    provenance = await env.evaluation.GetProvenance(
        epb.GetProvenanceRequest(tenant_id=tenant, answer_id=answer.question_id)
    )
    assert set(alice_docs) & {c.document_id for c in provenance.retrieved}, "the answer used alice's notes"
    assert env.files_holding(alice_secret)[alice_secret], "the walk must see the stored content"

    receipt = await env.erase(ipb.EraseRequest(tenant_id=tenant, data_subject=alice, reason="GDPR art. 17"))

    # the receipt: what was erased, where, and what is still pending
    assert sorted(receipt.document_ids) == alice_docs and receipt.target == "data_subject"
    assert receipt.requested_by == "" and receipt.reason == "GDPR art. 17"  # authentication is off here
    assert sorted({s.place for s in receipt.steps}) == sorted(EXPECTED_PLACES)
    counts = {s.place: s.count for s in receipt.steps}
    assert counts["ingestion"] == len(alice_docs) and counts["retrieval"] == alice_chunks
    assert counts["evaluation"] == 1  # the one answer that used her documents
    assert (
        await _code(
            env.evaluation.GetProvenance(
                epb.GetProvenanceRequest(tenant_id=tenant, answer_id=answer.question_id)
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    kafka = next(s for s in receipt.steps if s.place == "kafka")
    assert "isthmus.documents.submitted.v1" in kafka.detail
    for place in PENDING_PLACES:
        assert _status(receipt, place) == ipb.ERASURE_STEP_STATUS_PENDING
    assert receipt.complete == (not PENDING_PLACES)
    again = await env.ingestion.GetErasure(
        ipb.GetErasureRequest(tenant_id=tenant, erasure_id=receipt.erasure_id)
    )
    assert again.erasure_id == receipt.erasure_id

    # the content caches were purged (the orchestrator's sentence caches, guardrail's word caches)
    assert isinstance(env.rt.bus, InProcessBus)
    await env.rt.bus.drain()
    assert spans_cache_info()[2] == 0 and content_words.cache_info().currsize == 0

    # nothing of alice in any file (the registry's and the store's SQLite files and logs, the indexes)
    leaks = env.files_holding(alice_secret, alice_secret[:-2], alice)
    assert leaks == {alice_secret: [], alice_secret[:-2]: [], alice: []}, leaks
    assert env.files_holding(bob_secret)[bob_secret], "the other subject's content is intact"

    # nothing of alice through any API
    for d in alice_docs:
        assert await _code(
            env.ingestion.GetDocument(ipb.GetDocumentRequest(tenant_id=tenant, document_id=d))
        ) == (grpc.StatusCode.NOT_FOUND)
    listed = await env.ingestion.ListDocuments(ipb.ListDocumentsRequest(tenant_id=tenant))
    assert [d.document_id for d in listed.documents] == [bob_doc]
    watched = [
        e.document.document_id
        async for e in env.ingestion.WatchDocuments(
            ipb.WatchDocumentsRequest(tenant_id=tenant, until_terminal=True)
        )
    ]
    assert watched == [bob_doc]
    for query in (alice_secret, "code word archive room", "courier shipment gliders harbour cranes"):
        hits = await env.search_texts(tenant, query)
        assert all(d == bob_doc and alice_secret not in text for d, text in hits), hits
    assert any(d == bob_doc for d, _ in await env.search_texts(tenant, bob_secret))
    assert await env.chunks(tenant) == before - alice_chunks
    answer = await env.orchestrator.Ask(
        ao.AskRequest(tenant_id=tenant, question="What does the code word open?")
    )
    assert alice_secret not in answer.answer
    assert {c.document_id for c in answer.citations} <= {bob_doc}
    # and still nothing on disk after the searches and the answer rebuilt the indexes
    assert env.files_holding(alice_secret, alice_secret[:-2], alice) == {
        alice_secret: [],
        alice_secret[:-2]: [],
        alice: [],
    }


async def test_erasing_documents_by_id(env: Env) -> None:
    tenant = await env.tenant()
    word, kept = secret(), secret()
    gone = (await upload(env.ch, tenant, "gone.txt", _doc(word, "tides"))).document_id
    stays = (await upload(env.ch, tenant, "stays.txt", _doc(kept, "rivers"))).document_id
    await wait_indexed(env.ch, tenant, [gone, stays])
    before = await env.chunks(tenant)
    receipt = await env.erase(
        ipb.EraseRequest(tenant_id=tenant, documents=ipb.DocumentIds(ids=[gone, "never-uploaded", gone]))
    )
    assert list(receipt.document_ids) == [gone, "never-uploaded"] and receipt.target == "documents"
    counts = {s.place: s.count for s in receipt.steps}
    assert counts["ingestion"] == 1 and counts["retrieval"] == before - await env.chunks(tenant) > 0
    listed = await env.ingestion.ListDocuments(ipb.ListDocumentsRequest(tenant_id=tenant))
    assert [d.document_id for d in listed.documents] == [stays]
    assert env.files_holding(word)[word] == [] and env.files_holding(kept)[kept]


async def test_a_document_erased_while_its_chunks_are_in_flight_stays_erased(env: Env) -> None:
    tenant = await env.tenant()
    word = secret()
    doc = (
        await upload(env.ch, tenant, "fresh.txt", _doc(word, "meadows"))
    ).document_id  # chunked, not indexed
    await env.erase(ipb.EraseRequest(tenant_id=tenant, documents=ipb.DocumentIds(ids=[doc])))
    assert isinstance(env.rt.bus, InProcessBus)
    await env.rt.bus.drain()  # the late chunks were embedded, indexed, and erased again
    assert await env.chunks(tenant) == 0
    assert await env.search_texts(tenant, word) == []
    assert await _code(
        env.ingestion.GetDocument(ipb.GetDocumentRequest(tenant_id=tenant, document_id=doc))
    ) == (grpc.StatusCode.NOT_FOUND)
    assert env.files_holding(word)[word] == []


async def test_erasing_a_whole_tenant_deletes_it_and_keeps_the_receipt(env: Env) -> None:
    tenant = await env.tenant()
    word = secret()
    doc = (await upload(env.ch, tenant, "all.txt", _doc(word, "orchards"))).document_id
    await wait_indexed(env.ch, tenant, [doc])
    receipt = await env.erase(ipb.EraseRequest(tenant_id=tenant, whole_tenant=True))
    assert list(receipt.document_ids) == [doc] and receipt.target == "whole_tenant"
    assert (
        await _code(env.retrieval.GetTenant(rpb.GetTenantRequest(tenant_id=tenant)))
        == grpc.StatusCode.NOT_FOUND
    )
    got = await env.ingestion.GetErasure(
        ipb.GetErasureRequest(tenant_id=tenant, erasure_id=receipt.erasure_id)
    )
    assert got.erasure_id == receipt.erasure_id  # the receipt outlives the tenant
    assert env.files_holding(word)[word] == []
    assert not (env.data_dir / "store" / tenant).exists()


async def test_bad_erasure_calls_are_refused(env: Env) -> None:
    tenant = await env.tenant()
    other = await env.tenant()
    assert (
        await _code(env.ingestion.Erase(ipb.EraseRequest(tenant_id=tenant)))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    bad_id = ipb.EraseRequest(tenant_id=tenant, documents=ipb.DocumentIds(ids=["../etc/passwd"]))
    assert await _code(env.ingestion.Erase(bad_id)) == grpc.StatusCode.INVALID_ARGUMENT
    receipt = await env.erase(ipb.EraseRequest(tenant_id=tenant, data_subject="nobody-at-all"))
    assert list(receipt.document_ids) == []
    foreign = ipb.GetErasureRequest(tenant_id=other, erasure_id=receipt.erasure_id)
    assert await _code(env.ingestion.GetErasure(foreign)) == grpc.StatusCode.NOT_FOUND


async def test_the_cli_erases_and_prints_the_receipt(env: Env) -> None:
    tenant = await env.tenant()
    word = secret()
    doc = (await upload(env.ch, tenant, "cli.txt", _doc(word, "ferries"))).document_id
    await wait_indexed(env.ch, tenant, [doc])
    code, out, err = await run_cli(
        "erase",
        "--tenant",
        tenant,
        "--document",
        doc,
        "--reason",
        "ticket 42",
        "--json",
        endpoint=env.rt.address,
    )
    assert code == 0, err
    receipt = json.loads(out)
    assert receipt["document_ids"] == [doc] and receipt["reason"] == "ticket 42"
    steps = {s["place"]: s for s in receipt["steps"]}
    assert set(steps) == set(EXPECTED_PLACES)
    assert steps["ingestion"]["status"] == "done" and steps["ingestion"]["count"] == 1  # done when it returns
    assert steps["kafka"]["status"] == "done" and "expires" not in steps["kafka"]["detail"]  # in-process bus
    code, out, err = await run_cli(
        "erasure", receipt["erasure_id"], "--tenant", tenant, "--json", endpoint=env.rt.address
    )
    assert code == 0 and json.loads(out)["erasure_id"] == receipt["erasure_id"], err
    code, out, err = await run_cli(
        "erasure", receipt["erasure_id"], "--tenant", tenant, endpoint=env.rt.address
    )
    assert code == 0 and receipt["erasure_id"] in out and "ingestion" in out and "kafka" in out, err
    code, out, err = await run_cli("erasure", uuid.uuid4().hex, "--tenant", tenant, endpoint=env.rt.address)
    assert code == 1 and "NOT_FOUND" in err
    code, _, err = await run_cli("erase", "--tenant", tenant, endpoint=env.rt.address)
    assert code == 2 and "exactly one" in err
