"""Answer-level (RAG) metrics of one answer, and their aggregation over many.

SKELETON (issue 17 contract): the signatures below are what the offline runner and online evaluation
use; the bodies are filled by the rag-metrics slice.

Metrics (each in 0..1, ``None`` when it does not apply to the sample):

* ``faithfulness`` — share of the answer's claims (its sentences with content) entailed by the text
  they cite (all contexts when a sentence cites none) — the judge's ``entail``;
* ``answer_relevance`` — the judge's ``relevance`` of the answer to the question;
* ``context_precision`` — RAGAS-style average precision of the contexts in rank order, a context being
  relevant when the judge's relevance to the question passes ``RELEVANT_AT``, or, when the sample
  carries relevance judgments (qrels), when its document is judged relevant;
* ``context_recall`` — only with references: the share of the reference answer's claims entailed by the
  contexts, or (qrels only) the share of the relevant documents present among the contexts.

A judge failure (:class:`~isthmus_core.ports.judge.JudgeFailed`) fails the whole sample: it is counted
with its ``failure`` code, never scored. Pure: no I/O library; the judge is a Protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from isthmus_core.ports.judge import Judge

FAITHFULNESS = "faithfulness"
ANSWER_RELEVANCE = "answer_relevance"
CONTEXT_PRECISION = "context_precision"
CONTEXT_RECALL = "context_recall"
RAG_METRICS = (FAITHFULNESS, ANSWER_RELEVANCE, CONTEXT_PRECISION, CONTEXT_RECALL)


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


async def score_sample(sample: RagSample, judge: Judge, tenant_id: str) -> SampleScores:
    """Score one answer with ``judge`` (see the module docstring). Never raises ``JudgeFailed``: a
    failure is returned as :attr:`SampleScores.failure`."""
    raise NotImplementedError("filled by the rag-metrics slice")


def aggregate(scores: Sequence[SampleScores]) -> RagAggregate:
    """Means per metric over the samples that have it; failures counted per reason."""
    raise NotImplementedError("filled by the rag-metrics slice")
