"""Evaluation on the real `all` platform: a dataset sent with the request (RunEvalUpload, what `isthmus
eval PATH` uses), RunEval confined to the service's datasets root, answers asked through the
orchestrator with their contexts and judged by the offline judge."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.testing.client import run_cli
from isthmus_core.testing.eval_platform_conformance import wait_done
from isthmus_evaluation.clients import GrpcEvalPlatform

from .conftest import platform

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ISTHMUS = str(Path(sys.executable).with_name("isthmus"))
CORPUS = [
    {"_id": "glider", "title": "Gliders", "text": "A glider flies without an engine, soaring on thermals."},
    {"_id": "marmot", "title": "Marmots", "text": "Marmots hibernate in burrows through the alpine winter."},
    {"_id": "pelican", "title": "Pelicans", "text": "Pelicans scoop fish with their throat pouch."},
    {"_id": "glacier", "title": "Glaciers", "text": "Glaciers carve U-shaped valleys as they slowly flow."},
    {"_id": "kiln", "title": "Kilns", "text": "A kiln fires clay pots at very high temperatures."},
]
QUERIES = {
    "q1": "how do marmots spend the winter",
    "q2": "pelican throat pouch",
    "q3": "aircraft without an engine",
    "q9": "an unjudged query",
}
QRELS = {"q1": "marmot", "q2": "pelican", "q3": "glider"}


def write_beir(d: Path) -> Path:
    """A tiny BEIR dataset: five documents, three judged queries."""
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in CORPUS))
    (d / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    (d / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{doc}\t1\n" for q, doc in QRELS.items())
    )
    return d


def upload_requests(
    d: Path, name: str, modes: list[str], piece: int = 64, answers: int = 0, judge: str = ""
) -> Iterator[pb.RunEvalUploadRequest]:
    yield pb.RunEvalUploadRequest(
        header=pb.RunEvalUploadHeader(name=name, modes=modes, answers=answers, judge=judge)
    )
    for part, file in (("corpus", "corpus.jsonl"), ("queries", "queries.jsonl"), ("qrels", "qrels/test.tsv")):
        data = (d / file).read_bytes()
        for i in range(0, len(data), piece):
            yield pb.RunEvalUploadRequest(**{part: data[i : i + piece]})


async def report_of(stream: Any) -> pb.EvalReport:
    reports = [ev.report async for ev in stream if ev.WhichOneof("event") == "report"]
    assert len(reports) == 1
    return reports[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("eval")
    root = tmp / "datasets"
    write_beir(root / "tiny")
    write_beir(tmp / "elsewhere" / "tiny")  # outside the root: reachable only by upload
    (root / "escape").symlink_to(tmp / "elsewhere" / "tiny", target_is_directory=True)
    async with (
        platform(tmp / "data", evaluation={"datasets_root": str(root)}) as rt,
        grpc.aio.insecure_channel(rt.address) as ch,
    ):
        yield {"ch": ch, "address": rt.address, "tmp": tmp}


async def test_upload_eval_runs_a_dataset_sent_with_the_request(env: dict[str, Any]) -> None:
    stub = pb_grpc.EvaluationServiceStub(env["ch"])
    d = env["tmp"] / "elsewhere" / "tiny"
    report = await report_of(stub.RunEvalUpload(upload_requests(d, "tiny-upload", ["bm25", "dense"])))
    assert (report.dataset, report.documents, report.queries) == ("tiny-upload", len(CORPUS), len(QRELS))
    assert [m.mode for m in report.modes] == ["bm25", "dense"]
    assert all(m.recall_at_100 == pytest.approx(1.0) for m in report.modes), report
    assert report.modes[0].ndcg_at_10 > 0.9, report  # distinct words: BM25 ranks every answer first
    tenants = await retrieval_pb2_grpc.RetrievalServiceStub(env["ch"]).ListTenants(
        retrieval_pb2.ListTenantsRequest()
    )
    assert report.tenant_id not in {t.tenant_id for t in tenants.tenants}  # the throwaway tenant is gone


async def test_upload_eval_refuses_a_bad_stream_with_the_reason(env: dict[str, Any]) -> None:
    stub = pb_grpc.EvaluationServiceStub(env["ch"])
    d = env["tmp"] / "elsewhere" / "tiny"
    headerless = list(upload_requests(d, "tiny", ["bm25"]))[1:]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await report_of(stub.RunEvalUpload(iter(headerless)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "header" in (err.value.details() or "")


async def test_run_eval_reads_under_the_root_only(env: dict[str, Any]) -> None:
    stub = pb_grpc.EvaluationServiceStub(env["ch"])
    report = await report_of(stub.RunEval(pb.RunEvalRequest(dataset_path="tiny", modes=["bm25"])))
    assert (report.dataset, report.documents) == ("tiny", len(CORPUS))
    outside = str(env["tmp"] / "elsewhere" / "tiny")
    for path, reason in [
        ("../../etc", "'..'"),
        ("../elsewhere/tiny", "'..'"),
        (outside, "absolute"),
        ("/etc", "absolute"),
        ("escape", "outside the datasets root"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await report_of(stub.RunEval(pb.RunEvalRequest(dataset_path=path, modes=["bm25"])))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        assert reason in (err.value.details() or ""), (path, err.value.details())


async def cli(*args: str) -> tuple[int, str, str]:
    return await run_cli(*args)


async def test_cli_eval_uploads_a_local_folder(env: dict[str, Any]) -> None:
    d = env["tmp"] / "elsewhere" / "tiny"  # not under the service's root: only an upload can reach it
    code, out, err = await cli("eval", str(d), "--modes", "bm25", "--json", "--endpoint", env["address"])
    assert code == 0, err[-3000:]
    report = json.loads(out)
    assert report["dataset"] == "tiny" and report["documents"] == len(CORPUS)
    assert [m["mode"] for m in report["modes"]] == ["bm25"]
    # a refusal arrives with its reason, even though the CLI was still sending the files
    code, out, err = await cli("eval", str(d), "--modes", "bm26", "--json", "--endpoint", env["address"])
    assert code != 0 and "INVALID_ARGUMENT" in err and "unknown mode(s) ['bm26']" in err, (out, err)


async def test_eval_platform_asks_and_gets_the_contexts_the_answer_was_made_from(env: dict[str, Any]) -> None:
    platform = GrpcEvalPlatform(env["ch"], env["ch"], env["ch"])
    tenant = parse_tenant_id(f"evalask-{uuid.uuid4().hex[:12]}")
    await platform.create_tenant(tenant)
    try:
        for doc in CORPUS:
            await platform.upload(
                tenant, doc["_id"], f"{doc['_id']}.txt", f"{doc['title']}\n\n{doc['text']}".encode()
            )
        await wait_done(platform, tenant)
        outcome = await platform.ask(tenant, "How do marmots spend the winter?")
        assert not outcome.blocked and outcome.sentences, outcome
        assert outcome.contexts and outcome.contexts[0].document_id == "marmot", outcome.contexts
        for c in outcome.contexts:  # each context is the document's text at its offsets
            doc = next(d for d in CORPUS if d["_id"] == c.document_id)
            assert f"{doc['title']}\n\n{doc['text']}"[c.start : c.end] == c.text
        # every citation points inside a context it names
        by_chunk = {c.chunk_id: c for c in outcome.contexts}
        for s in outcome.sentences:
            for cit in s.citations:
                ctx = by_chunk[cit.chunk_id]
                assert ctx.start <= cit.start < cit.end <= ctx.end
    finally:
        await platform.delete_tenant(tenant)


async def test_upload_eval_judges_answers_with_the_offline_judge(env: dict[str, Any]) -> None:
    """Needs the offline judge (the guardrail's Entail / ScoreRelevance and judges.build_judge)."""
    stub = pb_grpc.EvaluationServiceStub(env["ch"])
    d = env["tmp"] / "elsewhere" / "tiny"
    report = await report_of(
        stub.RunEvalUpload(upload_requests(d, "tiny-answers", ["bm25"], answers=5, judge="offline"))
    )
    a = report.answers
    # three judged queries: all asked (5 > 3), in query-id order
    assert [r.query_id for r in report.answer_results] == ["q1", "q2", "q3"]
    assert a.judge.startswith("offline:") and a.samples + a.blocked == 3, a
    assert dict(a.failure_reasons) == {}, a
    names = {m.name for m in a.metrics}
    assert {"faithfulness", "answer_relevance", "context_precision", "context_recall"} <= names, a
    for m in a.metrics:
        assert 0.0 <= m.mean <= 1.0 and m.n >= 1 and m.failures == 0, m
    for r in report.answer_results:
        assert r.blocked or r.context_documents, r
        assert all(0.0 <= v <= 1.0 for v in r.scores.values()), r
    # the answered queries' texts are in the report
    assert {"q1", "q2", "q3"} <= {q.query_id for q in report.query_texts}
