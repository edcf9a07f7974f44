"""Tenant isolation through the whole platform, on both stores: two tenants hold overlapping content
(the same document ids, the same words) plus one secret each. Search, ask, document replacement, tenant
deletion and an evaluation run for one tenant never return or touch the other's objects.

The Weaviate run uses a real Weaviate 1.32.4 server (native multi-tenancy: one shard per tenant)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao_pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2 as rpb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as rgrpc

from .conftest import platform, upload, wait_indexed

pytestmark = pytest.mark.slow

SHARED = (
    "The glacier observatory records ice thickness every winter. Meltwater flows into the fjord "
    "and the research station logs its temperature."
)
SECRET = {
    "a": "Tenant A's launch code word is PELICAN and the budget is forty million.",
    "b": "Tenant B's launch code word is MARMOT and the budget is ninety million.",
}
MODES = [rpb.SEARCH_MODE_BM25, rpb.SEARCH_MODE_DENSE, rpb.SEARCH_MODE_HYBRID]


@pytest.fixture(params=["embedded", "weaviate"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    retrieval: dict[str, Any] = {"store": request.param}
    if request.param == "weaviate":
        server = request.getfixturevalue("weaviate_server")
        retrieval |= {
            "weaviate_url": server.url,
            "weaviate_grpc_port": server.grpc_port,
            "weaviate_collection": f"IsthmusIso{uuid.uuid4().hex[:8]}",  # this test's own index
        }
    suffix = uuid.uuid4().hex[:6]
    tenants = {"a": f"iso-a-{suffix}", "b": f"iso-b-{suffix}"}
    evaluation = {"datasets_root": str(tmp_path)}  # RunEval reads datasets only under this root
    async with (
        platform(tmp_path, retrieval=retrieval, evaluation=evaluation) as rt,
        grpc.aio.insecure_channel(rt.address) as ch,
    ):
        stub = rgrpc.RetrievalServiceStub(ch)
        for key, tenant in tenants.items():
            await stub.CreateTenant(rpb.CreateTenantRequest(tenant_id=tenant))
            docs = [
                await upload(ch, tenant, "shared.txt", SHARED.encode(), document_id="shared"),
                await upload(ch, tenant, "secret.txt", SECRET[key].encode(), document_id="secret"),
            ]
            await wait_indexed(ch, tenant, [d.document_id for d in docs])
        yield {"ch": ch, "stub": stub, "tenants": tenants, "tmp": tmp_path}


async def _texts(stub: rgrpc.RetrievalServiceStub, tenant: str, query: str) -> list[str]:
    texts = []
    for mode in MODES:
        resp = await stub.Search(rpb.SearchRequest(tenant_id=tenant, query=query, mode=mode, top_k=20))
        texts += [h.context.text for h in resp.hits]
    return texts


async def _count(stub: rgrpc.RetrievalServiceStub, tenant: str) -> int:
    return int((await stub.GetTenant(rpb.GetTenantRequest(tenant_id=tenant))).chunk_count)


async def test_search_ask_replace_eval_and_delete_stay_inside_the_tenant(env: dict[str, Any]) -> None:
    stub, ch = env["stub"], env["ch"]
    a, b = env["tenants"]["a"], env["tenants"]["b"]

    # search: each tenant sees its own secret and never the other's, in every mode
    for tenant, own, other in ((a, "PELICAN", "MARMOT"), (b, "MARMOT", "PELICAN")):
        texts = await _texts(stub, tenant, f"launch code word {other} budget")
        assert any(own in t for t in texts), texts
        assert not any(other in t for t in texts), texts
        shared = await stub.Search(rpb.SearchRequest(tenant_id=tenant, query="glacier meltwater", top_k=20))
        assert [h.context.document_id for h in shared.hits].count("shared") == 1  # no twin from the other

    # ask: citations and answer come from the asking tenant only
    ask = ao_grpc.AgentOrchestratorServiceStub(ch)
    resp = await ask.Ask(ao_pb.AskRequest(tenant_id=a, question="What is the launch code word?"))
    assert resp.citations and {c.document_id for c in resp.citations} <= {"shared", "secret"}
    assert "MARMOT" not in resp.answer
    own_chunks = {
        h.context.chunk_id
        for h in (await stub.Search(rpb.SearchRequest(tenant_id=a, query="launch code", top_k=20))).hits
    }
    assert {c.chunk_id for c in resp.citations} <= own_chunks | {
        h.context.chunk_id
        for h in (await stub.Search(rpb.SearchRequest(tenant_id=a, query="glacier", top_k=20))).hits
    }

    # replacing a document (same id in both tenants) deletes A's old chunks only
    count_b = await _count(stub, b)
    new = await upload(ch, a, "secret.txt", b"Tenant A rotated its code word to HERON.", document_id="secret")
    await wait_indexed(ch, a, [new.document_id])
    texts_a = await _texts(stub, a, "code word")
    assert any("HERON" in t for t in texts_a) and not any("PELICAN" in t for t in texts_a)
    assert await _count(stub, b) == count_b
    assert any("MARMOT" in t for t in await _texts(stub, b, "code word MARMOT"))

    # eval runs in its own throwaway tenant: it neither reads nor changes A or B
    ds = env["tmp"] / "mini"
    (ds / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "", "text": "Pelicans scoop fish with their throat pouch."},
        {"_id": "d2", "title": "", "text": "Marmots hibernate in burrows through the alpine winter."},
    ]
    (ds / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (ds / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "how do marmots spend the winter"})
        + "\n"
        + json.dumps({"_id": "q2", "text": "pelican throat pouch"})
        + "\n"
    )
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td1\t1\n")
    before = {t: await _count(stub, t) for t in (a, b)}
    report = None
    async for ev in evaluation_pb2_grpc.EvaluationServiceStub(ch).RunEval(
        evaluation_pb2.RunEvalRequest(dataset_path=ds.name, modes=["bm25", "dense", "hybrid"])
    ):
        if ev.WhichOneof("event") == "report":
            report = ev.report
    assert report is not None and report.tenant_id not in (a, b)
    assert all(m.ndcg_at_10 == pytest.approx(1.0) for m in report.modes), report
    assert {t: await _count(stub, t) for t in (a, b)} == before
    listed = {t.tenant_id for t in (await stub.ListTenants(rpb.ListTenantsRequest())).tenants}
    assert report.tenant_id not in listed  # the throwaway tenant is gone

    # deleting tenant A leaves B whole
    await stub.DeleteTenant(rpb.DeleteTenantRequest(tenant_id=a))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Search(rpb.SearchRequest(tenant_id=a, query="glacier"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _count(stub, b) == before[b]
    assert any("MARMOT" in t for t in await _texts(stub, b, "launch code MARMOT"))


async def test_document_acls_hold_in_search_and_ask(env: dict[str, Any]) -> None:
    """Inside one tenant: a document uploaded with an ACL is found only by callers naming one of its
    principals, in every search mode and in Ask; documents without an ACL stay visible to everyone."""
    from isthmus.common.v1 import common_pb2

    stub, ch = env["stub"], env["ch"]
    a = env["tenants"]["a"]
    doc = await upload(
        ch,
        a,
        "board.txt",
        b"The board approved the acquisition of the glacier observatory for ninety million.",
        document_id="board-minutes",
        metadata={"acl": "board, legal"},
    )
    await wait_indexed(ch, a, [doc.document_id])
    query = "board approved acquisition glacier observatory"

    async def docs(access: common_pb2.AccessScope | None) -> set[str]:
        seen: set[str] = set()
        for mode in MODES:
            req = rpb.SearchRequest(tenant_id=a, query=query, mode=mode, top_k=20, access=access)
            seen |= {h.context.document_id for h in (await stub.Search(req)).hits}
        return seen

    assert "board-minutes" not in await docs(None)  # no scope is no principals (no "trusted" caller)
    assert "board-minutes" in await docs(common_pb2.AccessScope(principals=["legal"]))
    outsider = await docs(common_pb2.AccessScope(principals=["eng", "alice"]))
    assert "board-minutes" not in outsider and "shared" in outsider  # public documents still found
    assert "board-minutes" not in await docs(common_pb2.AccessScope())

    ask = ao_grpc.AgentOrchestratorServiceStub(ch)
    question = "What did the board approve for the glacier observatory?"
    resp = await ask.Ask(
        ao_pb.AskRequest(tenant_id=a, question=question, access=common_pb2.AccessScope(principals=["eng"]))
    )
    assert "board-minutes" not in {c.document_id for c in resp.citations}
    assert "ninety million" not in resp.answer
    resp = await ask.Ask(
        ao_pb.AskRequest(tenant_id=a, question=question, access=common_pb2.AccessScope(principals=["board"]))
    )
    assert "board-minutes" in {c.document_id for c in resp.citations}
