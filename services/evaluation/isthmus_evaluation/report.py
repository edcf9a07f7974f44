"""Offline evaluation report: one dataset, one row of metrics per retrieval mode."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.table import Table

from isthmus_core.errors import InvalidArgument

#: nDCG@10 measured on a 2-core machine, from the shared datasets README (bm25s + Snowball stemming;
#: bge-small-en-v1.5 int8 ONNX with the query prefix; reciprocal-rank fusion k=60 of the two top-100 lists)
REFERENCE_NDCG10: dict[str, dict[str, float]] = {
    "cranfield": {"bm25": 0.528, "dense": 0.535, "hybrid": 0.562},
    "cisi": {"bm25": 0.386, "dense": 0.430, "hybrid": 0.449},
    "scifact": {"bm25": 0.686, "dense": 0.713, "hybrid": 0.726},
}


@dataclass(frozen=True)
class QueryResult:
    """One judged query in one mode (``ModeReport.per_query``)."""

    query_id: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    map_at_100: float
    latency_ms: float
    #: the first 10 documents, best first: (document id, score)
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class ModeReport:
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float
    map_at_100: float = 0.0
    per_query: list[QueryResult] = field(default_factory=list)


@dataclass(frozen=True)
class MetricValue:
    """One answer metric over the judged answers; ``mean`` over the ``n`` scored, ``failures`` apart."""

    name: str
    mean: float
    n: int
    failures: int


@dataclass(frozen=True)
class AnswerMetrics:
    samples: int
    metrics: list[MetricValue] = field(default_factory=list)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    judge: str = ""
    blocked: int = 0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0


@dataclass(frozen=True)
class AnswerResult:
    query_id: str
    question: str
    answer: str
    scores: dict[str, float] = field(default_factory=dict)
    failure: str = ""
    failure_detail: str = ""
    blocked: bool = False
    latency_ms: float = 0.0
    context_documents: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class QueryText:
    query_id: str
    text: str
    relevant: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Passage:
    document_id: str
    title: str
    text: str


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    documents: int
    queries: int
    ingest_seconds: float
    tenant_id: str
    modes: list[ModeReport] = field(default_factory=list)
    answers: AnswerMetrics | None = None
    answer_results: list[AnswerResult] = field(default_factory=list)
    query_texts: list[QueryText] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> EvalReport:
        """Parse :meth:`to_json` output; :class:`InvalidArgument` when it is not such a report."""
        try:
            data: dict[str, Any] = json.loads(text)
            modes = []
            for mode in data.pop("modes", []):
                per_query = [
                    QueryResult(**{**q, "top": [(str(d), float(sc)) for d, sc in q.get("top", [])]})
                    for q in mode.pop("per_query", [])
                ]
                modes.append(ModeReport(**mode, per_query=per_query))
            answers = data.pop("answers", None)
            if answers is not None:
                metrics = [MetricValue(**m) for m in answers.pop("metrics", [])]
                answers = AnswerMetrics(**answers, metrics=metrics)
            answer_results = [AnswerResult(**a) for a in data.pop("answer_results", [])]
            query_texts = [QueryText(**q) for q in data.pop("query_texts", [])]
            passages = [Passage(**p) for p in data.pop("passages", [])]
            return cls(
                **data,
                modes=modes,
                answers=answers,
                answer_results=answer_results,
                query_texts=query_texts,
                passages=passages,
            )
        except (json.JSONDecodeError, TypeError, AttributeError, ValueError) as exc:
            raise InvalidArgument(f"not an evaluation report: {exc}") from exc


def render_table(report: EvalReport, reference: dict[str, float] | None = None) -> Table:
    """A table with one row per mode; with ``reference`` (mode -> nDCG@10) a reference column is added."""
    table = Table(
        title=(
            f"{report.dataset}: {report.documents} documents, {report.queries} queries, "
            f"ingested in {report.ingest_seconds:.1f} s (tenant {report.tenant_id})"
        )
    )
    table.add_column("mode")
    table.add_column("nDCG@10", justify="right")
    if reference is not None:
        table.add_column("ref nDCG@10", justify="right")
    table.add_column("recall@100", justify="right")
    table.add_column("MRR@10", justify="right")
    table.add_column("MAP@100", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    for mode in report.modes:
        cells = [mode.mode, f"{mode.ndcg_at_10:.3f}"]
        if reference is not None:
            ref = reference.get(mode.mode)
            cells.append("-" if ref is None else f"{ref:.3f}")
        cells += [
            f"{mode.recall_at_100:.3f}",
            f"{mode.mrr_at_10:.3f}",
            f"{mode.map_at_100:.3f}",
            f"{mode.latency_p50_ms:.1f}",
            f"{mode.latency_p95_ms:.1f}",
        ]
        table.add_row(*cells)
    return table


def render_answers(answers: AnswerMetrics) -> Table:
    """The answer metrics: one row per metric (mean over the ``n`` scored answers, judge failures apart),
    the judge, blocked answers, failure reasons and latency in the title."""
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(answers.failure_reasons.items())) or "none"
    table = Table(
        title=(
            f"answers: {answers.samples} judged by {answers.judge or '?'}, {answers.blocked} blocked; "
            f"judge failures: {reasons}; latency p50 {answers.latency_p50_ms:.0f} ms, "
            f"p95 {answers.latency_p95_ms:.0f} ms"
        )
    )
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("n", justify="right")
    table.add_column("failures", justify="right")
    for m in answers.metrics:
        table.add_row(m.name, f"{m.mean:.3f}", str(m.n), str(m.failures))
    return table
