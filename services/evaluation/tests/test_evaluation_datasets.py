from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from isthmus_core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from isthmus_core.testing.infra import shared_datasets
from isthmus_evaluation.datasets import (
    BeirDataset,
    CorpusDoc,
    DatasetUpload,
    dataset_under_root,
    doc_text,
    load_beir,
    parse_beir,
)

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


# ------------------------------------------------------------------------- the datasets root (RunEval)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A datasets root holding ``tiny`` and ``nested/inner``; ``outside`` is a dataset beside the root."""
    base = tmp_path / "root"
    _write_dataset(base)
    _write_dataset(base / "nested", name="inner")
    _write_dataset(tmp_path, name="outside")
    return base


@pytest.mark.parametrize("relative", ["tiny", "./tiny", "tiny/", "nested/inner"])
def test_relative_path_under_the_root_is_accepted(root: Path, relative: str) -> None:
    path = dataset_under_root(root, relative)
    assert path.resolve().is_relative_to(root.resolve())
    assert load_beir(path).corpus["d1"] == CorpusDoc(title="Alpha", text="alpha body")


@pytest.mark.parametrize(
    ("relative", "why"),
    [
        ("../outside", "contains '..'"),
        ("../../etc", "contains '..'"),
        ("tiny/../../outside", "contains '..'"),
        ("..\\outside", "contains '..'"),
        ("/etc", "is absolute"),
        ("C:\\datasets\\tiny", "is absolute"),
        ("~/tiny", "is absolute"),
        ("", "is required"),
        ("  ", "is required"),
        ("tiny\0", "NUL"),
    ],
)
def test_paths_leaving_the_root_are_refused(root: Path, relative: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(why)):
        dataset_under_root(root, relative)


def test_an_absolute_path_is_refused_even_inside_the_root(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="is absolute"):
        dataset_under_root(root, str(root / "tiny"))


def test_a_symlinked_directory_leading_out_of_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(InvalidArgument, match="leads outside the datasets root"):
        dataset_under_root(root, "escape")


@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_a_symlinked_file_leading_out_of_the_root_is_refused(root: Path, tmp_path: Path, file: str) -> None:
    (root / "tiny" / file).unlink()
    (root / "tiny" / file).symlink_to(tmp_path / "outside" / file)
    with pytest.raises(InvalidArgument, match="leads outside the datasets root"):
        dataset_under_root(root, "tiny")


def test_a_symlink_staying_inside_the_root_is_fine(root: Path) -> None:
    (root / "alias").symlink_to(root / "tiny", target_is_directory=True)
    assert load_beir(dataset_under_root(root, "alias")).name == "tiny"


def test_no_root_configured_is_a_failed_precondition_saying_how_to_set_it() -> None:
    with pytest.raises(FailedPrecondition, match=r"ISTHMUS_EVALUATION_DATASETS_ROOT.*RunEvalUpload"):
        dataset_under_root(None, "tiny")


def test_a_root_that_is_not_a_directory_is_a_failed_precondition(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="not a directory"):
        dataset_under_root(tmp_path / "absent", "tiny")


# ------------------------------------------------------------------------ uploaded bytes (RunEvalUpload)


def _files(d: Path) -> tuple[bytes, bytes, bytes]:
    return (
        (d / "corpus.jsonl").read_bytes(),
        (d / "queries.jsonl").read_bytes(),
        (d / "qrels" / "test.tsv").read_bytes(),
    )


def test_uploaded_bytes_parse_like_the_files(tmp_path: Path) -> None:
    d = _write_dataset(
        tmp_path, corpus=[{"_id": "d1", "title": "Ærø", "text": "ø\r"}, {"_id": "d2", "text": "b"}, ""]
    )
    from_files, from_bytes = load_beir(d), parse_beir("tiny", *_files(d))
    assert from_bytes == from_files


def test_upload_pieces_may_split_lines_and_characters(tmp_path: Path) -> None:
    d = _write_dataset(tmp_path, corpus=[{"_id": "d1", "title": "Ærø", "text": "smørrebrød"}])
    upload = DatasetUpload(max_bytes=10_000)
    for part, data in zip(DatasetUpload.FILES, _files(d), strict=True):
        for i in range(0, len(data), 3):  # 3-byte pieces cut through UTF-8 sequences and lines
            upload.add(part, data[i : i + 3])
    assert upload.parse("tiny") == load_beir(d)


def test_upload_over_the_cap_is_refused_as_soon_as_it_crosses(tmp_path: Path) -> None:
    upload = DatasetUpload(max_bytes=10)
    upload.add("corpus", b"0123456789")
    with pytest.raises(ResourceExhausted, match=r"exceeds 10 bytes \(evaluation.max_upload_bytes\)"):
        upload.add("queries", b"x")


def test_upload_missing_a_file_names_it(tmp_path: Path) -> None:
    corpus, _, qrels = _files(_write_dataset(tmp_path))
    upload = DatasetUpload(max_bytes=10_000)
    upload.add("corpus", corpus)
    upload.add("qrels", qrels)
    with pytest.raises(InvalidArgument, match=r"no queries bytes; expected the BEIR layout"):
        upload.parse("tiny")


def test_uploaded_defects_name_the_file_and_line(tmp_path: Path) -> None:
    corpus, queries, qrels = _files(_write_dataset(tmp_path))
    with pytest.raises(InvalidArgument, match=r"^corpus\.jsonl: line 4 is not valid JSON"):
        parse_beir("tiny", corpus + b'{"_id": \n', queries, qrels)
    with pytest.raises(InvalidArgument, match=r"^qrels/test\.tsv: line 2: query-id 'q9' is not in"):
        parse_beir("tiny", corpus, queries, b"query-id\tcorpus-id\tscore\nq9\td1\t1\n")


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-x", "x" * 65, "sp ace"])
def test_uploaded_dataset_name_must_follow_the_rule(tmp_path: Path, name: str) -> None:
    files = _files(_write_dataset(tmp_path))
    with pytest.raises(InvalidArgument, match="dataset name"):
        parse_beir(name, *files)


@pytest.mark.parametrize("relative", ["é" * 128, "x" * 256, "a/" * 600])
def test_overlong_paths_are_invalid_not_an_os_error(root: Path, relative: str) -> None:
    with pytest.raises(InvalidArgument, match="too long"):
        dataset_under_root(root, relative)


def test_a_symlink_loop_is_invalid_not_an_os_error(root: Path) -> None:
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(InvalidArgument, match="'loop'"):
        dataset_under_root(root, "loop")


def test_load_beir_turns_os_errors_into_invalid_argument(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot be read"):
        load_beir(tmp_path / ("é" * 128))  # ENAMETOOLONG from the file system
