"""Answer-level (RAG) metrics of one answer, and their aggregation over many.

Metrics (each in 0..1, ``None`` when it does not apply to the sample):

* ``faithfulness`` — share of the answer's **claims** entailed by the text they cite. A claim is one of
  the answer's sentences (``RagSample.sentences``, as the orchestrator split and cited them) holding at
  least one content word (a word that is not a stop word). Its premise is the text of its citations,
  sliced from the contexts by document offsets (several citations: their texts joined, in order); a
  sentence that cites nothing is judged against every context joined. A claim is entailed when the
  judge's most probable class (:attr:`Entailment.label`) is "entailment" — the label, not a probability
  threshold, so an LLM judge's yes/no/partial maps the same way. A citation that points at no context
  supports nothing (the claim counts as not entailed, without asking the judge, unless another of its
  citations resolves). An answer without claims — blocked, abstained ("I could not find an answer"), or
  empty: the orchestrator's message has no sentences — claims nothing, so its faithfulness is ``None``
  (not 1, not 0).
* ``answer_relevance`` — the judge's ``relevance`` of the answer text to the question (``None`` for an
  empty answer).
* ``context_precision`` — RAGAS-style average precision of the contexts in rank order: the mean, over
  the ranks k of the relevant contexts, of precision@k; 0 when no context is relevant, ``None`` when
  there are no contexts. A context is relevant, when the sample carries relevance judgments (qrels),
  when its document is judged > 0 (the judge is then not asked); otherwise when the judge's relevance
  to the question is at least :data:`RELEVANT_AT`. So the order of the contexts matters: relevant
  contexts first score higher.
* ``context_recall`` — with a ``reference`` answer: the share of the reference's claims (its sentences
  with a content word) entailed by every context joined (``None`` when it has none); with qrels only:
  the share of the relevant documents (judged > 0) present among the contexts (``None`` when none is
  relevant); otherwise ``None``.

Each sample costs at most two judge calls: one ``entail`` for every claim (the answer's and the
reference's) and one ``relevance`` for the answer and every context (one query: the question); more
than :data:`~isthmus_core.ports.judge.MAX_JUDGE_ITEMS` items are sent in several calls, and texts longer
than the judge limits are cut to them.

A judge failure (:class:`~isthmus_core.ports.judge.JudgeFailed`) anywhere fails the whole sample: it is
counted with its ``failure`` code, never scored. A judge that answers with the wrong number of results or
a relevance outside 0..1 fails the sample as ``malformed``. Pure: no I/O library; the judge is a Protocol.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from isthmus_core.ports.judge import (
    MAX_JUDGE_ITEMS,
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Judge,
    JudgeFailed,
)

FAITHFULNESS = "faithfulness"
ANSWER_RELEVANCE = "answer_relevance"
CONTEXT_PRECISION = "context_precision"
CONTEXT_RECALL = "context_recall"
RAG_METRICS = (FAITHFULNESS, ANSWER_RELEVANCE, CONTEXT_PRECISION, CONTEXT_RECALL)

#: a context whose judged relevance to the question reaches this is relevant (context precision)
RELEVANT_AT = 0.5
#: the failure code of a judge that broke its contract (wrong number of results, score outside 0..1)
MALFORMED = "malformed"

_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: words that carry no claim on their own (a sentence made only of them is not a claim)
STOP_WORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her his how i if
    in into is it its me my no not of on or our she so than that the their them then there these they
    this those to was we were what when where which who why will with would yes you your""".split()
)


@dataclass(frozen=True, slots=True)
class SampleCitation:
    chunk_id: str
    #: document offsets of the cited span
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class SampleSentence:
    text: str
    citations: tuple[SampleCitation, ...] = ()


@dataclass(frozen=True, slots=True)
class SampleContext:
    chunk_id: str
    document_id: str
    #: offset of ``text`` in the parsed document
    start: int
    text: str


@dataclass(frozen=True, slots=True)
class RagSample:
    """One answer to judge."""

    question: str
    answer: str
    sentences: tuple[SampleSentence, ...]
    #: best first
    contexts: tuple[SampleContext, ...]
    #: document id -> relevance (> 0 = relevant), when the question is judged (a dataset's qrels)
    qrels: Mapping[str, int] | None = None
    #: a reference answer, when the dataset has one
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class SampleScores:
    """The metrics of one sample (``None`` = not applicable), or its judge failure."""

    scores: Mapping[str, float] = field(default_factory=dict)
    #: the judge's failure code (``JudgeFailed.failure``) when it failed; then ``scores`` is empty
    failure: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MetricSummary:
    mean: float
    #: samples scored on this metric (the mean is over them)
    n: int
    #: samples the judge failed on (they count for every metric)
    failures: int


@dataclass(frozen=True, slots=True)
class RagAggregate:
    samples: int
    metrics: Mapping[str, MetricSummary]
    failure_reasons: Mapping[str, int]


def is_claim(text: str) -> bool:
    """``text`` holds a content word (a word that is not a stop word)."""
    return any(w.lower() not in STOP_WORDS for w in _WORD.findall(text))


def split_claims(text: str) -> list[str]:
    """The sentences of ``text`` (split after ``.``, ``!`` or ``?`` and a space) that are claims."""
    return [s.strip() for s in _SENTENCE_END.split(text) if is_claim(s)]


def cited_text(sentence: SampleSentence, contexts: Sequence[SampleContext]) -> str | None:
    """The text ``sentence`` cites, sliced from ``contexts`` by document offsets (its citations' texts
    joined, in order, each once); ``None`` when it cites nothing, ``""`` when no citation resolves."""
    if not sentence.citations:
        return None
    by_chunk = {c.chunk_id: c for c in contexts}
    parts: list[str] = []
    for cit in sentence.citations:
        ctx = by_chunk.get(cit.chunk_id)
        if ctx is None:
            continue
        lo = max(cit.start - ctx.start, 0)
        hi = min(cit.end - ctx.start, len(ctx.text))
        part = ctx.text[lo:hi].strip() if hi > lo else ""
        if part and part not in parts:
            parts.append(part)
    return " ".join(parts)


def average_precision(relevant: Sequence[bool]) -> float | None:
    """RAGAS context precision of a ranking: mean over relevant ranks k of precision@k (0 without a
    relevant item, ``None`` for an empty ranking)."""
    if not relevant:
        return None
    hits = 0
    total = 0.0
    for k, rel in enumerate(relevant, 1):
        if rel:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


async def score_sample(sample: RagSample, judge: Judge, tenant_id: str) -> SampleScores:
    """Score one answer with ``judge`` (see the module docstring). Never raises ``JudgeFailed``: a
    failure is returned as :attr:`SampleScores.failure`."""
    try:
        return SampleScores(scores=await _score(sample, judge, tenant_id))
    except JudgeFailed as exc:
        return SampleScores(failure=exc.failure, detail=str(exc))


async def _score(sample: RagSample, judge: Judge, tenant_id: str) -> dict[str, float]:
    contexts = sample.contexts
    all_contexts = "\n\n".join(c.text for c in contexts)

    # ---- entailment pairs: the answer's claims, then the reference's ----
    pairs: list[tuple[str, str]] = []
    answer_claims: list[int | None] = []  # index into pairs, None = unsupported without asking
    for s in sample.sentences:
        if not is_claim(s.text):
            continue
        premise = cited_text(s, contexts)
        if premise is None:
            premise = all_contexts
        if not premise.strip():
            answer_claims.append(None)
            continue
        answer_claims.append(len(pairs))
        pairs.append((_cut(premise), _cut(s.text)))
    reference_claims: list[int | None] = []
    if sample.reference is not None:
        for claim in split_claims(sample.reference):
            if not all_contexts.strip():
                reference_claims.append(None)
                continue
            reference_claims.append(len(pairs))
            pairs.append((_cut(all_contexts), _cut(claim)))
    entailed = await _entail(judge, tenant_id, pairs) if pairs else []

    # ---- relevance to the question: the answer, then the contexts (unless qrels judge them) ----
    passages: list[str] = []
    if sample.answer.strip():
        passages.append(_cut(sample.answer))
    judge_contexts = bool(contexts) and sample.qrels is None
    if judge_contexts:
        passages.extend(_cut(c.text) for c in contexts)
    relevance = await _relevance(judge, tenant_id, sample.question, passages) if passages else []

    scores: dict[str, float] = {}
    if answer_claims:
        scores[FAITHFULNESS] = sum(i is not None and entailed[i] for i in answer_claims) / len(answer_claims)
    if sample.answer.strip():
        scores[ANSWER_RELEVANCE] = relevance[0]
    if judge_contexts:
        ranked = [r >= RELEVANT_AT for r in relevance[len(relevance) - len(contexts) :]]
    else:
        qrels = sample.qrels or {}
        ranked = [qrels.get(c.document_id, 0) > 0 for c in contexts]
    precision = average_precision(ranked)
    if precision is not None:
        scores[CONTEXT_PRECISION] = precision
    if sample.reference is not None:
        if reference_claims:
            scores[CONTEXT_RECALL] = sum(i is not None and entailed[i] for i in reference_claims) / len(
                reference_claims
            )
    elif sample.qrels is not None:
        wanted = {d for d, r in sample.qrels.items() if r > 0}
        if wanted:
            present = {c.document_id for c in contexts}
            scores[CONTEXT_RECALL] = len(wanted & present) / len(wanted)
    return scores


def _cut(text: str, limit: int = MAX_JUDGE_TEXT_CHARS) -> str:
    return text[:limit]


async def _entail(judge: Judge, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
    out: list[bool] = []
    for i in range(0, len(pairs), MAX_JUDGE_ITEMS):
        batch = pairs[i : i + MAX_JUDGE_ITEMS]
        results = await judge.entail(tenant_id, batch)
        if len(results) != len(batch):
            raise JudgeFailed(MALFORMED, f"entail answered {len(results)} results for {len(batch)} pairs")
        out.extend(r.label == "entailment" for r in results)
    return out


async def _relevance(judge: Judge, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
    out: list[float] = []
    q = _cut(query, MAX_JUDGE_QUERY_CHARS)
    for i in range(0, len(passages), MAX_JUDGE_ITEMS):
        batch = passages[i : i + MAX_JUDGE_ITEMS]
        scores = await judge.relevance(tenant_id, q, batch)
        if len(scores) != len(batch):
            raise JudgeFailed(MALFORMED, f"relevance answered {len(scores)} scores for {len(batch)} passages")
        for s in scores:
            if not (math.isfinite(s) and 0.0 <= s <= 1.0):
                raise JudgeFailed(MALFORMED, f"relevance {s!r} is outside 0..1")
        out.extend(float(s) for s in scores)
    return out


def aggregate(scores: Sequence[SampleScores]) -> RagAggregate:
    """Means per metric over the samples that have it; failures counted per reason.

    A metric appears when at least one sample was scored on it (its ``n``); each carries ``failures``,
    the samples the judge failed on (they have no metric at all). A metric no sample has is absent,
    never a 0.
    """
    failure_reasons: dict[str, int] = {}
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s in scores:
        if s.failure is not None:
            failure_reasons[s.failure] = failure_reasons.get(s.failure, 0) + 1
            continue
        for name, value in s.scores.items():
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    failures = sum(failure_reasons.values())
    names = [m for m in RAG_METRICS if m in counts] + sorted(set(counts) - set(RAG_METRICS))
    return RagAggregate(
        samples=len(scores),
        metrics={m: MetricSummary(sums[m] / counts[m], counts[m], failures) for m in names},
        failure_reasons=failure_reasons,
    )
