"""The slice of a shared dataset that this project's own CI gate (``make eval-gate``) evaluates.

Run::

    .venv/bin/python -m isthmus_bench.eval_gate slice --source ../shared/datasets/cranfield \\
        --out benchmarks/eval-gate/out/cranfield-gate [--queries 60] [--distractors 200]
    .venv/bin/python -m isthmus_bench.eval_gate strip benchmarks/eval-gate/baseline.json

The slice is built at run time from the shared dataset (which CI has at ``../shared``) rather than
committed: the source collections carry no licence that clearly permits redistributing them. It is
deterministic — the same source gives byte-identical files — so its scores can be compared with the
committed baseline report:

* the ``--queries`` judged queries whose ids hash lowest (SHA-256 of ``SALT + id``): a spread over the
  whole collection, not its first (often easiest or hardest) queries;
* every document judged for them (relevant or not: the graded judgments keep their grades);
* ``--distractors`` further documents, those with the lowest hashes among the rest, so that retrieval
  has to find the relevant ones among unrelated text, as in the full collection;
* files written in the source's own order, in the BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/test.tsv``), and the directory's name is what the report calls the dataset.

For the same reason the committed baseline report keeps no text of the collection: ``strip`` empties a
report's query texts and passages (and the questions and answers of its answer results), keeping every
score, document id and judgment the gate and the HTML comparison read.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.datasets import CORPUS_FILE, QRELS_FILE, QRELS_HEADER, QUERIES_FILE
from isthmus_evaluation.report import EvalReport

#: changes the draw; changing it (or the counts) changes the slice and so needs a new baseline
SALT = "isthmus-eval-gate-v1"


def _rank(key: str) -> str:
    return hashlib.sha256(f"{SALT}:{key}".encode()).hexdigest()


@dataclass(frozen=True)
class SliceCounts:
    documents: int
    queries: int
    judgments: int


def _read_jsonl(path: Path) -> list[tuple[str, str]]:
    """(id, the line as read) of every non-blank line."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append((str(json.loads(line)["_id"]), line))
    return out


def build_slice(source: Path, out: Path, queries: int = 60, distractors: int = 200) -> SliceCounts:
    """Write the slice of ``source`` (BEIR layout) into ``out``; its counts."""
    if queries < 1 or distractors < 0:
        raise ValueError("--queries must be at least 1 and --distractors at least 0")
    corpus = _read_jsonl(source / CORPUS_FILE)
    query_lines = _read_jsonl(source / QUERIES_FILE)
    qrels: dict[str, list[tuple[str, str]]] = {}
    lines = (source / QRELS_FILE).read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != QRELS_HEADER:
        raise ValueError(f"{source / QRELS_FILE}: expected the header {QRELS_HEADER}")
    doc_ids = {doc_id for doc_id, _ in corpus}
    for line in lines[1:]:
        if line.strip():
            qid, did, score = line.split("\t")
            if did in doc_ids:
                qrels.setdefault(qid, []).append((did, score))
    judged = [qid for qid, _ in query_lines if qid in qrels]
    chosen = set(sorted(judged, key=_rank)[:queries])
    needed = {did for qid in chosen for did, _ in qrels[qid]}
    rest = sorted((d for d in doc_ids if d not in needed), key=_rank)
    kept = needed | set(rest[:distractors])

    (out / QRELS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / CORPUS_FILE).write_text("".join(f"{ln}\n" for d, ln in corpus if d in kept), encoding="utf-8")
    (out / QUERIES_FILE).write_text(
        "".join(f"{ln}\n" for q, ln in query_lines if q in chosen), encoding="utf-8"
    )
    rows = [f"{q}\t{d}\t{s}\n" for q, _ in query_lines if q in chosen for d, s in qrels[q]]
    (out / QRELS_FILE).write_text("\t".join(QRELS_HEADER) + "\n" + "".join(rows), encoding="utf-8")
    return SliceCounts(documents=len(kept), queries=len(chosen), judgments=len(rows))


def strip_texts(report: EvalReport) -> EvalReport:
    """``report`` without the collection's text: no query texts, passages, questions or answers."""
    return dataclasses.replace(
        report,
        query_texts=[],
        passages=[],
        answer_results=[dataclasses.replace(a, question="", answer="") for a in report.answer_results],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m isthmus_bench.eval_gate", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cut = sub.add_parser("slice", help="write the slice of a dataset")
    cut.add_argument("--source", type=Path, required=True, help="a BEIR-layout dataset directory")
    cut.add_argument("--out", type=Path, required=True, help="where to write the slice (its name = dataset)")
    cut.add_argument("--queries", type=int, default=60)
    cut.add_argument("--distractors", type=int, default=200)
    strip = sub.add_parser("strip", help="remove the collection's text from a report file, in place")
    strip.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    if args.command == "strip":
        try:
            report = EvalReport.from_json(args.report.read_text(encoding="utf-8"))
            args.report.write_text(strip_texts(report).to_json() + "\n", encoding="utf-8")
        except (OSError, InvalidArgument) as exc:
            parser.error(f"cannot strip {args.report}: {exc}")
        return
    try:
        counts = build_slice(args.source, args.out, args.queries, args.distractors)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot slice {args.source}: {exc}")
    print(
        f"{args.out}: {counts.documents} documents, {counts.queries} queries, "
        f"{counts.judgments} judgments (from {args.source})"
    )


if __name__ == "__main__":
    main()
