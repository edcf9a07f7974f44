"""Loading of retrieval test collections in the BEIR layout.

A dataset is a directory holding::

    corpus.jsonl      one {"_id", "title", "text"} object per line
    queries.jsonl     one {"_id", "text"} object per line
    qrels/test.tsv    header ``query-id<TAB>corpus-id<TAB>score``, then one judgment per line

Two ways in, one parser: :func:`load_beir` streams the files of a directory line by line;
:func:`parse_beir` parses the same three files' bytes held in memory (a dataset uploaded with
``RunEvalUpload``, gathered by :class:`DatasetUpload` under a size cap). A directory named by a caller
(``RunEval``) is only ever looked up under the service's datasets root: :func:`dataset_under_root`.
Every defect is reported as :class:`InvalidArgument` naming the file and, where it applies, the line number.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from isthmus_core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = Path("qrels") / "test.tsv"
QRELS_HEADER = ("query-id", "corpus-id", "score")

#: what a dataset's name may be (it ends up in reports and, lower-cased, in the throwaway tenant's id)
DATASET_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DATASET_NAME_RULE = "dataset names are 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_MAX_PATH_BYTES = 1024
_MAX_NAME_BYTES = 255  # a file name's limit on Linux file systems
ROOT_HINT = (
    "set evaluation.datasets_root (ISTHMUS_EVALUATION_DATASETS_ROOT, or datasets_root in the [evaluation] "
    "table of the config file) to the directory holding the datasets, or send the dataset with "
    "RunEvalUpload (`isthmus eval PATH` does)"
)

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
    corpus_path, queries_path, qrels_path = path / CORPUS_FILE, path / QUERIES_FILE, path / QRELS_FILE
    try:
        if not path.is_dir():
            raise InvalidArgument(
                f"dataset directory {path} does not exist or is not a directory; {LAYOUT_HINT}"
            )
        for required in (corpus_path, queries_path, qrels_path):
            if not required.is_file():
                raise InvalidArgument(
                    f"dataset {path} has no file {required.relative_to(path)}; {LAYOUT_HINT}"
                )
        with corpus_path.open("rb") as c, queries_path.open("rb") as q, qrels_path.open("rb") as r:
            return _parse(
                path.resolve().name, (c, str(corpus_path)), (q, str(queries_path)), (r, str(qrels_path))
            )
    except OSError as exc:
        raise InvalidArgument(f"dataset {path} cannot be read: {exc.strerror or exc}") from exc


def parse_beir(name: str, corpus: bytes, queries: bytes, qrels: bytes) -> BeirDataset:
    """The BEIR dataset whose three files' contents are given (as uploaded); same rules as :func:`load_beir`.

    ``name`` must follow :data:`DATASET_NAME_RULE`; error messages name the files as in the layout.
    """
    return _parse(
        parse_dataset_name(name),
        (io.BytesIO(corpus), CORPUS_FILE),  # lines split as a file's are: on b"\n" only
        (io.BytesIO(queries), QUERIES_FILE),
        (io.BytesIO(qrels), str(QRELS_FILE)),
    )


def parse_dataset_name(raw: str) -> str:
    if not raw:
        raise InvalidArgument(f"the dataset name is required; {DATASET_NAME_RULE}")
    if DATASET_NAME_PATTERN.fullmatch(raw) is None:
        shown = repr(raw) if len(raw) <= 80 else repr(raw[:77]) + "..."
        raise InvalidArgument(f"invalid dataset name {shown}: {DATASET_NAME_RULE}")
    return raw


_Source = tuple[Iterable[bytes], str]  # raw lines, and the file's name for messages


def _parse(name: str, corpus_src: _Source, queries_src: _Source, qrels_src: _Source) -> BeirDataset:
    corpus = _load_corpus(*corpus_src)
    all_queries = _load_queries(*queries_src)
    qrels, unknown_docs = _load_qrels(*qrels_src, corpus, all_queries)
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirDataset(
        name=name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        unknown_qrel_docs=unknown_docs,
        unjudged_queries=len(all_queries) - len(queries),
    )


def dataset_under_root(root: Path | None, relative: str) -> Path:
    """The dataset directory ``relative`` names under ``root``, checked to stay inside it.

    Raises :class:`FailedPrecondition` when no root is configured, and :class:`InvalidArgument` for an
    empty or absolute path, a ``..`` component, or a directory (or one of its dataset files) that resolves
    outside the root through a symlink.
    """
    if root is None:
        raise FailedPrecondition(
            f"RunEval reads datasets only under a configured root, and none is set: {ROOT_HINT}"
        )
    if not relative or not relative.strip():
        raise InvalidArgument("dataset_path is required: a directory relative to the datasets root")
    if "\0" in relative:
        raise InvalidArgument("dataset_path contains a NUL character")
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or relative.startswith("~")
    ):
        raise InvalidArgument(
            f"dataset_path {relative!r} is absolute; give a path relative to the datasets root"
        )
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if len(relative.encode()) > _MAX_PATH_BYTES or any(len(p.encode()) > _MAX_NAME_BYTES for p in parts):
        raise InvalidArgument(
            f"dataset_path is too long: at most {_MAX_PATH_BYTES} bytes, {_MAX_NAME_BYTES} per component"
        )
    if ".." in parts:
        raise InvalidArgument(
            f"dataset_path {relative!r} contains '..'; give a path inside the datasets root"
        )
    base = root.resolve()
    if not base.is_dir():
        raise FailedPrecondition(f"the datasets root {root} is not a directory; {ROOT_HINT}")
    path = base / relative
    try:
        inside = all(
            candidate.resolve().is_relative_to(base)
            for candidate in (path, path / CORPUS_FILE, path / QUERIES_FILE, path / QRELS_FILE)
        )
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before 3.13), a refused name...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidArgument(f"dataset_path {relative!r} cannot be resolved: {reason}") from exc
    if not inside:
        raise InvalidArgument(
            f"dataset_path {relative!r} leads outside the datasets root (through a symlink)"
        )
    return path


class DatasetUpload:
    """The three files of an uploaded dataset, gathered piece by piece under a total size cap."""

    FILES = ("corpus", "queries", "qrels")

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._parts: dict[str, list[bytes]] = {f: [] for f in self.FILES}

    def add(self, file: str, data: bytes) -> None:
        """Raises :class:`ResourceExhausted` as soon as the total crosses the cap."""
        self._size += len(data)
        if self._size > self._max:
            raise ResourceExhausted(
                f"the uploaded dataset exceeds {self._max} bytes (evaluation.max_upload_bytes); "
                "send a smaller dataset or raise the limit"
            )
        self._parts[file].append(data)

    def parse(self, name: str) -> BeirDataset:
        """The dataset, or :class:`InvalidArgument` naming a missing file or the first defect."""
        missing = [f for f in self.FILES if not any(self._parts[f])]
        if missing:
            raise InvalidArgument(f"the upload has no {', '.join(missing)} bytes; {LAYOUT_HINT}")
        corpus, queries, qrels = (b"".join(self._parts[f]) for f in self.FILES)
        return parse_beir(name, corpus, queries, qrels)


# --------------------------------------------------------------------------------------------- helpers


def _lines(raw_lines: Iterable[bytes], path: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) for the non-blank lines of UTF-8 text, streaming."""
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{path}: line {lineno} is not valid UTF-8 ({exc.reason})") from exc
        if line.strip():
            yield lineno, line


def _json_objects(raw_lines: Iterable[bytes], path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in _lines(raw_lines, path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InvalidArgument(f"{path}: line {lineno} is a JSON {type(obj).__name__}, expected an object")
        yield lineno, obj


def _id_field(obj: dict[str, Any], path: str, lineno: int) -> str:
    if "_id" not in obj:
        raise InvalidArgument(f"{path}: line {lineno} has no '_id' field")
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidArgument(f"{path}: line {lineno}: '_id' must be a string, got {type(value).__name__}")
    ident = str(value)
    if not ident.strip():
        raise InvalidArgument(f"{path}: line {lineno}: '_id' is empty")
    return ident


def _str_field(obj: dict[str, Any], name: str, path: str, lineno: int, *, required: bool) -> str:
    if name not in obj or obj[name] is None:
        if required:
            raise InvalidArgument(f"{path}: line {lineno} has no '{name}' field")
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidArgument(f"{path}: line {lineno}: '{name}' must be a string, got {type(value).__name__}")
    return value


def _load_corpus(raw_lines: Iterable[bytes], path: str) -> dict[str, CorpusDoc]:
    corpus: dict[str, CorpusDoc] = {}
    for lineno, obj in _json_objects(raw_lines, path):
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


def _load_queries(raw_lines: Iterable[bytes], path: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, obj in _json_objects(raw_lines, path):
        query_id = _id_field(obj, path, lineno)
        if query_id in queries:
            raise InvalidArgument(f"{path}: line {lineno}: duplicate query id {query_id!r}")
        text = _str_field(obj, "text", path, lineno, required=True)
        if not text.strip():
            raise InvalidArgument(f"{path}: line {lineno}: query {query_id!r} has an empty 'text'")
        queries[query_id] = text
    return queries


def _load_qrels(
    raw_lines: Iterable[bytes], path: str, corpus: dict[str, CorpusDoc], queries: dict[str, str]
) -> tuple[dict[str, dict[str, int]], int]:
    qrels: dict[str, dict[str, int]] = {}
    unknown_docs = 0
    header_seen = False
    for lineno, line in _lines(raw_lines, path):
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
