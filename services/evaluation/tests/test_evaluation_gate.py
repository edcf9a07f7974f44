"""The regression gate (pure): ``--max-drop`` specs and the comparison of two reports."""

from __future__ import annotations

import dataclasses

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.gate import DropSpec, Verdict, check, parse_spec, parse_specs
from isthmus_evaluation.report import AnswerMetrics, EvalReport, MetricValue, ModeReport


def _mode(
    mode: str, ndcg: float, recall: float = 0.9, *, p95: float = 50.0, map100: float = 0.4
) -> ModeReport:
    return ModeReport(mode, ndcg, recall, 0.7, 20.0, p95, map_at_100=map100)


def _report(
    *modes: ModeReport, answers: AnswerMetrics | None = None, dataset: str = "cranfield-gate"
) -> EvalReport:
    return EvalReport(
        dataset=dataset,
        documents=584,
        queries=60,
        ingest_seconds=10.0,
        tenant_id="eval-x",
        modes=list(modes),
        answers=answers,
    )


def _answers(faithfulness: float, n: int = 10, judge: str = "offline") -> AnswerMetrics:
    return AnswerMetrics(
        samples=12,
        metrics=[
            MetricValue("faithfulness", faithfulness, n, 2),
            MetricValue("answer_relevance", 0.8, 10, 2),
        ],
        failure_reasons={"timeout": 2},
        judge=judge,
    )


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("ndcg_at_10=0.01", DropSpec("ndcg_at_10", 0.01)),
        ("hybrid:ndcg_at_10=0.01", DropSpec("ndcg_at_10", 0.01, mode="hybrid")),
        ("hybrid+rerank:map_at_100=0", DropSpec("map_at_100", 0.0, mode="hybrid+rerank")),
        ("recall_at_100=2%", DropSpec("recall_at_100", 0.02, relative=True)),
        ("latency_p95_ms=25", DropSpec("latency_p95_ms", 25.0)),
        (" faithfulness=0.05 ", DropSpec("faithfulness", 0.05)),
    ],
)
def test_specs_parse(text: str, spec: DropSpec) -> None:
    assert parse_spec(text) == spec


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ndcg_at_10", "expected"),
        ("ndcg=0.01", "unknown metric 'ndcg'"),
        ("ndcg_at_10=abc", "not a number"),
        ("ndcg_at_10=-0.1", ">= 0"),
        ("ndcg_at_10=nan", ">= 0"),
        ("hybrid:faithfulness=0.1", "has no search mode"),
        ("a:b:ndcg_at_10=0.1", "expected"),
    ],
)
def test_bad_specs_are_refused_saying_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        parse_spec(text)


def test_the_same_metric_twice_is_refused_but_a_mode_may_refine_all_modes() -> None:
    with pytest.raises(InvalidArgument, match="limit the same metric"):
        parse_specs(["ndcg_at_10=0.01", "ndcg_at_10=0.02"])
    assert len(parse_specs(["ndcg_at_10=0.01", "hybrid:ndcg_at_10=0.02"])) == 2


def test_a_drop_past_the_allowance_fails_with_how_much() -> None:
    base = _report(_mode("bm25", 0.5), _mode("hybrid", 0.5710))
    cur = _report(_mode("bm25", 0.5), _mode("hybrid", 0.5587))
    result = check(cur, base, parse_specs(["ndcg_at_10=0.01"]))
    assert not result.ok
    (failed,) = result.failed
    assert (failed.mode, failed.metric) == ("hybrid", "ndcg_at_10")
    assert failed.message == "hybrid ndcg_at_10 dropped by 0.0123 (0.5710 → 0.5587); allowed 0.0100"
    assert failed.worsening == pytest.approx(0.0123)
    assert [c.verdict for c in result.checks] == [Verdict.PASS, Verdict.FAIL]
    assert result.failed_keys() == {("hybrid", "ndcg_at_10")}


def test_a_drop_within_the_allowance_or_a_gain_passes() -> None:
    base = _report(_mode("bm25", 0.57), _mode("hybrid", 0.60))
    # 0.57 - 0.56 is 0.010000000000000009 in floats: exactly the allowance passes
    cur = _report(_mode("bm25", 0.56), _mode("hybrid", 0.65))
    result = check(cur, base, parse_specs(["ndcg_at_10=0.01"]))
    assert result.ok, result.checks
    assert result.checks[0].message == "bm25 ndcg_at_10 (0.5700 → 0.5600), -0.0100; allowed drop 0.0100"
    assert result.checks[1].message == "hybrid ndcg_at_10 (0.6000 → 0.6500), +0.0500; allowed drop 0.0100"


def test_a_mode_spec_wins_over_the_spec_for_every_mode() -> None:
    base = _report(_mode("bm25", 0.5), _mode("hybrid", 0.6))
    cur = _report(_mode("bm25", 0.5), _mode("hybrid", 0.58))
    assert check(cur, base, parse_specs(["ndcg_at_10=0.01", "hybrid:ndcg_at_10=0.03"])).ok
    result = check(cur, base, parse_specs(["ndcg_at_10=0.03", "hybrid:ndcg_at_10=0.01"]))
    assert [(c.mode, c.verdict) for c in result.checks] == [("bm25", Verdict.PASS), ("hybrid", Verdict.FAIL)]


def test_a_relative_allowance_is_a_share_of_the_baseline() -> None:
    base = _report(_mode("hybrid", 0.5))
    assert check(_report(_mode("hybrid", 0.491)), base, parse_specs(["ndcg_at_10=2%"])).ok
    result = check(_report(_mode("hybrid", 0.489)), base, parse_specs(["ndcg_at_10=2%"]))
    assert result.failed[0].message == (
        "hybrid ndcg_at_10 dropped by 0.0110 (0.5000 → 0.4890); allowed 0.0100 (2% of 0.5000)"
    )


def test_latency_is_limited_in_its_rise() -> None:
    base = _report(_mode("hybrid", 0.5, p95=40.0))
    faster = check(_report(_mode("hybrid", 0.5, p95=20.0)), base, parse_specs(["latency_p95_ms=10"]))
    assert faster.ok
    result = check(_report(_mode("hybrid", 0.5, p95=52.3)), base, parse_specs(["latency_p95_ms=10"]))
    assert (
        result.failed[0].message
        == "hybrid latency_p95_ms rose by 12.3 ms (40.0 ms → 52.3 ms); allowed 10.0 ms"
    )


def test_a_mode_missing_from_either_report_is_an_error_not_a_pass() -> None:
    base = _report(_mode("bm25", 0.5), _mode("hybrid", 0.6))
    cur = _report(_mode("bm25", 0.5))
    result = check(cur, base, parse_specs(["ndcg_at_10=0.01"]))
    assert not result.ok and not result.failed
    assert result.errors == ["hybrid ndcg_at_10: mode 'hybrid' is not in the current report"]
    named = check(cur, base, parse_specs(["dense:ndcg_at_10=0.01"]))
    assert named.errors == ["dense ndcg_at_10: mode 'dense' is not in the baseline nor the current report"]
    empty = check(cur, _report(), parse_specs(["ndcg_at_10=0.01"]))
    assert empty.errors == ["ndcg_at_10: the baseline report has no search modes"]


def test_a_map_never_computed_is_an_error() -> None:
    old = _report(_mode("hybrid", 0.5, map100=0.0))  # a report from before MAP reads 0.0
    new = _report(_mode("hybrid", 0.5, map100=0.42))
    result = check(new, old, parse_specs(["map_at_100=0.01"]))
    assert result.errors == [
        "hybrid map_at_100: not measured in the baseline report "
        "(a report from a version that did not compute it)"
    ]
    assert check(new, new, parse_specs(["map_at_100=0.01"])).ok


def test_answer_metrics_are_compared_and_missing_ones_are_errors() -> None:
    base = _report(_mode("hybrid", 0.5), answers=_answers(0.80))
    assert check(
        _report(_mode("hybrid", 0.5), answers=_answers(0.78)), base, parse_specs(["faithfulness=0.05"])
    ).ok
    result = check(
        _report(_mode("hybrid", 0.5), answers=_answers(0.70)), base, parse_specs(["faithfulness=0.05"])
    )
    assert result.failed[0].message == "faithfulness dropped by 0.1000 (0.8000 → 0.7000); allowed 0.0500"
    assert result.failed_keys() == {(None, "faithfulness")}

    no_answers = check(_report(_mode("hybrid", 0.5)), base, parse_specs(["faithfulness=0.05"]))
    assert no_answers.errors == [
        "faithfulness: the current report has no answer metrics (run it with --answers N)"
    ]
    unscored = check(_report(answers=_answers(0.9, n=0)), base, parse_specs(["faithfulness=0.05"]))
    assert unscored.errors == ["faithfulness: no answer of the current report was scored on it (n = 0)"]
    absent = check(base, base, parse_specs(["context_recall=0.05"]))
    assert absent.errors == [
        "context_recall: not in the baseline report's answer metrics ['answer_relevance', 'faithfulness']"
    ]


def test_reports_of_another_dataset_or_judge_are_not_compared_unless_allowed() -> None:
    base = _report(_mode("hybrid", 0.5), answers=_answers(0.8))
    other = _report(_mode("hybrid", 0.5), answers=_answers(0.8), dataset="cisi")
    result = check(other, base, parse_specs(["ndcg_at_10=0.01"]))
    assert not result.ok and not result.failed
    assert result.problems == [
        "the baseline has dataset 'cranfield-gate', this report 'cisi': the reports measure different things "
        "(allow the mismatch to compare them anyway)"
    ]
    assert check(other, base, parse_specs(["ndcg_at_10=0.01"]), allow_mismatch=True).ok
    fewer = dataclasses.replace(base, queries=50)
    assert "queries 60" in check(fewer, base, parse_specs(["ndcg_at_10=0.01"])).problems[0]
    llm = dataclasses.replace(base, answers=_answers(0.8, judge="llm"))
    assert "judged by 'offline'" in check(llm, base, parse_specs(["faithfulness=0.01"])).problems[0]
    # the judge only matters when answer metrics are gated
    assert check(llm, base, parse_specs(["ndcg_at_10=0.01"])).ok


def test_a_value_that_is_not_a_number_is_an_error() -> None:
    base = _report(_mode("hybrid", 0.5))
    result = check(_report(_mode("hybrid", float("nan"))), base, parse_specs(["ndcg_at_10=0.01"]))
    assert result.checks[0].verdict is Verdict.ERROR and not result.ok
