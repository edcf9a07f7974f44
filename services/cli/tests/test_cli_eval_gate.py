"""``isthmus eval``'s gate, ``--html`` and ``--output`` without a platform: usage errors exit 2 before
anything runs; a report past its allowance exits 1 naming the metric, its files written first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from isthmus_cli import eval_outputs
from isthmus_cli.main import app
from isthmus_evaluation.report import EvalReport, ModeReport

runner = CliRunner()


def _report(ndcg: float = 0.6, dataset: str = "tiny") -> EvalReport:
    return EvalReport(
        dataset=dataset,
        documents=5,
        queries=3,
        ingest_seconds=1.0,
        tenant_id="eval-tiny-1",
        modes=[
            ModeReport("bm25", ndcg, 0.9, 0.8, 5.0, 9.0),
            ModeReport("hybrid", ndcg + 0.05, 0.95, 0.8, 9.0, 20.0),
        ],
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    d = tmp_path / "tiny"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text('{"_id": "a", "title": "", "text": "alpha"}\n')
    (d / "queries.jsonl").write_text('{"_id": "q", "text": "alpha"}\n')
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\t1\n")
    return d


def _eval(*args: str) -> tuple[int, str]:
    # an endpoint nothing listens on: a usage error must exit before any connection is tried
    result = runner.invoke(app, ["eval", *args, "--endpoint", "127.0.0.1:9", "--modes", "bm25,hybrid"])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--max-drop", "ndcg=0.1", "--baseline", "B"], "unknown metric 'ndcg'"),
        (["--max-drop", "ndcg_at_10=x", "--baseline", "B"], "'x' is not a number"),
        (["--max-drop", "ndcg_at_10=0.01"], "--max-drop needs --baseline"),
        (["--max-drop", "ndcg_at_10=0.01", "--baseline", "missing.json"], "cannot read it"),
        (["--max-drop", "ndcg_at_10=0.01", "--baseline", "NOTJSON"], "not an evaluation report"),
        (
            ["--max-drop", "dense:ndcg_at_10=0.01", "--baseline", "B"],
            "mode 'dense' is not in the baseline report",
        ),
        (
            ["--max-drop", "map_at_100=0.01", "--baseline", "B"],
            "map_at_100: not measured in the baseline report",
        ),
        (["--max-drop", "faithfulness=0.01", "--baseline", "B"], "the baseline report has no answer metrics"),
        (
            ["--max-drop", "ndcg_at_10=0.01", "--baseline", "OTHER"],
            "of dataset 'cisi', this run evaluates 'tiny'",
        ),
        (
            ["--max-drop", "ndcg_at_10=0.01", "--baseline", "DENSE"],
            "mode(s) ['dense'], which this run does not",
        ),
        (["--html", "DIR"], "is a directory"),
    ],
)
def test_usage_errors_exit_2_before_the_run(
    dataset: Path, tmp_path: Path, args: list[str], reason: str
) -> None:
    files = {
        "B": _report(),
        "OTHER": _report(dataset="cisi"),
        "DENSE": dataclasses.replace(_report(), modes=[ModeReport("dense", 0.5, 0.9, 0.8, 5.0, 9.0)]),
    }
    for name, report in files.items():
        (tmp_path / f"{name}.json").write_text(report.to_json())
    (tmp_path / "NOTJSON.json").write_text("{oops")
    real = {
        "B": "B.json",
        "OTHER": "OTHER.json",
        "DENSE": "DENSE.json",
        "NOTJSON": "NOTJSON.json",
        "missing.json": "missing.json",
        "DIR": ".",
    }
    argv = [str(tmp_path / real[a]) if a in real else a for a in args]
    code, out = _eval(str(dataset), *argv)
    assert code == 2, out
    assert reason in out, out


def test_the_dataset_check_can_be_waived(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(_report(dataset="cisi").to_json())
    outputs = eval_outputs.prepare(
        baseline=tmp_path / "other.json",
        max_drop=["ndcg_at_10=0.01"],
        html=None,
        output=None,
        allow_mismatch=True,
        dataset="tiny",
        modes=["bm25", "hybrid"],
    )
    assert outputs.baseline == _report(dataset="cisi")


def _outputs(tmp_path: Path, *specs: str, baseline: EvalReport | None = None) -> eval_outputs.Outputs:
    path = tmp_path / "base.json"
    path.write_text((baseline or _report()).to_json())
    return eval_outputs.prepare(
        baseline=path,
        max_drop=list(specs),
        html=tmp_path / "out" / "report.html",
        output=tmp_path / "out" / "report.json",
        allow_mismatch=False,
        dataset="tiny",
        modes=["bm25", "hybrid"],
    )


def test_a_drop_past_the_allowance_exits_1_naming_it_after_writing_the_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = _outputs(tmp_path, "ndcg_at_10=0.01", "recall_at_100=0.01")
    current = _report(ndcg=0.58)
    with pytest.raises(typer.Exit) as exit_:
        eval_outputs.finish(current, outputs)
    assert exit_.value.exit_code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "gate FAILED: bm25 ndcg_at_10 dropped by 0.0200 (0.6000 → 0.5800); allowed 0.0100" in err
    assert "gate FAILED: hybrid ndcg_at_10 dropped by 0.0200 (0.6500 → 0.6300); allowed 0.0100" in err
    assert "gate ok: bm25 recall_at_100" in err
    assert "gate failed: 2 metric(s) past their allowance, 0 that could not be compared" in err
    assert EvalReport.from_json((tmp_path / "out" / "report.json").read_text()) == current
    page = (tmp_path / "out" / "report.html").read_text()
    assert "gate failed" in page and "dropped by 0.0200" in page


def test_a_run_within_its_allowances_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eval_outputs.finish(_report(ndcg=0.595), _outputs(tmp_path, "ndcg_at_10=0.01"))
    assert "gate passed: 2 check(s) within their allowances" in capsys.readouterr().err


def test_a_mode_missing_from_this_run_fails_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = _outputs(tmp_path, "ndcg_at_10=0.01")
    only_bm25 = dataclasses.replace(_report(), modes=_report().modes[:1])
    with pytest.raises(typer.Exit) as exit_:
        eval_outputs.finish(only_bm25, outputs)
    assert exit_.value.exit_code == 1
    assert (
        "gate error: hybrid ndcg_at_10: mode 'hybrid' is not in the current report" in capsys.readouterr().err
    )


def test_without_a_gate_the_outputs_are_written(tmp_path: Path) -> None:
    outputs = eval_outputs.prepare(
        baseline=None,
        max_drop=[],
        html=tmp_path / "a" / "b" / "r.html",
        output=tmp_path / "r.json",
        allow_mismatch=False,
        dataset="tiny",
        modes=["bm25"],
    )
    eval_outputs.finish(_report(), outputs)
    assert json.loads((tmp_path / "r.json").read_text())["dataset"] == "tiny"
    assert (tmp_path / "a" / "b" / "r.html").read_text().startswith("<!DOCTYPE html>")
