from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.testing.infra import shared_datasets
from isthmus_evaluation.datasets import BeirDataset, CorpusDoc, doc_text, load_beir

DATASETS = ("cisi", "cranfield", "scifact")


@pytest.fixture(scope="module")
def readme_counts() -> dict[str, tuple[int, int, int, int]]:
    """name -> (docs, queries, judged queries, qrels) from the datasets README table."""
    text = shared_datasets("README.md").read_text(encoding="utf-8")
    counts: dict[str, tuple[int, int, int, int]] = {}
    for m in re.finditer(r"^\| (\w+) \| ([\d,]+) \| ([\d,]+) \(([\d,]+)\) \| ([\d,]+) \|", text, re.M):
        docs, queries, judged, qrels = (int(g.replace(",", "")) for g in m.groups()[1:])
        counts[m.group(1)] = (docs, queries, judged, qrels)
    return counts


def test_readme_lists_the_three_datasets(readme_counts: dict[str, tuple[int, int, int, int]]) -> None:
    assert set(readme_counts) == set(DATASETS)


@pytest.mark.parametrize("name", DATASETS)
def test_real_dataset_counts_match_readme(
    readme_counts: dict[str, tuple[int, int, int, int]], name: str
) -> None:
    docs, queries, judged, qrels = readme_counts[name]
    ds = load_beir(shared_datasets(name))
    assert ds.name == name
    assert len(ds.corpus) == docs
    assert len(ds.queries) == judged
    assert len(ds.queries) + ds.unjudged_queries == queries
    assert sum(len(j) for j in ds.qrels.values()) == qrels
    assert ds.unknown_qrel_docs == 0
    assert set(ds.queries) == set(ds.qrels)
    assert all(doc_id in ds.corpus for judged_docs in ds.qrels.values() for doc_id in judged_docs)


def test_cranfield_is_graded_one_to_four() -> None:
    ds = load_beir(shared_datasets("cranfield"))
    grades = {g for judged in ds.qrels.values() for g in judged.values()}
    assert grades == {1, 2, 3, 4}
    assert len(ds.corpus) == 1400 and len(ds.queries) == 225


# ------------------------------------------------------------------------------------------ doc_text


def test_doc_text_joins_title_and_body() -> None:
    assert doc_text(CorpusDoc(title="Wings", text="Lift is high.")) == "Wings\n\nLift is high."


def test_doc_text_title_only_when_body_empty() -> None:
    assert doc_text(CorpusDoc(title="Wings", text="")) == "Wings"
    assert doc_text(CorpusDoc(title="Wings", text="  \n")) == "Wings"


def test_doc_text_body_only_when_title_empty() -> None:
    assert doc_text(CorpusDoc(title="", text="Lift.")) == "Lift."


def test_doc_text_empty_when_both_empty() -> None:
    assert doc_text(CorpusDoc(title=" ", text="")) == ""


# ------------------------------------------------------------------------------------------ fixtures


def _write_dataset(
    root: Path,
    corpus: list[object] | None = None,
    queries: list[object] | None = None,
    qrels: str | None = None,
    name: str = "tiny",
) -> Path:
    d = root / name
    (d / "qrels").mkdir(parents=True)
    if corpus is None:
        corpus = [
            {"_id": "d1", "title": "Alpha", "text": "alpha body"},
            {"_id": "d2", "title": "Beta", "text": "beta body"},
            {"_id": "d3", "title": "Gamma", "text": ""},
        ]
    if queries is None:
        queries = [
            {"_id": "q1", "text": "alpha?"},
            {"_id": "q2", "text": "beta?"},
            {"_id": "q3", "text": "x"},
        ]
    if qrels is None:
        qrels = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq2\td2\t1\n"
    (d / "corpus.jsonl").write_text(
        "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in corpus), encoding="utf-8"
    )
    (d / "queries.jsonl").write_text(
        "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in queries), encoding="utf-8"
    )
    (d / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return d


def test_tiny_dataset_loads(tmp_path: Path) -> None:
    ds = load_beir(_write_dataset(tmp_path))
    assert isinstance(ds, BeirDataset)
    assert ds.name == "tiny"
    assert ds.corpus["d1"] == CorpusDoc(title="Alpha", text="alpha body")
    assert ds.qrels == {"q1": {"d1": 2, "d3": 1}, "q2": {"d2": 1}}
    assert ds.queries == {"q1": "alpha?", "q2": "beta?"}  # q3 has no judgment
    assert ds.unjudged_queries == 1
    assert ds.unknown_qrel_docs == 0


def test_dataset_is_frozen(tmp_path: Path) -> None:
    ds = load_beir(_write_dataset(tmp_path))
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


def test_blank_lines_and_missing_title_are_tolerated(tmp_path: Path) -> None:
    d = _write_dataset(
        tmp_path, corpus=[{"_id": "d1", "text": "t"}, "", {"_id": 7, "title": None, "text": "u"}]
    )
    ds = load_beir(d)
    assert ds.corpus["d1"] == CorpusDoc(title="", text="t")
    assert ds.corpus["7"] == CorpusDoc(title="", text="u")


def test_unknown_qrel_docs_are_dropped_and_counted(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tnope\t1\nq2\tgone\t1\n"
    ds = load_beir(_write_dataset(tmp_path, qrels=qrels))
    assert ds.unknown_qrel_docs == 2
    assert ds.qrels == {"q1": {"d1": 1}}
    assert set(ds.queries) == {"q1"}  # q2 judged only unknown documents


# ------------------------------------------------------------------------------------------ errors


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"does not exist.*corpus\.jsonl.*qrels/test\.tsv"):
        load_beir(tmp_path / "absent")


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    d = _write_dataset(tmp_path)
    (d / missing).unlink()
    with pytest.raises(InvalidArgument, match=rf"no file {re.escape(missing)}; expected the BEIR layout"):
        load_beir(d)


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, corpus=[{"_id": "d1", "text": "a"}, '{"_id": "d2", "text": '])
    with pytest.raises(InvalidArgument, match=r"corpus\.jsonl: line 2 is not valid JSON"):
        load_beir(d)


def test_non_object_line(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, queries=[{"_id": "q1", "text": "a"}, "[1, 2]"])
    with pytest.raises(InvalidArgument, match=r"queries\.jsonl: line 2 is a JSON list, expected an object"):
        load_beir(d)


def test_missing_id(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, corpus=[{"title": "t", "text": "a"}])
    with pytest.raises(InvalidArgument, match=r"corpus\.jsonl: line 1 has no '_id' field"):
        load_beir(d)


def test_missing_text(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2", "title": "t"}])
    with pytest.raises(InvalidArgument, match=r"corpus\.jsonl: line 2 has no 'text' field"):
        load_beir(d)


def test_wrong_field_type(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, queries=[{"_id": "q1", "text": 3}])
    with pytest.raises(InvalidArgument, match=r"queries\.jsonl: line 1: 'text' must be a string, got int"):
        load_beir(d)


def test_empty_query_text(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, queries=[{"_id": "q1", "text": "  "}])
    with pytest.raises(InvalidArgument, match=r"query 'q1' has an empty 'text'"):
        load_beir(d)


def test_duplicate_document_id(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, corpus=[{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}])
    with pytest.raises(InvalidArgument, match=r"line 2: duplicate document id 'd1'"):
        load_beir(d)


def test_empty_corpus(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, corpus=[""])
    with pytest.raises(InvalidArgument, match=r"corpus\.jsonl holds no documents"):
        load_beir(d)


def test_invalid_utf8(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path)
    (d / "corpus.jsonl").write_bytes(b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "\xff\xfe"}\n')
    with pytest.raises(InvalidArgument, match=r"corpus\.jsonl: line 2 is not valid UTF-8"):
        load_beir(d)


def test_wrong_qrels_header(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="qid\tdocid\trel\nq1\td1\t1\n")
    with pytest.raises(InvalidArgument, match=r"test\.tsv: line 1: expected the header"):
        load_beir(d)


def test_headerless_qrels(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="q1\td1\t1\n")
    with pytest.raises(InvalidArgument, match=r"expected the header .* got 'q1\\td1\\t1'"):
        load_beir(d)


def test_empty_qrels(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="")
    with pytest.raises(InvalidArgument, match=r"test\.tsv is empty"):
        load_beir(d)


def test_qrels_without_judgments(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="query-id\tcorpus-id\tscore\n")
    with pytest.raises(InvalidArgument, match=r"holds no judgments"):
        load_beir(d)


def test_qrels_wrong_field_count(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1 d2 1\n")
    with pytest.raises(InvalidArgument, match=r"line 3: expected 3 tab-separated fields .* got 1"):
        load_beir(d)


def test_qrels_non_integer_score(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(InvalidArgument, match=r"line 2: score 'high' is not an integer"):
        load_beir(d)


def test_qrels_unknown_query(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n")
    with pytest.raises(InvalidArgument, match=r"line 3: query-id 'q9' is not in queries\.jsonl"):
        load_beir(d)


def test_qrels_duplicate_judgment(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n")
    with pytest.raises(InvalidArgument, match=r"line 3: duplicate judgment for query 'q1', document 'd1'"):
        load_beir(d)
