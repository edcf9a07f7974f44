"""Grounding benchmark: the grounding (NLI) model vs the lexical check on SciFact claims.

    python -m isthmus_bench.guardrails.grounding [--datasets ../shared/datasets] [--limit N]

Each of the 300 claims of ``scifact/claims.jsonl`` is an answer sentence citing whole abstracts (title
and text, one context each): its gold evidence abstracts for SUPPORT / CONTRADICT claims, the top BM25
abstract for NOT_ENOUGH_INFO claims (bm25s over the 5,183 SciFact abstracts, English stop words and the
Snowball stemmer, the claim as the query). SciFact is the evaluation set only: nothing was trained or
tuned on it (the model is trained on Cranfield + CISI: see ``models/grounding/README.md``).

Rows, each predicting one of SUPPORT / CONTRADICT / NOT_ENOUGH_INFO per claim:

* ``lexical`` — :func:`check_grounding` at the default threshold: ``grounding.unsupported`` ->
  NOT_ENOUGH_INFO, else ``negation_mismatch`` / ``number_mismatch`` -> CONTRADICT, else SUPPORT;
* ``model`` — the grounding model's most probable class (entailment -> SUPPORT, contradiction ->
  CONTRADICT, neutral -> NOT_ENOUGH_INFO);
* ``model (guard findings)`` — what the default policy's findings say: ``grounding.contradicted``
  (P(contradiction) >= 0.5) -> CONTRADICT, else the lexical mapping (the guard runs both checks).

False alarms: the first rationale sentence of each evidence abstract, quoted verbatim and citing exactly
itself (what an extractive answer does), through the lexical check and the model at the default policy.

Latency: wall time per claim of the model (cross-encoder runs + features + head) and of the lexical
check, p50/p95, on this machine, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Policy
from isthmus_guardrail.components import CONTRADICTED
from isthmus_guardrail.grounding import NEGATION_MISMATCH, NUMBER_MISMATCH, UNSUPPORTED, check_grounding

LABELS = ("SUPPORT", "CONTRADICT", "NOT_ENOUGH_INFO")
_MODEL_TO_LABEL = {"entailment": "SUPPORT", "contradiction": "CONTRADICT", "neutral": "NOT_ENOUGH_INFO"}


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def f1_scores(gold: Sequence[str], pred: Sequence[str]) -> tuple[float, dict[str, float]]:
    per = {}
    for c in LABELS:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p != c)
        per[c] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return statistics.fmean(per.values()), per


def lexical_label(codes: set[str]) -> str:
    if UNSUPPORTED in codes:
        return "NOT_ENOUGH_INFO"
    if codes & {NEGATION_MISMATCH, NUMBER_MISMATCH}:
        return "CONTRADICT"
    return "SUPPORT"


def _abstract(row: dict[str, str]) -> str:
    title = row.get("title", "").strip()
    if title and title[-1] not in ".?!":
        title += "."
    return f"{title}\n\n{row.get('text', '').strip()}".strip()


def top_bm25(corpus: dict[str, dict[str, str]], queries: Sequence[str]) -> list[str]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus)
    tokens = bm25s.tokenize(
        [_abstract(corpus[i]) for i in ids], stopwords="en", stemmer=stemmer, show_progress=False
    )
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    q = bm25s.tokenize(list(queries), stopwords="en", stemmer=stemmer, show_progress=False)
    docs, _ = retriever.retrieve(q, k=1, show_progress=False)
    return [ids[int(row[0])] for row in docs]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--limit", type=int, default=0, help="first N claims only (0 = all)")
    args = parser.parse_args(argv)

    from isthmus_core.onnx_reranker import OnnxCrossEncoder
    from isthmus_guardrail.entailment import load_default

    scifact = args.datasets / "scifact"
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as f:
        corpus = {str(r["_id"]): r for r in map(json.loads, f)}
    with (scifact / "claims.jsonl").open(encoding="utf-8") as f:
        claims = [json.loads(line) for line in f]
    if args.limit:
        claims = claims[: args.limit]
    nei = [c for c in claims if c["label"] == "NOT_ENOUGH_INFO"]
    retrieved = dict(zip((c["_id"] for c in nei), top_bm25(corpus, [c["claim"] for c in nei]), strict=True))

    started = time.perf_counter()
    cross_encoder = OnnxCrossEncoder()
    model = load_default(cross_encoder)
    load_s = time.perf_counter() - started
    policy = Policy()
    gold: list[str] = []
    predicted: dict[str, list[str]] = {"lexical": [], "model": [], "model (guard findings)": []}
    model_ms: list[float] = []
    lexical_ms: list[float] = []
    try:
        for claim in claims:
            doc_ids = list(claim["evidence"]) or [retrieved[claim["_id"]]]
            contexts = [Context(chunk_id=d, document_id=d, text=_abstract(corpus[d])) for d in doc_ids]
            sentence = AnswerSentence(
                claim["claim"], tuple(CitedSpan(c.chunk_id, c.document_id, 0, len(c.text)) for c in contexts)
            )
            t0 = time.perf_counter()
            lexical = {f.code for f in check_grounding([sentence], contexts, policy.grounding_threshold)}
            t1 = time.perf_counter()
            judgement = model.judge(sentence.text, "\n\n".join(c.text for c in contexts))
            t2 = time.perf_counter()
            lexical_ms.append((t1 - t0) * 1000)
            model_ms.append((t2 - t1) * 1000)
            gold.append(claim["label"])
            predicted["lexical"].append(lexical_label(lexical))
            predicted["model"].append(_MODEL_TO_LABEL[judgement.label])
            contradicted = judgement.contradiction >= policy.contradiction_threshold
            findings = lexical | ({CONTRADICTED} if contradicted else set())
            predicted["model (guard findings)"].append(
                "CONTRADICT" if CONTRADICTED in findings else lexical_label(findings)
            )
        # false alarms on verbatim quotes (what an extractive answer cites): each evidence abstract's
        # first rationale sentence, citing its own abstract
        quotes = 0
        quote_blocks = {"lexical": 0, "model": 0}
        for claim in claims:
            for doc_id, evidence in claim["evidence"].items():
                text = _abstract(corpus[doc_id])
                rationale = next(iter(evidence["sentences"]), "")
                if not rationale or rationale not in text:
                    continue
                context = Context(chunk_id=doc_id, document_id=doc_id, text=text)
                start = text.index(rationale)
                sentence = AnswerSentence(rationale, (context.cite(start, start + len(rationale)),))
                quotes += 1
                quote_blocks["lexical"] += bool(
                    check_grounding([sentence], [context], policy.grounding_threshold)
                )
                quote_blocks["model"] += bool(model.findings([sentence], [context], policy))
    finally:
        cross_encoder.close()

    counts = {c: gold.count(c) for c in LABELS}
    print(
        f"SciFact claims: {len(gold)} ({', '.join(f'{c} {n}' for c, n in counts.items())}); "
        f"model {model.name} over {cross_encoder.model_id}, loaded in {load_s:.1f} s"
    )
    print("NOT_ENOUGH_INFO citations: top-1 BM25 abstract (bm25s, English stop words, Snowball stemmer)\n")
    print(
        "| check | macro-F1 | F1 SUPPORT | F1 CONTRADICT | F1 NOT_ENOUGH_INFO "
        "| p50 ms/sentence | p95 ms/sentence |"
    )
    print("|---|---|---|---|---|---|---|")
    for row, pred in predicted.items():
        macro, per = f1_scores(gold, pred)
        times = (
            lexical_ms
            if row == "lexical"
            else [a + b for a, b in zip(model_ms, lexical_ms, strict=True)]
            if row.startswith("model (")
            else model_ms
        )
        print(
            f"| {row} | {macro:.3f} | {per['SUPPORT']:.3f} | {per['CONTRADICT']:.3f} | "
            f"{per['NOT_ENOUGH_INFO']:.3f} | {_percentile(times, 0.5):.1f} | {_percentile(times, 0.95):.1f} |"
        )
    print()
    print(
        f"verbatim quotes (the first rationale sentence of each evidence abstract, citing exactly itself): "
        f"{quotes}; flagged by the lexical check {quote_blocks['lexical']}, "
        f"by the model (default policy: P(contradiction) >= {policy.contradiction_threshold}) "
        f"{quote_blocks['model']}"
    )
    print()
    print("confusion (gold -> predicted) of the model:")
    for g in LABELS:
        row_counts = {
            p: sum(1 for a, b in zip(gold, predicted["model"], strict=True) if a == g and b == p)
            for p in LABELS
        }
        print(f"  {g:16} " + "  ".join(f"{p} {n:3d}" for p, n in row_counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
