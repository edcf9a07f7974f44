"""The CI gate's dataset slice: deterministic, complete for its queries, with distractors; and the
baseline report stripped of the collection's text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isthmus_bench.eval_gate import build_slice, main, strip_texts
from isthmus_evaluation.datasets import load_beir
from isthmus_evaluation.report import AnswerResult, EvalReport, ModeReport, Passage, QueryResult, QueryText


def _source(d: Path) -> Path:
    (d / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": f"t{i}", "text": f"text {i}"} for i in range(40)]
    (d / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in docs))
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(12)]  # q10, q11 unjudged
    (d / "queries.jsonl").write_text("".join(json.dumps(x) + "\n" for x in queries))
    rows = [f"q{i}\td{(3 * i + k) % 40}\t{k + 1}\n" for i in range(10) for k in range(3)]
    rows.append("q0\tmissing-doc\t1\n")  # a judgment of a document not in the corpus is left out
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    return d


def test_the_slice_is_deterministic_and_holds_every_judged_document_of_its_queries(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    counts = build_slice(src, tmp_path / "a" / "mini", queries=4, distractors=5)
    build_slice(src, tmp_path / "b" / "mini", queries=4, distractors=5)
    for f in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        assert (tmp_path / "a" / "mini" / f).read_bytes() == (tmp_path / "b" / "mini" / f).read_bytes()
    ds = load_beir(tmp_path / "a" / "mini")
    assert ds.name == "mini" and len(ds.queries) == 4 and ds.unknown_qrel_docs == 0
    judged = {d for rels in ds.qrels.values() for d in rels}
    assert judged <= set(ds.corpus)
    assert len(ds.corpus) == len(judged) + 5 == counts.documents
    assert counts.judgments == 12 and counts.queries == 4
    # the grades are kept, and the queries are a spread, not the first ones
    assert {g for rels in ds.qrels.values() for g in rels.values()} == {1, 2, 3}
    assert sorted(ds.queries) != ["q0", "q1", "q2", "q3"]
    assert set(ds.queries) <= {f"q{i}" for i in range(10)}
    # documents in the source's order
    ids = [
        json.loads(line)["_id"]
        for line in (tmp_path / "a" / "mini" / "corpus.jsonl").read_text().splitlines()
    ]
    assert ids == sorted(ids, key=lambda d: int(d[1:]))


def test_more_queries_than_judged_takes_them_all(tmp_path: Path) -> None:
    counts = build_slice(_source(tmp_path / "src"), tmp_path / "all", queries=100, distractors=1000)
    assert (counts.queries, counts.documents, counts.judgments) == (10, 40, 30)


def test_the_baseline_keeps_no_text_of_the_collection(tmp_path: Path) -> None:
    report = EvalReport(
        "mini",
        3,
        1,
        1.0,
        "t",
        [
            ModeReport(
                "bm25",
                0.5,
                0.8,
                0.7,
                1.0,
                2.0,
                0.4,
                [QueryResult("q1", 0.5, 0.8, 0.7, 0.4, 1.0, [("d1", 2.0)])],
            )
        ],
        answer_results=[AnswerResult("q1", "what?", "this.", {"faithfulness": 0.5})],
        query_texts=[QueryText("q1", "what?", {"d1": 1})],
        passages=[Passage("d1", "title", "text")],
    )
    path = tmp_path / "r.json"
    path.write_text(report.to_json())
    main(["strip", str(path)])
    stripped = EvalReport.from_json(path.read_text())
    assert stripped == strip_texts(report)
    assert stripped.modes == report.modes and stripped.query_texts == [] and stripped.passages == []
    assert stripped.answer_results == [AnswerResult("q1", "", "", {"faithfulness": 0.5})]
    with pytest.raises(SystemExit):
        main(["strip", str(tmp_path / "missing.json")])
