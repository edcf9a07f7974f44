"""`isthmus eval --baseline … --max-drop …` on the real `all` platform: the gate passes against its own
report (the scores are deterministic) and fails, exit 1, naming the metric and by how much, against a
baseline that scored higher; the HTML and JSON reports are written either way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from isthmus_core.testing.client import run_cli
from isthmus_evaluation.report import EvalReport

from .conftest import platform

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CORPUS = {
    "glider": "A glider flies without an engine, soaring on thermals.",
    "marmot": "Marmots hibernate in burrows through the alpine winter.",
    "pelican": "Pelicans scoop fish with their throat pouch.",
    "glacier": "Glaciers carve U-shaped valleys as they slowly flow.",
    "kiln": "A kiln fires clay pots at very high temperatures.",
}
QUERIES = {"q1": ("how do marmots spend the winter", "marmot"), "q2": ("aircraft soaring", "glider")}


def write_beir(d: Path) -> Path:
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in CORPUS.items())
    )
    (d / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in QUERIES.items())
    )
    (d / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{doc}\t1\n" for q, (_, doc) in QUERIES.items())
    )
    return d


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gate")
    async with platform(tmp / "data") as rt:
        yield {"address": rt.address, "tmp": tmp, "dataset": write_beir(tmp / "tiny")}


async def test_the_gate_passes_on_the_same_scores_and_fails_on_a_drop(env: dict[str, Any]) -> None:
    tmp: Path = env["tmp"]
    common = ("eval", str(env["dataset"]), "--modes", "bm25", "--endpoint", env["address"])
    code, _, err = await run_cli(*common, "--output", str(tmp / "base.json"))
    assert code == 0, err[-3000:]
    base = EvalReport.from_json((tmp / "base.json").read_text())
    assert base.dataset == "tiny" and [m.mode for m in base.modes] == ["bm25"]

    # the same platform and data again: the same scores, the gate passes
    gate = ("--max-drop", "ndcg_at_10=0.01", "--max-drop", "recall_at_100=0")
    code, _, err = await run_cli(*common, "--baseline", str(tmp / "base.json"), *gate)
    assert code == 0, err[-3000:]
    assert "gate passed: 2 check(s)" in err

    # a baseline that scored 0.05 higher: exit 1, the metric and the drop named, the reports written
    bm25 = base.modes[0]
    better = dataclasses.replace(base, modes=[dataclasses.replace(bm25, ndcg_at_10=bm25.ndcg_at_10 + 0.05)])
    (tmp / "better.json").write_text(better.to_json())
    html, out = tmp / "out" / "report.html", tmp / "out" / "report.json"
    code, _, err = await run_cli(
        *common, "--baseline", str(tmp / "better.json"), *gate, "--html", str(html), "--output", str(out)
    )
    assert code == 1, err[-3000:]
    expected = f"{bm25.ndcg_at_10 + 0.05:.4f} → {bm25.ndcg_at_10:.4f}"
    assert f"gate FAILED: bm25 ndcg_at_10 dropped by 0.0500 ({expected}); allowed 0.0100" in err, err
    assert "gate ok: bm25 recall_at_100" in err
    assert EvalReport.from_json(out.read_text()).modes[0].ndcg_at_10 == bm25.ndcg_at_10
    page = html.read_text()
    assert "gate failed" in page and "Evaluation of tiny" in page

    # a usage error is refused before the dataset is evaluated: exit 2
    code, _, err = await run_cli(
        *common, "--baseline", str(tmp / "base.json"), "--max-drop", "dense:ndcg_at_10=0.01"
    )
    assert code == 2 and "mode 'dense' is not in the baseline report" in err, err
