"""The evaluation report as the service sends it (``evaluation.v1.EvalReport``) back into evaluation's
:class:`~isthmus_evaluation.report.EvalReport` dataclass (what ``isthmus eval`` prints, saves and compares).

Here, in the CLI (which may import every package), because ``isthmus_evaluation.report`` stays free of
protos: the service's edge maps the other way (``isthmus_evaluation.api.report_pb``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from isthmus.evaluation.v1 import evaluation_pb2 as pb


def report_from_proto(r: pb.EvalReport) -> EvalReport:
    """Every field of ``r``: modes with their per-query results, answers, texts and passages."""
    answers = None
    if r.HasField("answers"):
        a = r.answers
        answers = AnswerMetrics(
            samples=a.samples,
            metrics=[MetricValue(m.name, m.mean, m.n, m.failures) for m in a.metrics],
            failure_reasons=dict(a.failure_reasons),
            judge=a.judge,
            blocked=a.blocked,
            latency_p50_ms=a.latency_p50_ms,
            latency_p95_ms=a.latency_p95_ms,
        )
    return EvalReport(
        dataset=r.dataset,
        documents=r.documents,
        queries=r.queries,
        ingest_seconds=r.ingest_seconds,
        tenant_id=r.tenant_id,
        modes=[
            ModeReport(
                mode=m.mode,
                ndcg_at_10=m.ndcg_at_10,
                recall_at_100=m.recall_at_100,
                mrr_at_10=m.mrr_at_10,
                latency_p50_ms=m.latency_p50_ms,
                latency_p95_ms=m.latency_p95_ms,
                map_at_100=m.map_at_100,
                per_query=[
                    QueryResult(
                        query_id=q.query_id,
                        ndcg_at_10=q.ndcg_at_10,
                        recall_at_100=q.recall_at_100,
                        mrr_at_10=q.mrr_at_10,
                        map_at_100=q.map_at_100,
                        latency_ms=q.latency_ms,
                        top=[(d.document_id, d.score) for d in q.top],
                    )
                    for q in m.per_query
                ],
            )
            for m in r.modes
        ],
        answers=answers,
        answer_results=[
            AnswerResult(
                query_id=a.query_id,
                question=a.question,
                answer=a.answer,
                scores=dict(a.scores),
                failure=a.failure,
                failure_detail=a.failure_detail,
                blocked=a.blocked,
                latency_ms=a.latency_ms,
                context_documents=list(a.context_documents),
            )
            for a in r.answer_results
        ],
        query_texts=[QueryText(q.query_id, q.text, dict(q.relevant)) for q in r.query_texts],
        passages=[Passage(p.document_id, p.title, p.text) for p in r.passages],
    )
