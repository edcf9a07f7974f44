"""The evaluation servicer's RunEval / RunEvalUpload edges, on a runner whose platform clients are fakes:
RunEval reads only under the configured root; RunEvalUpload parses the streamed files in memory."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from isthmus_core.ports.eval_platform import (
    AskedCitation,
    AskedContext,
    AskedSentence,
    AskOutcome,
    DocumentHit,
    EvalPlatform,
    IndexProgress,
)
from isthmus_core.ports.judge import Entailment, Judge, JudgeFailed
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.store.port import SearchMode
from isthmus_core.testing.eval_platform_conformance import EvalPlatformConformance
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.datasets import BeirDataset, CorpusDoc
from isthmus_evaluation.online_store import OnlineStore
from isthmus_evaluation.report import ModeReport, Passage, QueryResult, QueryText
from isthmus_evaluation.runner import EvalRunner, shown_queries, texts_and_passages, worst_queries

CORPUS = [
    {"_id": "d1", "title": "Pelicans", "text": "Pelicans scoop fish with their throat pouch."},
    {"_id": "d2", "title": "Marmots", "text": "Marmots hibernate in burrows through the winter."},
    {"_id": "d3", "title": "", "text": "Glaciers carve valleys."},
]
QUERIES = [{"_id": "q1", "text": "marmot winter"}, {"_id": "q2", "text": "pelican pouch"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td1\t1\n"


def dataset_bytes() -> dict[str, bytes]:
    return {
        "corpus": "".join(json.dumps(d) + "\n" for d in CORPUS).encode(),
        "queries": "".join(json.dumps(q) + "\n" for q in QUERIES).encode(),
        "qrels": QRELS.encode(),
    }


def write_dataset(d: Path) -> Path:
    (d / "qrels").mkdir(parents=True)
    files = dataset_bytes()
    (d / "corpus.jsonl").write_bytes(files["corpus"])
    (d / "queries.jsonl").write_bytes(files["queries"])
    (d / "qrels" / "test.tsv").write_bytes(files["qrels"])
    return d


class FakePlatform:
    """An :class:`EvalPlatform` in dicts (it passes the port's conformance suite): uploads are indexed at
        once, a search ranks the documents by the words they share with the query (BM25: only those sharing
    one; dense and hybrid: all), best first."""

    def __init__(self) -> None:
        self.tenants: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []
        self.searches: list[tuple[SearchMode, bool]] = []
        self.asked: list[str] = []
        #: questions holding one of these are blocked; asking one of ``unavailable`` fails
        self.block: set[str] = set()
        self.unavailable: set[str] = set()

    def _tenant(self, tenant_id: str) -> dict[str, str]:
        if tenant_id not in self.tenants:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return self.tenants[tenant_id]

    async def create_tenant(self, tenant_id: TenantId) -> None:
        self.calls.append("create")
        if tenant_id in self.tenants:
            raise AlreadyExists(f"tenant {tenant_id!r} already exists")
        self.tenants[tenant_id] = {}

    async def delete_tenant(self, tenant_id: TenantId) -> None:
        self.calls.append("delete")
        self._tenant(tenant_id)
        del self.tenants[tenant_id]

    async def upload(self, tenant_id: TenantId, document_id: str, filename: str, data: bytes) -> None:
        self._tenant(tenant_id)[document_id] = data.decode()

    async def progress(self, tenant_id: TenantId) -> IndexProgress:
        n = len(self._tenant(tenant_id))
        return IndexProgress(n, 0, n)

    async def search(
        self, tenant_id: TenantId, query: str, mode: SearchMode, top_k: int, *, rerank: bool = False
    ) -> list[DocumentHit]:
        self.searches.append((mode, rerank))
        words = _words(query)
        hits = [
            DocumentHit(doc_id, float(len(words & _words(text))))
            for doc_id, text in self._tenant(tenant_id).items()
        ]
        if mode is SearchMode.BM25:  # lexical: only documents sharing a word; "vector": every document
            hits = [h for h in hits if h.score > 0]
        return sorted(hits, key=lambda h: -h.score)[:top_k]

    async def ask(self, tenant_id: TenantId, question: str) -> AskOutcome:
        """An extractive answer: the last paragraph (the body) of the best document, citing it; the two
        best documents as contexts."""
        self.asked.append(question)
        if _words(question) & self.unavailable:
            raise Unavailable("the orchestrator is down")
        docs = self._tenant(tenant_id)
        if _words(question) & self.block:
            return AskOutcome(answer_id="a", answer="Your question was blocked", blocked=True)
        ranked = sorted(docs, key=lambda d: (-len(_words(question) & _words(docs[d])), d))[:2]
        contexts = tuple(AskedContext(f"{d}#0", d, 0, len(docs[d]), docs[d]) for d in ranked)
        best = docs[ranked[0]]
        body = best.split("\n\n")[-1]
        start = best.rindex(body)
        citation = AskedCitation(f"{ranked[0]}#0", ranked[0], start, start + len(body))
        return AskOutcome("a", body, (AskedSentence(body, (citation,)),), contexts, latency_ms=1.0)


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"\w+", text.lower())}


class TestFakePlatform(EvalPlatformConformance):
    @pytest.fixture
    def eval_platform(self) -> EvalPlatform:
        return FakePlatform()


@pytest.fixture
def fake() -> FakePlatform:
    return FakePlatform()


class LexicalJudge:
    """Deterministic: entails when every word of the hypothesis is in the premise; relevance = the share of
    the query's words in the passage (words as the fake platform reads them: lower case, no plural s)."""

    def __init__(self, kind: str = "offline", fail: str = "") -> None:
        self.name = f"{kind}:lexical"
        self._fail = fail

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        if self._fail:
            raise JudgeFailed(self._fail, "no answer from the judge")
        return [
            Entailment(1.0, 0.0, 0.0) if _words(h) <= _words(p) else Entailment(0.0, 1.0, 0.0)
            for p, h in pairs
        ]

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        if self._fail:
            raise JudgeFailed(self._fail, "no answer from the judge")
        q = _words(query)
        return [len(q & _words(p)) / len(q) for p in passages]


def servicer(
    fake: FakePlatform,
    root: Path | None = None,
    max_upload_bytes: int = 1 << 20,
    judges: Callable[[str], Judge] | None = None,
) -> EvaluationServicer:
    if judges is None:
        runner = EvalRunner(fake, poll_interval_s=0.0)
    else:
        runner = EvalRunner(fake, poll_interval_s=0.0, judge_factory=judges, default_judge="llm")
    online = OnlineStore(Path(tempfile.mkdtemp()) / "online.sqlite")
    return EvaluationServicer(runner, online, InMemoryTenantDirectory(), root, max_upload_bytes)


async def events(stream: AsyncIterator[pb.EvalEvent]) -> list[pb.EvalEvent]:
    return [ev async for ev in stream]


def report_of(evs: list[pb.EvalEvent]) -> pb.EvalReport:
    [report] = [ev.report for ev in evs if ev.WhichOneof("event") == "report"]
    return report


async def requests(*parts: pb.RunEvalUploadRequest) -> AsyncIterator[pb.RunEvalUploadRequest]:
    for p in parts:
        yield p


def header(name: str = "tiny", modes: Iterable[str] = ("bm25",)) -> pb.RunEvalUploadRequest:
    return pb.RunEvalUploadRequest(header=pb.RunEvalUploadHeader(name=name, modes=list(modes)))


def pieces(size: int = 7) -> list[pb.RunEvalUploadRequest]:
    out = []
    for part, data in dataset_bytes().items():
        out += [pb.RunEvalUploadRequest(**{part: data[i : i + size]}) for i in range(0, len(data), size)]
    return out


# ------------------------------------------------------------------------------------------ RunEval


async def test_run_eval_reads_a_dataset_under_the_root(fake: FakePlatform, tmp_path: Path) -> None:
    write_dataset(tmp_path / "root" / "tiny")
    evs = await events(
        servicer(fake, tmp_path / "root").RunEval(pb.RunEvalRequest(dataset_path="tiny"), None)
    )
    report = report_of(evs)
    assert (report.dataset, report.documents, report.queries) == ("tiny", 3, 2)
    assert report.modes[0].ndcg_at_10 == pytest.approx(1.0)
    assert fake.calls == ["create", "delete"] and fake.tenants == {}


@pytest.mark.parametrize("path", ["../../etc", "../outside", "/etc", "tiny/../../outside"])
async def test_run_eval_refuses_paths_leaving_the_root(fake: FakePlatform, tmp_path: Path, path: str) -> None:
    write_dataset(tmp_path / "root" / "tiny")
    write_dataset(tmp_path / "outside")
    with pytest.raises(InvalidArgument, match="dataset_path"):
        await events(servicer(fake, tmp_path / "root").RunEval(pb.RunEvalRequest(dataset_path=path), None))
    assert fake.calls == []  # refused before any tenant is made


async def test_run_eval_without_a_root_is_a_failed_precondition(fake: FakePlatform, tmp_path: Path) -> None:
    ds = write_dataset(tmp_path / "tiny")
    with pytest.raises(FailedPrecondition, match="datasets_root"):
        await events(servicer(fake).RunEval(pb.RunEvalRequest(dataset_path=str(ds)), None))
    assert fake.calls == []


# ------------------------------------------------------------------------------------ RunEvalUpload


async def test_run_eval_upload_parses_the_streamed_files(fake: FakePlatform) -> None:
    evs = await events(servicer(fake).RunEvalUpload(requests(header("mini"), *pieces()), None))
    report = report_of(evs)
    assert (report.dataset, report.documents, report.queries) == ("mini", 3, 2)
    assert report.tenant_id.startswith("eval-mini-")
    assert report.modes[0].mode == "bm25" and report.modes[0].ndcg_at_10 == pytest.approx(1.0)
    assert fake.tenants == {}  # the throwaway tenant is gone


async def test_each_mode_searches_in_its_search_mode_and_says_whether_it_reranks(fake: FakePlatform) -> None:
    modes = ["bm25", "dense", "hybrid", "hybrid+rerank"]
    evs = await events(servicer(fake).RunEvalUpload(requests(header("mini", modes), *pieces()), None))
    assert [m.mode for m in report_of(evs).modes] == modes
    per_query = len(QUERIES)
    assert fake.searches == [
        *[(SearchMode.BM25, False)] * per_query,
        *[(SearchMode.DENSE, False)] * per_query,
        *[(SearchMode.HYBRID, False)] * per_query,
        *[(SearchMode.HYBRID, True)] * per_query,
    ]


async def test_run_eval_upload_keeps_the_tenant_when_asked(fake: FakePlatform) -> None:
    keep = pb.RunEvalUploadRequest(
        header=pb.RunEvalUploadHeader(name="mini", modes=["bm25"], keep_tenant=True)
    )
    report = report_of(await events(servicer(fake).RunEvalUpload(requests(keep, *pieces()), None)))
    assert set(fake.tenants) == {report.tenant_id} and len(fake.tenants[report.tenant_id]) == 3


@pytest.mark.parametrize(
    ("parts", "error", "message"),
    [
        (lambda: [], InvalidArgument, "empty RunEvalUpload stream"),
        (lambda: [*pieces(), header()], InvalidArgument, "first message of RunEvalUpload must be the header"),
        (lambda: [header(), header(), *pieces()], InvalidArgument, "two headers"),
        (lambda: [header(modes=["bm26"]), *pieces()], InvalidArgument, r"unknown mode\(s\) \['bm26'\]"),
        (lambda: [header(name="../etc"), *pieces()], InvalidArgument, "invalid dataset name"),
        (lambda: [header(), *pieces()[:3]], InvalidArgument, "no queries, qrels bytes"),
    ],
    ids=["empty", "no-header-first", "two-headers", "bad-mode", "bad-name", "missing-files"],
)
async def test_run_eval_upload_refuses_malformed_streams(
    fake: FakePlatform, parts: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await events(servicer(fake).RunEvalUpload(requests(*parts()), None))
    assert fake.calls == []


async def test_run_eval_upload_over_the_cap_is_resource_exhausted(fake: FakePlatform) -> None:
    total = sum(len(b) for b in dataset_bytes().values())
    with pytest.raises(ResourceExhausted, match="max_upload_bytes"):
        await events(
            servicer(fake, max_upload_bytes=total - 1).RunEvalUpload(requests(header(), *pieces()), None)
        )
    assert fake.calls == []
    assert report_of(
        await events(
            servicer(fake, max_upload_bytes=total).RunEvalUpload(requests(header(), *pieces()), None)
        )
    )


# ------------------------------------------------------------------------------ reports and answers


def answers_header(
    answers: int, judge: str = "", modes: Iterable[str] = ("bm25",)
) -> pb.RunEvalUploadRequest:
    return pb.RunEvalUploadRequest(
        header=pb.RunEvalUploadHeader(name="mini", modes=list(modes), answers=answers, judge=judge)
    )


async def test_each_judged_query_is_reported_with_its_scores_and_first_documents(fake: FakePlatform) -> None:
    report = report_of(await events(servicer(fake).RunEvalUpload(requests(header("mini"), *pieces()), None)))
    [mode] = report.modes
    # each query's relevant document ranks first: AP = 1 for both, MAP@100 = 1
    assert mode.map_at_100 == pytest.approx(1.0)
    assert [q.query_id for q in mode.per_query] == ["q1", "q2"]
    q1 = mode.per_query[0]
    assert (q1.ndcg_at_10, q1.recall_at_100, q1.mrr_at_10, q1.map_at_100) == pytest.approx((1, 1, 1, 1))
    # BM25 in the fake: only d2 shares a word ("marmot", "winter": 2) with q1
    assert [(d.document_id, d.score) for d in q1.top] == [("d2", 2.0)]
    assert q1.latency_ms >= 0.0
    # both queries are among the worst 10: their texts and qrels, and the passages of their first and
    # relevant documents (title apart, body cut to 600 characters)
    assert [(q.query_id, q.text, dict(q.relevant)) for q in report.query_texts] == [
        ("q1", "marmot winter", {"d2": 1}),
        ("q2", "pelican pouch", {"d1": 1}),
    ]
    assert {(p.document_id, p.title, p.text) for p in report.passages} == {
        ("d2", "Marmots", "Marmots hibernate in burrows through the winter."),
        ("d1", "Pelicans", "Pelicans scoop fish with their throat pouch."),
    }
    assert not report.HasField("answers") and list(report.answer_results) == []


async def test_answers_are_asked_in_query_id_order_judged_and_aggregated(fake: FakePlatform) -> None:
    fake.block = {"pelican"}  # q2 is blocked: counted, not judged
    kinds: list[str] = []

    def judges(kind: str) -> Judge:
        kinds.append(kind)
        return LexicalJudge(kind)

    evs = await events(
        servicer(fake, judges=judges).RunEvalUpload(requests(answers_header(5), *pieces()), None)
    )
    report = report_of(evs)
    assert kinds == ["llm"]  # judge "" = the service's default judge
    assert fake.asked == ["marmot winter", "pelican pouch"]  # every query (5 > 2), in query-id order
    assert [ev.progress.phase for ev in evs if ev.WhichOneof("event") == "progress"][-2:] == ["answer"] * 2
    a = report.answers
    assert (a.samples, a.blocked, a.judge, dict(a.failure_reasons)) == (1, 1, "llm:lexical", {})
    # q1's answer "Marmots hibernate in burrows through the winter." cites itself in d2: faithful (1/1);
    # it holds both of the question's words (relevance 2/2); contexts [d2, d1] with qrels {d2: 1}:
    # AP = 1/1 = 1; relevant {d2} all present: recall 1
    assert {m.name: (m.mean, m.n, m.failures) for m in a.metrics} == {
        "faithfulness": (1.0, 1, 0),
        "answer_relevance": (1.0, 1, 0),
        "context_precision": (1.0, 1, 0),
        "context_recall": (1.0, 1, 0),
    }
    r1, r2 = report.answer_results
    assert (r1.query_id, r1.answer, list(r1.context_documents), r1.blocked) == (
        "q1",
        "Marmots hibernate in burrows through the winter.",
        ["d2", "d1"],
        False,
    )
    assert dict(r1.scores)["context_precision"] == 1.0
    assert (r2.query_id, r2.blocked, dict(r2.scores), r2.failure) == ("q2", True, {}, "")
    assert a.latency_p95_ms >= a.latency_p50_ms >= 0.0


async def test_only_the_first_n_queries_are_asked_with_the_judge_named(fake: FakePlatform) -> None:
    report = report_of(
        await events(
            servicer(fake, judges=LexicalJudge).RunEvalUpload(
                requests(answers_header(1, "offline"), *pieces()), None
            )
        )
    )
    assert fake.asked == ["marmot winter"] and report.answers.judge == "offline:lexical"
    assert [r.query_id for r in report.answer_results] == ["q1"]


async def test_judge_and_ask_failures_are_counted_with_their_reasons_never_scored(fake: FakePlatform) -> None:
    fake.unavailable = {"pelican"}  # asking q2 fails; the judge fails on q1
    evs = await events(
        servicer(fake, judges=lambda kind: LexicalJudge(kind, fail="timeout")).RunEvalUpload(
            requests(answers_header(2), *pieces()), None
        )
    )
    a = report_of(evs).answers
    assert (a.samples, a.blocked, dict(a.failure_reasons)) == (2, 0, {"timeout": 1, "ask_failed": 1})
    assert list(a.metrics) == []  # no sample scored: no mean of nothing, no zero
    r1, r2 = report_of(evs).answer_results
    assert (r1.failure, r2.failure) == ("timeout", "ask_failed")
    assert "no answer from the judge" in r1.failure_detail and "orchestrator is down" in r2.failure_detail


@pytest.mark.parametrize(
    ("answers", "judge", "message"),
    [(-1, "", "answers must be >= 0"), (2, "gpt", "unknown judge 'gpt'")],
)
async def test_bad_answer_requests_are_invalid_before_any_tenant(
    fake: FakePlatform, tmp_path: Path, answers: int, judge: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await events(
            servicer(fake, judges=LexicalJudge).RunEvalUpload(
                requests(answers_header(answers, judge), *pieces()), None
            )
        )
    write_dataset(tmp_path / "root" / "tiny")
    req = pb.RunEvalRequest(dataset_path="tiny", answers=answers, judge=judge)
    with pytest.raises(InvalidArgument, match=message):
        await events(servicer(fake, tmp_path / "root", judges=LexicalJudge).RunEval(req, None))
    assert fake.calls == []


async def test_answers_without_a_judge_are_a_failed_precondition_before_any_tenant(
    fake: FakePlatform,
) -> None:
    with pytest.raises(FailedPrecondition, match="no judge"):
        await events(servicer(fake).RunEvalUpload(requests(answers_header(1), *pieces()), None))
    assert fake.calls == [] and fake.asked == []


def test_the_worst_queries_of_a_mode_by_ndcg_ties_by_id() -> None:
    per_query = [
        QueryResult(
            f"q{i:02d}", ndcg_at_10=(i % 4) / 4, recall_at_100=0, mrr_at_10=0, map_at_100=0, latency_ms=0
        )
        for i in range(12)
    ]
    mode = ModeReport("bm25", 0, 0, 0, 0, 0, per_query=per_query)
    # nDCG 0: q00 q04 q08; 0.25: q01 q05 q09; 0.5: q02 q06 q10; 0.75: q03 q07 q11 -> the first 10
    assert [q.query_id for q in worst_queries(mode)] == [
        "q00",
        "q04",
        "q08",
        "q01",
        "q05",
        "q09",
        "q02",
        "q06",
        "q10",
        "q03",
    ]
    assert shown_queries([mode], ["q11", "q00"])[-1] == "q11"


def test_passages_are_cut_to_600_characters() -> None:
    ds = BeirDataset("x", {"d": CorpusDoc("T", "w " * 400)}, {"q": "w"}, {"q": {"d": 1}})
    texts, passages = texts_and_passages(ds, ["q"], [], [])
    assert texts == [QueryText("q", "w", {"d": 1})]
    assert passages == [Passage("d", "T", ("w " * 400)[:600])] and len(passages[0].text) == 600
