"""``RunEval`` / ``RunEvalUpload``: ingest a BEIR dataset for a throwaway tenant, run its queries per
mode, score them.

The runner is given a loaded dataset (read under the datasets root, or parsed from uploaded bytes: see
:mod:`isthmus_evaluation.datasets`) and talks to the platform only through the
:class:`~isthmus_core.ports.eval_platform.EvalPlatform` port (the gRPC client of
:mod:`isthmus_evaluation.clients` in the module), so it measures exactly what users get.

Each mode reports every judged query (its scores, latency and first 10 documents). The report carries the
text of the queries a person reads about — the :data:`WORST_QUERIES` worst per mode by nDCG@10 (ties: by
query id) and every answered one — and the passages shown with them (their first :data:`PASSAGE_TOP`
documents and their relevant ones, each cut to :data:`PASSAGE_CHARS` characters).

With ``answers = N > 0`` the first N queries in query-id order are asked through the orchestrator
(:meth:`EvalPlatform.ask`, with the contexts the answer was made from) and judged
(:mod:`isthmus_evaluation.rag_metrics`, the query's qrels attached), ``judge_concurrency`` answers at
once. A blocked answer is counted (``AnswerMetrics.blocked``), not judged; a failed ask or judge call
fails that answer with its reason (counted in ``failure_reasons``), never the run.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument, IsthmusError, Unavailable
from isthmus_core.ports.eval_platform import AskOutcome, EvalPlatform
from isthmus_core.ports.judge import Judge
from isthmus_core.store.port import SearchMode
from isthmus_evaluation.datasets import BeirDataset, CorpusDoc, doc_text
from isthmus_evaluation.metrics import (
    MAP_AT_100,
    MRR_AT_10,
    NDCG_AT_10,
    RECALL_AT_100,
    chunk_hits_to_doc_run,
    evaluate_run,
    percentile,
)
from isthmus_evaluation.rag_metrics import (
    RagSample,
    SampleCitation,
    SampleContext,
    SampleScores,
    SampleSentence,
    aggregate,
    score_sample,
)
from isthmus_evaluation.report import (
    AnswerMetrics,
    AnswerResult,
    EvalReport,
    MetricValue,
    ModeReport,
    Passage,
    QueryResult,
    QueryText,
)

#: eval mode → (search mode, rerank); every mode says whether it reranks, whatever the service default
SEARCHES: Mapping[str, tuple[SearchMode, bool]] = {
    "bm25": (SearchMode.BM25, False),
    "dense": (SearchMode.DENSE, False),
    "hybrid": (SearchMode.HYBRID, False),
    "hybrid+rerank": (SearchMode.HYBRID, True),
}
MODES = tuple(SEARCHES)
#: the judges an answer can be judged by
JUDGES = ("offline", "llm")
#: documents kept per query in ``QueryResult.top``
TOP_DOCS = 10
#: worst queries per mode (by nDCG@10) whose text and passages the report carries
WORST_QUERIES = 10
#: of each such query, its first documents shown as passages (besides its relevant ones)
PASSAGE_TOP = 5
#: a passage's text is cut to this many characters
PASSAGE_CHARS = 600
#: the failure reason of an answer whose ask failed (the platform's error, not the judge's)
ASK_FAILED = "ask_failed"

#: a judge by kind ("offline" or "llm"): the module's is ``judges.build_judge`` over its settings
JudgeFactory = Callable[[str], Judge]


def eval_tenant_id(dataset: str) -> TenantId:
    """A fresh throwaway tenant named after the dataset, ``eval-<name>-<8 hex>``: the name folded to the
    tenant id alphabet (a directory name may hold dots, spaces, capitals...), then parsed."""
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")[:40].strip("-")
    return parse_tenant_id("-".join(p for p in ("eval", slug, uuid.uuid4().hex[:8]) if p))


@dataclass(frozen=True, slots=True)
class EvalProgress:
    phase: str
    done: int
    total: int


def check_modes(modes: Sequence[str]) -> list[str]:
    """The modes to run (all when empty), or :class:`InvalidArgument` naming the unknown ones."""
    chosen = list(modes) or list(MODES)
    bad = [m for m in chosen if m not in MODES]
    if bad:
        raise InvalidArgument(f"unknown mode(s) {bad}; choose from {list(MODES)}")
    return chosen


def check_answers(answers: int, judge: str, default_judge: str = "offline") -> str:
    """The judge kind of a run (``""``: ``default_judge``), or :class:`InvalidArgument` for a negative
    number of answers or an unknown judge."""
    if answers < 0:
        raise InvalidArgument(f"answers must be >= 0 (0 = no answers), got {answers}")
    kind = judge or default_judge
    if kind not in JUDGES:
        raise InvalidArgument(f"unknown judge {judge!r}; choose from {list(JUDGES)}")
    return kind


def _no_judge(kind: str) -> Judge:
    raise FailedPrecondition(f"no judge is available in this evaluation service (asked for {kind!r})")


class EvalRunner:
    def __init__(
        self,
        platform: EvalPlatform,
        *,
        upload_concurrency: int = 8,
        search_concurrency: int = 4,
        index_timeout_s: float = 3600.0,
        top_k: int = 100,
        poll_interval_s: float = 0.5,
        judge_factory: JudgeFactory = _no_judge,
        judge_concurrency: int = 2,
        default_judge: str = "offline",
    ) -> None:
        self._platform = platform
        self._up = upload_concurrency
        self._sq = search_concurrency
        self._timeout = index_timeout_s
        self._k = top_k
        self._poll = poll_interval_s
        self._judge_factory = judge_factory
        self._jc = judge_concurrency
        self.default_judge = default_judge

    async def run(
        self,
        ds: BeirDataset,
        modes: Sequence[str] = (),
        max_queries: int = 0,
        keep_tenant: bool = False,
        *,
        answers: int = 0,
        judge: str = "",
    ) -> AsyncIterator[EvalProgress | EvalReport]:
        modes = check_modes(modes)
        kind = check_answers(answers, judge, self.default_judge)
        queries = sorted(ds.queries.items())
        if max_queries > 0:
            queries = queries[:max_queries]
        qrels = {qid: ds.qrels[qid] for qid, _ in queries}
        judge_ = self._judge_factory(kind) if answers > 0 else None  # before any work: fail fast
        tenant = eval_tenant_id(ds.name)
        await self._platform.create_tenant(tenant)
        try:
            t0 = time.perf_counter()
            async for p in self._ingest(tenant, ds):
                yield p
            ingest_s = time.perf_counter() - t0
            reports = []
            for mode in modes:
                async for item in self._search_mode(tenant, mode, queries, qrels):
                    if isinstance(item, ModeReport):
                        reports.append(item)
                    else:
                        yield item
            answer_metrics: AnswerMetrics | None = None
            answer_results: list[AnswerResult] = []
            if judge_ is not None:
                asked = queries[:answers]
                async for a in self._answers(tenant, judge_, asked, qrels):
                    if isinstance(a, EvalProgress):
                        yield a
                    else:
                        answer_metrics, answer_results = a
            shown = shown_queries(reports, [r.query_id for r in answer_results])
            query_texts, passages = texts_and_passages(ds, shown, reports, answer_results)
            yield EvalReport(
                dataset=ds.name,
                documents=len(ds.corpus),
                queries=len(queries),
                ingest_seconds=ingest_s,
                tenant_id=tenant,
                modes=reports,
                answers=answer_metrics,
                answer_results=answer_results,
                query_texts=query_texts,
                passages=passages,
            )
        finally:
            if not keep_tenant:
                await self._platform.delete_tenant(tenant)

    async def _answers(
        self,
        tenant: TenantId,
        judge: Judge,
        queries: Sequence[tuple[str, str]],
        qrels: Mapping[str, Mapping[str, int]],
    ) -> AsyncIterator[EvalProgress | tuple[AnswerMetrics, list[AnswerResult]]]:
        sem = asyncio.Semaphore(self._jc)

        async def one(qid: str, text: str) -> tuple[AnswerResult, SampleScores | None]:
            async with sem:
                t0 = time.perf_counter()
                try:
                    outcome = await self._platform.ask(tenant, text)
                except IsthmusError as exc:
                    latency = (time.perf_counter() - t0) * 1000
                    failed = SampleScores(failure=ASK_FAILED, detail=str(exc))
                    return _result(qid, text, None, failed, latency), failed
                latency = (time.perf_counter() - t0) * 1000
                if outcome.blocked:
                    return _result(qid, text, outcome, None, latency), None
                scores = await score_sample(sample_of(text, outcome, qrels.get(qid)), judge, tenant)
                return _result(qid, text, outcome, scores, latency), scores

        tasks = [asyncio.create_task(one(qid, text)) for qid, text in queries]
        try:
            for n, fut in enumerate(asyncio.as_completed(tasks), 1):
                await fut
                yield EvalProgress("answer", n, len(tasks))
        finally:
            for t in tasks:
                t.cancel()
        done = [t.result() for t in tasks]  # query-id order
        results = [r for r, _ in done]
        judged = [s for _, s in done if s is not None]
        agg = aggregate(judged)
        # the answers' latencies (an ask that failed has none worth reporting)
        latencies = [r.latency_ms for r in results if r.failure != ASK_FAILED]
        yield (
            AnswerMetrics(
                samples=agg.samples,
                metrics=[MetricValue(name, m.mean, m.n, m.failures) for name, m in agg.metrics.items()],
                failure_reasons=dict(agg.failure_reasons),
                judge=judge.name,
                blocked=sum(r.blocked for r in results),
                latency_p50_ms=percentile(latencies, 50) if latencies else 0.0,
                latency_p95_ms=percentile(latencies, 95) if latencies else 0.0,
            ),
            results,
        )

    async def _search_mode(
        self,
        tenant: TenantId,
        mode: str,
        queries: Sequence[tuple[str, str]],
        qrels: dict[str, dict[str, int]],
    ) -> AsyncIterator[EvalProgress | ModeReport]:
        run: dict[str, dict[str, float]] = {}
        latency: dict[str, float] = {}
        sem = asyncio.Semaphore(self._sq)
        search_mode, rerank = SEARCHES[mode]

        async def one(qid: str, text: str) -> None:
            async with sem:
                q0 = time.perf_counter()
                hits = await self._platform.search(tenant, text, search_mode, self._k, rerank=rerank)
                latency[qid] = (time.perf_counter() - q0) * 1000
            run[qid] = chunk_hits_to_doc_run(hits)

        tasks = [asyncio.create_task(one(qid, text)) for qid, text in queries]
        try:
            for n, fut in enumerate(asyncio.as_completed(tasks), 1):
                await fut
                if n % 25 == 0 or n == len(queries):
                    yield EvalProgress(f"search:{mode}", n, len(queries))
        finally:
            for t in tasks:
                t.cancel()
        m = evaluate_run(qrels, run)
        latencies = list(latency.values())
        per_query = [
            QueryResult(
                query_id=qid,
                ndcg_at_10=m.per_query[qid][NDCG_AT_10],
                recall_at_100=m.per_query[qid][RECALL_AT_100],
                mrr_at_10=m.per_query[qid][MRR_AT_10],
                map_at_100=m.per_query[qid][MAP_AT_100],
                latency_ms=latency.get(qid, 0.0),
                top=list(run.get(qid, {}).items())[:TOP_DOCS],
            )
            for qid, _ in queries
        ]
        yield ModeReport(
            mode=mode,
            ndcg_at_10=m.ndcg_at_10,
            recall_at_100=m.recall_at_100,
            mrr_at_10=m.mrr_at_10,
            latency_p50_ms=percentile(latencies, 50) if latencies else 0.0,
            latency_p95_ms=percentile(latencies, 95) if latencies else 0.0,
            map_at_100=m.map_at_100,
            per_query=per_query,
        )

    async def _ingest(self, tenant: TenantId, ds: BeirDataset) -> AsyncIterator[EvalProgress]:
        corpus = ds.corpus
        sem = asyncio.Semaphore(self._up)
        uploaded = 0

        async def up(doc_id: str, doc: CorpusDoc) -> None:
            nonlocal uploaded
            async with sem:
                await self._platform.upload(tenant, doc_id, f"{doc_id}.txt", doc_text(doc).encode())
            uploaded += 1

        # documents with no text at all (two in Cranfield) cannot be indexed: they stay unretrievable,
        # which is also how BEIR's own evaluation treats them
        docs = {i: d for i, d in corpus.items() if doc_text(d).strip()}
        total = len(docs)
        tasks = [asyncio.create_task(up(i, d)) for i, d in docs.items()]
        try:
            for fut in asyncio.as_completed(tasks):
                await fut
                if uploaded % 100 == 0 or uploaded == total:
                    yield EvalProgress("upload", uploaded, total)
        finally:
            for t in tasks:
                t.cancel()
        deadline = time.monotonic() + self._timeout
        while True:  # bounded by the deadline
            state = await self._platform.progress(tenant)
            yield EvalProgress("index", state.indexed + state.failed, state.total)
            if state.done:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"corpus not indexed within {self._timeout:.0f}s "
                    f"({state.indexed}/{state.total} documents)"
                )
            await asyncio.sleep(self._poll)


# ---- pure helpers: samples, results, the queries and passages a report shows ---------------------------


def sample_of(question: str, outcome: AskOutcome, qrels: Mapping[str, int] | None) -> RagSample:
    """An answer as :func:`~isthmus_evaluation.rag_metrics.score_sample` judges it."""
    return RagSample(
        question=question,
        answer=outcome.answer,
        sentences=tuple(
            SampleSentence(s.text, tuple(SampleCitation(c.chunk_id, c.start, c.end) for c in s.citations))
            for s in outcome.sentences
        ),
        contexts=tuple(SampleContext(c.chunk_id, c.document_id, c.start, c.text) for c in outcome.contexts),
        qrels=dict(qrels) if qrels is not None else None,
    )


def _result(
    qid: str, question: str, outcome: AskOutcome | None, scores: SampleScores | None, latency_ms: float
) -> AnswerResult:
    return AnswerResult(
        query_id=qid,
        question=question,
        answer=outcome.answer if outcome else "",
        scores=dict(scores.scores) if scores else {},
        failure=(scores.failure or "") if scores else "",
        failure_detail=scores.detail if scores and scores.failure else "",
        blocked=outcome.blocked if outcome else False,
        latency_ms=latency_ms,
        context_documents=[c.document_id for c in outcome.contexts] if outcome else [],
    )


def worst_queries(mode: ModeReport, n: int = WORST_QUERIES) -> list[QueryResult]:
    """The ``n`` queries of ``mode`` with the lowest nDCG@10 (ties: by query id)."""
    return sorted(mode.per_query, key=lambda q: (q.ndcg_at_10, q.query_id))[:n]


def shown_queries(modes: Sequence[ModeReport], answered: Sequence[str]) -> list[str]:
    """The query ids a report shows: the worst of each mode, then the answered ones, each once, in order."""
    out: dict[str, None] = {}
    for mode in modes:
        out.update((q.query_id, None) for q in worst_queries(mode))
    out.update((qid, None) for qid in answered)
    return list(out)


def texts_and_passages(
    ds: BeirDataset, shown: Sequence[str], modes: Sequence[ModeReport], answers: Sequence[AnswerResult]
) -> tuple[list[QueryText], list[Passage]]:
    """The text of each shown query and the passages shown with it: its first :data:`PASSAGE_TOP`
    documents in every mode, its relevant documents, and the documents of its answer's contexts."""
    wanted = set(shown)
    docs: dict[str, None] = {}
    for mode in modes:
        for q in mode.per_query:
            if q.query_id in wanted:
                docs.update((d, None) for d, _ in q.top[:PASSAGE_TOP])
    for qid in shown:
        docs.update((d, None) for d, r in sorted(ds.qrels.get(qid, {}).items()) if r > 0)
    for a in answers:
        docs.update((d, None) for d in a.context_documents)
    texts = [QueryText(qid, ds.queries.get(qid, ""), dict(ds.qrels.get(qid, {}))) for qid in shown]
    passages = [
        Passage(d, ds.corpus[d].title, ds.corpus[d].text[:PASSAGE_CHARS]) for d in docs if d in ds.corpus
    ]
    return texts, passages
