"""``isthmus eval`` reads back every field of the service's report: dataclass -> proto (the service's
edge) -> dataclass (the CLI) is the identity, and the tables show MAP@100 and the answer metrics."""

from __future__ import annotations

from rich.console import Console

from isthmus_cli.eval_report import report_from_proto
from isthmus_evaluation.api import report_pb
from isthmus_evaluation.report import (
    AnswerMetrics,
    AnswerResult,
    EvalReport,
    MetricValue,
    ModeReport,
    Passage,
    QueryResult,
    QueryText,
    render_answers,
    render_table,
)


def full_report() -> EvalReport:
    return EvalReport(
        dataset="tiny",
        documents=5,
        queries=2,
        ingest_seconds=1.5,
        tenant_id="eval-tiny-0123abcd",
        modes=[
            ModeReport(
                "hybrid",
                0.75,
                1.0,
                0.5,
                12.0,
                30.0,
                map_at_100=0.625,
                per_query=[
                    QueryResult("q1", 1.0, 1.0, 1.0, 1.0, 10.0, [("d2", 3.0), ("d1", 1.5)]),
                    QueryResult("q2", 0.5, 1.0, 0.0, 0.25, 14.0, [("d3", 2.0)]),
                ],
            )
        ],
        answers=AnswerMetrics(
            samples=2,
            metrics=[MetricValue("faithfulness", 0.5, 1, 1), MetricValue("context_precision", 1.0, 1, 1)],
            failure_reasons={"timeout": 1},
            judge="offline:grounding",
            blocked=1,
            latency_p50_ms=200.0,
            latency_p95_ms=400.0,
        ),
        answer_results=[
            AnswerResult(
                "q1",
                "marmots?",
                "Marmots hibernate.",
                {"faithfulness": 0.5},
                latency_ms=200.0,
                context_documents=["d2", "d1"],
            ),
            AnswerResult(
                "q2", "pelicans?", "", failure="timeout", failure_detail="judge failed", blocked=False
            ),
            AnswerResult("q3", "kilns?", "blocked", blocked=True),
        ],
        query_texts=[QueryText("q1", "marmots?", {"d2": 1, "d9": 0})],
        passages=[Passage("d2", "Marmots", "Marmots hibernate in burrows.")],
    )


def test_the_proto_report_maps_back_to_the_same_dataclass() -> None:
    report = full_report()
    assert report_from_proto(report_pb(report)) == report
    # and survives the JSON file the CLI writes
    assert EvalReport.from_json(report_from_proto(report_pb(report)).to_json()) == report


def test_a_report_without_answers_maps_to_none() -> None:
    report = EvalReport("tiny", 1, 1, 0.1, "eval-tiny-0123abcd")
    assert report_from_proto(report_pb(report)) == report


def test_tables_show_map_and_the_answer_metrics() -> None:
    console = Console(width=400, record=True)
    report = full_report()
    console.print(render_table(report))
    assert report.answers is not None
    console.print(render_answers(report.answers))
    text = " ".join(console.export_text().split())  # titles wrap to the table's width
    assert "MAP@100" in text and "0.625" in text
    assert "faithfulness" in text and "0.500" in text
    assert "timeout: 1" in text and "1 blocked" in text and "offline:grounding" in text
