"""Compound questions from a judged test collection, and how a run's context list is scored against them
(pure: no I/O; :mod:`isthmus_bench.agents` loads the datasets and runs the platform).

**Pairing.** The judged queries of one dataset (those with at least one judgment of relevance > 0, texts
whitespace-collapsed) are shuffled with ``random.Random(seed)`` and taken two by two; when more pairs
are asked for than one shuffle gives, further shuffles of the same generator continue (a pair already
made — in either order — is never made again, a query is never paired with itself). Pairs whose text
would exceed ``max_chars`` are passed over. Same dataset, ``n`` and seed → the same questions.

**Template** (:data:`TEMPLATE`): ``"<Q1 without trailing punctuation>? Also, <Q2>"`` — e.g. Cranfield's
``"what similarity laws must be obeyed when constructing aeroelastic models of heated high speed
aircraft ."`` and ``"what are the structural and aeroelastic problems associated with flight of high
speed aircraft ."`` make ``"what similarity laws must be obeyed when constructing aeroelastic models of
heated high speed aircraft? Also, what are the structural and aeroelastic problems associated with
flight of high speed aircraft ."``. Both originals are kept on the question (``parts``).

**Relevance.** The union of both queries' judgments with relevance > 0; a document judged for both keeps
the higher grade.

**Scoring** (:func:`score`). A run's context list is chunk-level and may name a document several times:
it is reduced to document ids in rank order, each kept at its first (best) rank (:func:`dedup`). Then
recall@k = relevant documents in the first k ÷ all relevant documents, and nDCG@k with linear gains (the
grade itself, as BEIR / trec_eval ``ndcg_cut``) and ``log2(rank + 1)`` discounts, normalised by the ideal
ordering of the question's grades. k is 20 (:data:`K`).

**Comparison** (:func:`paired_delta`): per-question differences candidate - baseline, their mean, and a
percentile bootstrap 95 % confidence interval of that mean (questions resampled with replacement,
``numpy.random.default_rng(seed)``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: the rank cut-off of every metric here
K = 20
#: how two questions are joined; ``first`` has lost its trailing punctuation and spaces
TEMPLATE = "{first}? Also, {second}"
#: stripped from the end of the first question before the template adds its "?"
TRAILING_PUNCTUATION = " \t\r\n.?!;:,"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class CompoundQuestion:
    """Two judged queries of one dataset asked as one question."""

    #: ``"<id 1>+<id 2>"``
    question_id: str
    text: str
    #: the two query ids, in the order they appear in ``text``
    query_ids: tuple[str, str]
    #: the two original query texts (whitespace-collapsed)
    parts: tuple[str, str]
    #: document id -> grade (> 0): the union of both queries' judgments, the higher grade on overlap
    qrels: Mapping[str, int]


def normalize(text: str) -> str:
    """Runs of whitespace (newlines in Cranfield and CISI queries) as one space, ends stripped."""
    return _SPACES.sub(" ", text).strip()


def join(first: str, second: str) -> str:
    """The compound text of two questions (:data:`TEMPLATE`)."""
    head = normalize(first).rstrip(TRAILING_PUNCTUATION)
    return TEMPLATE.format(first=head, second=normalize(second))


def union_qrels(*judgments: Mapping[str, int]) -> dict[str, int]:
    """Documents with relevance > 0 in any of ``judgments``, each with its highest grade."""
    out: dict[str, int] = {}
    for judged in judgments:
        for doc_id, grade in judged.items():
            if grade > 0 and grade > out.get(doc_id, 0):
                out[doc_id] = grade
    return out


def compound_questions(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    n: int,
    *,
    seed: int = 0,
    max_chars: int = 2000,
) -> list[CompoundQuestion]:
    """``n`` compound questions of the judged ``queries`` (see the module docstring), fewer only when the
    dataset has no more distinct pairs that fit ``max_chars``. Raises ``ValueError`` for ``n < 1`` or fewer
    than two judged queries."""
    if n < 1:
        raise ValueError(f"the number of questions must be at least 1, got {n}")
    judged = sorted(
        qid for qid, text in queries.items() if normalize(text) and union_qrels(qrels.get(qid, {}))
    )
    if len(judged) < 2:
        raise ValueError(f"compound questions need two judged queries; the dataset has {len(judged)}")
    rng = random.Random(seed)
    made: set[frozenset[str]] = set()
    out: list[CompoundQuestion] = []
    possible = len(judged) * (len(judged) - 1) // 2
    # every round either adds a pair or has shown all the pairs it could: bounded by the number of pairs
    stale_rounds = 0
    while len(out) < n and len(made) < possible and stale_rounds < 50:
        order = judged[:]
        rng.shuffle(order)
        before = len(out)
        for first, second in zip(order[0::2], order[1::2], strict=False):
            if len(out) >= n:
                break
            key = frozenset((first, second))
            if key in made:
                continue
            made.add(key)
            text = join(queries[first], queries[second])
            if len(text) > max_chars:
                continue
            out.append(
                CompoundQuestion(
                    question_id=f"{first}+{second}",
                    text=text,
                    query_ids=(first, second),
                    parts=(normalize(queries[first]), normalize(queries[second])),
                    qrels=union_qrels(qrels[first], qrels[second]),
                )
            )
        stale_rounds = stale_rounds + 1 if len(out) == before else 0
    return out


def dedup(document_ids: Iterable[str]) -> list[str]:
    """Document ids in rank order, each at its first rank only."""
    return list(dict.fromkeys(document_ids))


def recall_at(ranked: Sequence[str], qrels: Mapping[str, int], k: int = K) -> float:
    """Share of the relevant documents (grade > 0) among the first ``k`` of ``ranked`` (deduplicated)."""
    relevant = {d for d, g in qrels.items() if g > 0}
    if not relevant:
        raise ValueError("recall is undefined for a question without relevant documents")
    return len(relevant.intersection(dedup(ranked)[:k])) / len(relevant)


def ndcg_at(ranked: Sequence[str], qrels: Mapping[str, int], k: int = K) -> float:
    """nDCG@k with linear gains (the grades) over ``ranked`` (deduplicated); 0 when nothing relevant."""
    gains = sorted((g for g in qrels.values() if g > 0), reverse=True)
    if not gains:
        raise ValueError("nDCG is undefined for a question without relevant documents")
    dcg = sum(max(qrels.get(d, 0), 0) / math.log2(rank + 2) for rank, d in enumerate(dedup(ranked)[:k]))
    ideal = sum(g / math.log2(rank + 2) for rank, g in enumerate(gains[:k]))
    return dcg / ideal


@dataclass(frozen=True, slots=True)
class Scores:
    recall: float
    ndcg: float


def score(ranked: Sequence[str], qrels: Mapping[str, int], k: int = K) -> Scores:
    """recall@k and nDCG@k of one run's document ids (in rank order, repeats allowed)."""
    return Scores(recall_at(ranked, qrels, k), ndcg_at(ranked, qrels, k))


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("the mean of no values is undefined")
    return math.fsum(values) / len(values)


@dataclass(frozen=True, slots=True)
class PairedDelta:
    """Mean of candidate - baseline over the questions, with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int


def paired_delta(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDelta:
    """The mean per-question difference and its percentile bootstrap interval (questions resampled with
    replacement, ``resamples`` times). Raises ``ValueError`` when the two lists differ in length or are
    empty."""
    if len(candidate) != len(baseline):
        raise ValueError(f"paired scores differ in length: {len(candidate)} vs {len(baseline)}")
    if not candidate:
        raise ValueError("no paired scores")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    diffs = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(resamples, diffs.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedDelta(float(diffs.mean()), float(low), float(high), int(diffs.size))


def recall_ceiling(questions: Sequence[CompoundQuestion], k: int = K) -> float:
    """The best mean recall@k any ranking can reach: a question with more than ``k`` relevant documents
    can find at most ``k`` of them (its ceiling is ``k / |relevant|``)."""
    return mean([min(k, len(q.qrels)) / len(q.qrels) for q in questions if q.qrels])
