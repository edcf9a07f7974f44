"""The HTML evaluation report: one self-contained, well-formed page; user text escaped; figures inline."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from isthmus_evaluation.gate import check, parse_specs
from isthmus_evaluation.html_report import render_html, worst_queries
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

SCRIPT = "<script>alert('x')</script>"


def _queries(mode: str, shift: float) -> list[QueryResult]:
    out = []
    for i in range(12):
        ndcg = min(1.0, max(0.0, i / 12 + shift))
        top = [(f"d{(i + k) % 15}", 10.0 - k) for k in range(3)]
        out.append(QueryResult(f"q{i:02d}", ndcg, min(1.0, ndcg + 0.2), ndcg, ndcg / 2, 10.0 + i, top))
    return out


def _report(shift: float = 0.0, *, answers: bool = True) -> EvalReport:
    modes = [
        ModeReport("bm25", 0.5 + shift, 0.8, 0.7, 12.0, 30.0, 0.41, _queries("bm25", shift)),
        ModeReport("hybrid", 0.6 + shift, 0.9, 0.75, 40.0, 90.0, 0.47, _queries("hybrid", shift + 0.05)),
    ]
    texts = [QueryText(f"q{i:02d}", f"question {i} about A & B", {f"d{i}": 2, "d14": 1}) for i in range(12)]
    passages = [Passage(f"d{i}", f"title {i}", f"text of document {i} " * 5) for i in range(15)]
    passages[0] = Passage("d0", "Evil <b>title</b>", f"before {SCRIPT} after")
    metrics = AnswerMetrics(
        samples=4,
        metrics=[MetricValue("faithfulness", 0.75 + shift, 3, 1), MetricValue("answer_relevance", 0.6, 3, 1)],
        failure_reasons={"timeout": 1},
        judge="offline",
        blocked=0,
        latency_p50_ms=800.0,
        latency_p95_ms=1200.0,
    )
    results = [
        AnswerResult(
            "q00", "question 0?", f"answer {SCRIPT}", {"faithfulness": 0.2, "answer_relevance": 0.9}
        ),
        AnswerResult("q01", "question 1?", "good answer", {"faithfulness": 1.0, "answer_relevance": 0.8}),
        AnswerResult("q02", "question 2?", "fine", {"faithfulness": 0.9, "answer_relevance": 0.7}),
        AnswerResult("q03", "question 3?", "", failure="timeout", failure_detail="judge took > 30 s"),
    ]
    return EvalReport(
        dataset="gate<set>",
        documents=15,
        queries=12,
        ingest_seconds=3.5,
        tenant_id="eval-gate-1",
        modes=modes,
        answers=metrics if answers else None,
        answer_results=results if answers else [],
        query_texts=texts,
        passages=passages,
    )


def _parse(page: str) -> ET.Element:
    """The page as XML (its doctype apart): fails on any unbalanced tag or bad entity."""
    assert page.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(page.removeprefix("<!DOCTYPE html>\n"))


def _text(root: ET.Element) -> str:
    """The element's text, one space between words and between table cells."""
    if root.tag == "tr":
        return " ".join(_text(td) for td in root if td.tag in ("td", "th"))
    return " ".join(" ".join(t.strip() for t in root.itertext() if t.strip()).split())


def test_the_page_is_well_formed_with_every_section() -> None:
    report = _report()
    page = render_html(report)
    root = _parse(page)
    text = _text(root)
    assert "Evaluation of gate<set>" in text
    for heading in ("Modes", "Per-query scores", "Search latency", "Worst queries", "Answers"):
        assert heading in [h.text for h in root.iter("h2")], heading
    # the mode table: a row per mode with its values
    (modes,) = [t for t in root.iter("table") if t.get("class") == "modes"]
    rows = [[_text(td) for td in tr.iter("td")] for tr in modes.iter("tr")][1:]
    assert rows == [
        ["bm25", "0.5000", "0.8000", "0.7000", "0.4100", "12.0", "30.0"],
        ["hybrid", "0.6000", "0.9000", "0.7500", "0.4700", "40.0", "90.0"],
    ]
    (meta,) = [t for t in root.iter("table") if t.get("class") == "meta"]
    assert {_text(tr) for tr in meta.iter("tr")} >= {"dataset gate<set>", "documents 15", "judge offline"}
    # answers: the metrics, the failure reasons, the unscored answer, the worst one first
    assert "faithfulness 0.7500 3 1" in text and "timeout" in text and "judge took > 30 s" in text
    summaries = [_text(s) for s in root.iter("summary")]
    answer_summaries = [s for s in summaries if s.startswith("q0") and "faithfulness" in s]
    assert answer_summaries[0].startswith("q00 answer_relevance 0.900, faithfulness 0.200")


def test_user_text_is_escaped() -> None:
    page = render_html(_report())
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Evil &lt;b&gt;title&lt;/b&gt;" in page
    assert "A &amp; B" in page
    text = _text(_parse(page))
    assert f"before {SCRIPT} after" in text and f"answer {SCRIPT}" in text


def test_the_page_needs_no_network_and_inlines_its_figures_as_svg() -> None:
    page = render_html(
        _report(), _report(-0.02), check(_report(), _report(-0.02), parse_specs(["ndcg_at_10=0.01"]))
    )
    root = _parse(page)
    for el in root.iter():
        for attr in ("src", "href", "{http://www.w3.org/1999/xlink}href"):
            value = el.get(attr)
            assert value is None or value.startswith("#"), (el.tag, attr, value)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page
    assert not [el for el in root.iter() if el.tag in ("script", "link", "img", "iframe", "object")]
    svgs = [el for el in root.iter() if el.tag == "{http://www.w3.org/2000/svg}svg"]
    # score distributions, latency, the answer scores, the baseline scatter
    assert len(svgs) == 4
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)), "two figures share an element id"


def test_the_worst_queries_show_their_passages_with_the_relevant_ones_marked() -> None:
    report = _report()
    page = render_html(report)
    root = _parse(page)
    bm25 = report.modes[0]
    worst = worst_queries(bm25)
    assert [q.query_id for q in worst] == [f"q{i:02d}" for i in range(10)]
    details = [d for d in root.iter("details") if _text(d.find("summary")).startswith("q00 nDCG@10 0.0000")]
    first = details[0]  # bm25's worst: q00, whose top is d0 (relevant, grade 2), d1, d2
    passages = [d for d in first.iter("div") if (d.get("class") or "").startswith("passage")]
    assert [d.get("class") for d in passages] == ["passage relevant", "passage", "passage"]
    assert _text(passages[0]).startswith("relevant (2) d0 score 10.0000 — Evil <b>title</b>")
    assert "question 0 about A & B" in _text(first.find("summary"))
    # the relevant document that was not retrieved is named
    assert "relevant, not in the top 3: d14" in _text(first)


def test_long_passages_are_cut() -> None:
    report = _report()
    long = Passage("d1", "long", "word " * 1000)
    page = render_html(EvalReport(**{**report.__dict__, "passages": [long]}))
    assert "word " * 100 in page and "word " * 200 not in page and "…" in page


def test_the_baseline_is_beside_each_value_and_failed_gate_rows_are_highlighted() -> None:
    base, cur = _report(), _report(-0.02)
    gate = check(
        cur, base, parse_specs(["ndcg_at_10=0.01", "hybrid:recall_at_100=0.01", "faithfulness=0.01"])
    )
    page = render_html(cur, base, gate)
    root = _parse(page)
    (modes,) = [t for t in root.iter("table") if t.get("class") == "modes"]
    rows = list(modes.iter("tr"))[1:]
    assert [r.get("class") for r in rows] == ["failed", "failed"]
    cells = list(rows[1].iter("td"))
    assert _text(cells[1]) == "0.5800 vs 0.6000 (-0.0200)"
    assert cells[1].get("class") == "num failed" and cells[2].get("class") == "num"
    (gate_table,) = [t for t in root.iter("table") if t.get("class") == "gate"]
    verdicts = [_text(tr) for tr in gate_table.iter("tr")][1:]
    assert "fail bm25 ndcg_at_10 dropped by 0.0200 (0.5000 → 0.4800); allowed 0.0100" in verdicts
    assert "pass hybrid recall_at_100 (0.9000 → 0.9000), +0.0000; allowed drop 0.0100" in verdicts
    assert "gate failed: 3 metric(s) past their allowance, 0 error(s)" in _text(root)
    (answers,) = [t for t in root.iter("table") if t.get("class") == "answer-metrics"]
    assert [tr.get("class") for tr in answers.iter("tr")][1:] == ["failed", None]
    # the queries that moved most against the baseline
    assert "Baseline, query by query" in [h.text for h in root.iter("h2")]
    assert "The queries that moved most" in _text(root)


def test_a_report_without_per_query_results_or_answers_still_renders() -> None:
    bare = EvalReport("cranfield", 1400, 225, 40.0, "t", [ModeReport("bm25", 0.5, 0.8, 0.7, 12.0, 30.0)])
    page = render_html(bare, bare)
    root = _parse(page)
    assert "no per-query results in this report" in _text(root)
    assert not [el for el in root.iter() if el.tag.endswith("svg")]
    assert "Answers" not in [h.text for h in root.iter("h2")]


@pytest.mark.parametrize("answers", [True, False])
def test_the_same_report_gives_the_same_page(answers: bool) -> None:
    assert render_html(_report(answers=answers)) == render_html(_report(answers=answers))
