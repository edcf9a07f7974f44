"""Online evaluation, the pure parts: the window a request names, a sampled answer as a
:class:`~isthmus_evaluation.rag_metrics.RagSample`, and the nDCG@10 of answers to the questions of a
tenant's evaluation set.

The series themselves are kept in SQLite (:mod:`isthmus_evaluation.online_store`); sampled answers are
judged by :mod:`isthmus_evaluation.online_scoring`; drops are found by :mod:`isthmus_evaluation.drops`.

**Evaluation-set questions** (``online_eval_sets``: tenant -> BEIR dataset): a *sampled* answer whose
question, normalised (:func:`normalise_question`: case folded, runs of white space made one space, the
ends stripped), equals a query of the tenant's set is scored ``ndcg_at_10`` from the documents it
retrieved (``provenance.retrieved``, in rank order, a document at the rank of its first chunk) against
the set's qrels. No judge is needed. Only sampled answers carry their question, so probes of the set
(e.g. a rollout's) are counted only at the tenant's sample rate: give the probing tenant
``eval_sample_rates = {tenant: 1.0}`` in the orchestrator to score every probe. The question compared is
the one answered (after the input guardrail's redaction and a conversation's rewriting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from isthmus_core.contracts.events import AnswerProduced, AnswerSample
from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.metrics import NDCG_AT_10, evaluate_run
from isthmus_evaluation.rag_metrics import RagSample, SampleCitation, SampleContext, SampleSentence

#: the longest window a request may name (the retention bounds what it finds anyway)
MAX_WINDOW_SECONDS = 10 * 366 * 86_400


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """``[start, end)``; ``start`` None = everything kept before ``end``."""

    start: datetime | None
    end: datetime


def resolve_window(
    window_seconds: int, start: datetime | None, end: datetime | None, now: datetime
) -> TimeWindow:
    """The window of a ``GetOnlineMetrics`` request: the last ``window_seconds`` before ``now``, or
    ``[start, end)`` (``end`` None = now; no ``start`` = everything kept), or everything kept.
    ``window_seconds`` with ``start`` or ``end``, a negative or too long window, or an ``end`` not after
    ``start``: :class:`InvalidArgument`."""
    if window_seconds < 0:
        raise InvalidArgument(f"window_seconds must not be negative, got {window_seconds}")
    if window_seconds > MAX_WINDOW_SECONDS:
        raise InvalidArgument(f"window_seconds must be at most {MAX_WINDOW_SECONDS}, got {window_seconds}")
    if window_seconds and (start is not None or end is not None):
        raise InvalidArgument("give either window_seconds or start/end, not both")
    if window_seconds:
        return TimeWindow(now - timedelta(seconds=window_seconds), now)
    stop = end if end is not None else now
    if start is not None and stop <= start:
        raise InvalidArgument(f"end ({stop.isoformat()}) must be after start ({start.isoformat()})")
    return TimeWindow(start, stop)


def rag_sample(sample: AnswerSample) -> RagSample:
    """What the judge scores of a sampled answer (no qrels or reference: live questions have none)."""
    return RagSample(
        question=sample.question,
        answer=sample.answer,
        sentences=tuple(
            SampleSentence(s.text, tuple(SampleCitation(c.chunk_id, c.start, c.end) for c in s.citations))
            for s in sample.sentences
        ),
        contexts=tuple(SampleContext(c.chunk_id, c.document_id, c.start, c.text) for c in sample.contexts),
    )


def normalise_question(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class EvalSet:
    """A tenant's evaluation set: its queries by normalised text, and their qrels."""

    name: str
    #: normalised query text -> query id (the first of queries with the same text)
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]

    @classmethod
    def of(cls, name: str, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]) -> EvalSet:
        by_text: dict[str, str] = {}
        for qid in sorted(queries):
            if qid in qrels:
                by_text.setdefault(normalise_question(queries[qid]), qid)
        return cls(name, by_text, {q: dict(qrels[q]) for q in by_text.values()})

    def query_of(self, question: str) -> str | None:
        return self.queries.get(normalise_question(question))


def ranked_documents(retrieved: Sequence[str]) -> dict[str, float]:
    """Document ids in rank order (a document at the rank of its first chunk) as a run: higher = better."""
    ranking: dict[str, float] = {}
    for doc in retrieved:
        if doc not in ranking:
            ranking[doc] = float(len(retrieved) - len(ranking))
    return ranking


def eval_set_scores(ev: AnswerProduced, sets: Mapping[str, EvalSet]) -> dict[str, float]:
    """``{"ndcg_at_10": ...}`` for a sampled answer to a question of its tenant's evaluation set, else
    ``{}`` (see the module docstring)."""
    eval_set = sets.get(ev.tenant_id)
    if eval_set is None or ev.sample is None or ev.blocked:
        return {}
    qid = eval_set.query_of(ev.sample.question)
    if qid is None:
        return {}
    run = ranked_documents([c.document_id for c in ev.provenance.retrieved])
    result = evaluate_run({qid: eval_set.qrels[qid]}, {qid: run})
    return {NDCG_AT_10: result.ndcg_at_10}
