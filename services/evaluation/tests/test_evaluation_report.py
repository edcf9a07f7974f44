from __future__ import annotations

import json
import re

import pytest
from rich.console import Console
from rich.table import Table

from isthmus_core.errors import InvalidArgument
from isthmus_core.testing.infra import shared_datasets
from isthmus_evaluation.report import REFERENCE_NDCG10, EvalReport, ModeReport, render_table


def _report() -> EvalReport:
    return EvalReport(
        dataset="cranfield",
        documents=1400,
        queries=225,
        ingest_seconds=42.25,
        tenant_id="eval-cranfield",
        modes=[
            ModeReport("bm25", 0.5123, 0.8, 0.7, 12.5, 30.25),
            ModeReport("hybrid", 0.5556, 0.9, 0.75, 40.0, 90.0),
            ModeReport("rerank", 0.6, 0.91, 0.8, 300.0, 500.0),
        ],
    )


def _render(table: Table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_to_json_round_trip() -> None:
    report = _report()
    data = json.loads(report.to_json())
    assert data["dataset"] == "cranfield"
    assert [m["mode"] for m in data["modes"]] == ["bm25", "hybrid", "rerank"]
    assert data["modes"][0]["latency_p95_ms"] == 30.25
    assert EvalReport.from_json(report.to_json()) == report


@pytest.mark.parametrize("text", ["not json", '{"dataset": "x"}', "[1]"])
def test_from_json_rejects_other_documents(text: str) -> None:
    with pytest.raises(InvalidArgument, match="not an evaluation report"):
        EvalReport.from_json(text)


def test_table_lists_every_mode_with_its_metrics() -> None:
    table = render_table(_report())
    headers = [str(c.header) for c in table.columns]
    assert headers == ["mode", "nDCG@10", "recall@100", "MRR@10", "MAP@100", "p50 ms", "p95 ms"]
    text = _render(table)
    assert "cranfield" in text and "1400 documents" in text and "225 queries" in text
    for line_start, ndcg in [("bm25", "0.512"), ("hybrid", "0.556"), ("rerank", "0.600")]:
        row = next(line for line in text.splitlines() if line_start in line)
        assert ndcg in row


def test_table_reference_column() -> None:
    ref = REFERENCE_NDCG10["cranfield"]
    table = render_table(_report(), reference=ref)
    headers = [str(c.header) for c in table.columns]
    assert headers[:3] == ["mode", "nDCG@10", "ref nDCG@10"]
    text = _render(table)
    bm25_row = next(line for line in text.splitlines() if "bm25" in line)
    assert f"{ref['bm25']:.3f}" in bm25_row
    rerank_row = next(line for line in text.splitlines() if "rerank" in line)
    assert re.search(r"0\.600\s*│\s*-\s*│", rerank_row)  # no reference for this mode


def test_reference_figures_match_the_datasets_readme() -> None:
    text = shared_datasets("README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\w+) \| (0\.\d+) \| (0\.\d+) \| (0\.\d+) \|$", text, re.M)
    readme = {name: {"bm25": float(b), "dense": float(d), "hybrid": float(h)} for name, b, d, h in rows}
    assert readme, "reference table not found in the datasets README"
    assert readme == REFERENCE_NDCG10
