"""Loading of retrieval test collections in the BEIR layout.

A dataset is a directory holding::

    corpus.jsonl      one {"_id", "title", "text"} object per line
    queries.jsonl     one {"_id", "text"} object per line
    qrels/test.tsv    header ``query-id<TAB>corpus-id<TAB>score``, then one judgment per line

The files are streamed line by line. Every defect is reported as :class:`InvalidArgument` naming the file
and, where it applies, the line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus_core.errors import InvalidArgument

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = Path("qrels") / "test.tsv"
QRELS_HEADER = ("query-id", "corpus-id", "score")

LAYOUT_HINT = (
    "expected the BEIR layout: corpus.jsonl ({_id, title, text} per line), "
    "queries.jsonl ({_id, text} per line) and qrels/test.tsv (header 'query-id<TAB>corpus-id<TAB>score')"
)


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    """A loaded collection.

    ``queries`` holds only the judged queries (those with at least one line in the qrels);
    ``qrels`` maps query id -> document id -> graded relevance. Judgments naming a document absent from
    the corpus are dropped and counted in ``unknown_qrel_docs``.
    """

    name: str
    corpus: dict[str, CorpusDoc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    unknown_qrel_docs: int = 0
    #: queries present in queries.jsonl without any judgment (not part of ``queries``)
    unjudged_queries: int = field(default=0)


def doc_text(doc: CorpusDoc) -> str:
    """The text to index for a document: title and body separated by a blank line.

    Only the title when the body is empty, only the body when the title is; ``""`` when both are.
    """
    title, text = doc.title, doc.text
    if not text.strip():
        return title if title.strip() else ""
    if not title.strip():
        return text
    return f"{title}\n\n{text}"


def load_beir(path: Path) -> BeirDataset:
    """Load the BEIR dataset in directory ``path`` (its name becomes the dataset name).

    Raises :class:`InvalidArgument` when the directory or one of its files is missing, a JSON line is
    malformed or lacks a field, an id is repeated, the qrels header or a qrels line is wrong, or the qrels
    name a query absent from queries.jsonl.
    """
    path = Path(path)
    if not path.is_dir():
        raise InvalidArgument(f"dataset directory {path} does not exist or is not a directory; {LAYOUT_HINT}")
    corpus_path, queries_path, qrels_path = path / CORPUS_FILE, path / QUERIES_FILE, path / QRELS_FILE
    for required in (corpus_path, queries_path, qrels_path):
        if not required.is_file():
            raise InvalidArgument(f"dataset {path} has no file {required.relative_to(path)}; {LAYOUT_HINT}")

    corpus = _load_corpus(corpus_path)
    all_queries = _load_queries(queries_path)
    qrels, unknown_docs = _load_qrels(qrels_path, corpus, all_queries)
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(
        name=path.resolve().name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        unknown_qrel_docs=unknown_docs,
        unjudged_queries=len(all_queries) - len(queries),
    )


# --------------------------------------------------------------------------------------------- helpers


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) for the non-blank lines of a UTF-8 file, streaming."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgument(f"{path}: line {lineno} is not valid UTF-8 ({exc.reason})") from exc
            if line.strip():
                yield lineno, line


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{path}: line {lineno} is a JSON {type(obj).__name__}, expected an object")
        yield lineno, obj


def _id_field(obj: dict[str, Any], path: Path, lineno: int) -> str:
    if "_id" not in obj:
        raise InvalidArgument(f"{path}: line {lineno} has no '_id' field")
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidArgument(f"{path}: line {lineno}: '_id' must be a string, got {type(value).__name__}")
    ident = str(value)
    if not ident.strip():
        raise InvalidArgument(f"{path}: line {lineno}: '_id' is empty")
    return ident


def _str_field(obj: dict[str, Any], name: str, path: Path, lineno: int, *, required: bool) -> str:
    if name not in obj or obj[name] is None:
        if required:
            raise InvalidArgument(f"{path}: line {lineno} has no '{name}' field")
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidArgument(f"{path}: line {lineno}: '{name}' must be a string, got {type(value).__name__}")
    return value


def _load_corpus(path: Path) -> dict[str, CorpusDoc]:
    corpus: dict[str, CorpusDoc] = {}
    for lineno, obj in _json_objects(path):
        doc_id = _id_field(obj, path, lineno)
        if doc_id in corpus:
            raise InvalidArgument(f"{path}: line {lineno}: duplicate document id {doc_id!r}")
        corpus[doc_id] = CorpusDoc(
            title=_str_field(obj, "title", path, lineno, required=False),
            text=_str_field(obj, "text", path, lineno, required=True),
        )
    if not corpus:
        raise InvalidArgument(f"{path} holds no documents")
    return corpus


def _load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, obj in _json_objects(path):
        query_id = _id_field(obj, path, lineno)
        if query_id in queries:
            raise InvalidArgument(f"{path}: line {lineno}: duplicate query id {query_id!r}")
        text = _str_field(obj, "text", path, lineno, required=True)
        if not text.strip():
            raise InvalidArgument(f"{path}: line {lineno}: query {query_id!r} has an empty 'text'")
        queries[query_id] = text
    return queries


def _load_qrels(
    path: Path, corpus: dict[str, CorpusDoc], queries: dict[str, str]
) -> tuple[dict[str, dict[str, int]], int]:
    qrels: dict[str, dict[str, int]] = {}
    unknown_docs = 0
    header_seen = False
    for lineno, line in _lines(path):
        fields = tuple(f.strip() for f in line.rstrip("\r\n").split("\t"))
        if not header_seen:
            if fields != QRELS_HEADER:
                raise InvalidArgument(
                    f"{path}: line {lineno}: expected the header "
                    f"'query-id<TAB>corpus-id<TAB>score', got {line.rstrip()!r}"
                )
            header_seen = True
            continue
        if len(fields) != 3:
            raise InvalidArgument(
                f"{path}: line {lineno}: expected 3 tab-separated fields "
                f"(query-id, corpus-id, score), got {len(fields)}"
            )
        query_id, doc_id, raw_score = fields
        if not query_id or not doc_id:
            raise InvalidArgument(f"{path}: line {lineno}: empty query-id or corpus-id")
        try:
            score = int(raw_score)
        except ValueError:
            raise InvalidArgument(f"{path}: line {lineno}: score {raw_score!r} is not an integer") from None
        if query_id not in queries:
            raise InvalidArgument(f"{path}: line {lineno}: query-id {query_id!r} is not in {QUERIES_FILE}")
        if doc_id not in corpus:
            unknown_docs += 1
            continue
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            raise InvalidArgument(
                f"{path}: line {lineno}: duplicate judgment for query {query_id!r}, document {doc_id!r}"
            )
        judged[doc_id] = score
    if not header_seen:
        raise InvalidArgument(f"{path} is empty; expected the header 'query-id<TAB>corpus-id<TAB>score'")
    if not qrels:
        raise InvalidArgument(f"{path} holds no judgments for documents of {CORPUS_FILE}")
    return qrels, unknown_docs
