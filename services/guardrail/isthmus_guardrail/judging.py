"""The evaluation judges the guardrail serves (``Entail``, ``ScoreRelevance``): its bundled models, stateless.

* **entailment** — the grounding (NLI) model of :mod:`isthmus_guardrail.entailment`: for each
  ``(premise, hypothesis)`` pair, P(entailment), P(neutral), P(contradiction) (they sum to 1), exactly as
  the output check judges an answer sentence against its cited text;
* **relevance** — the bundled ms-marco cross-encoder: for each passage, the sigmoid of its logit for the
  query, in 0..1.

Requests are checked against the limits of :mod:`isthmus_core.ports.judge` before any model runs
(:class:`~isthmus_core.errors.InvalidArgument` naming the item and the limit). Nothing is stored or
logged. Synchronous and CPU-bound: the gRPC edge runs these off the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.judge import (
    MAX_JUDGE_ITEMS,
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Entailment,
)
from isthmus_guardrail.entailment.model import Judgement, PairScorer


class EntailmentModel(Protocol):
    """What the judge needs of :class:`~isthmus_guardrail.entailment.model.NliGroundingModel`."""

    @property
    def name(self) -> str: ...

    def judge(self, hypothesis: str, premise: str) -> Judgement: ...


class Judges(Protocol):
    """What the gRPC edge serves: :class:`Judging` (tests may stand in for its models)."""

    @property
    def entailment_model(self) -> str: ...

    @property
    def relevance_model(self) -> str: ...

    def entail(self, pairs: Sequence[tuple[str, str]]) -> list[Entailment]: ...

    def relevance(self, query: str, passages: Sequence[str]) -> list[float]: ...


def check_pairs(pairs: Sequence[tuple[str, str]]) -> None:
    """InvalidArgument unless 1..MAX_JUDGE_ITEMS pairs, each text within MAX_JUDGE_TEXT_CHARS and each
    hypothesis non-blank (a premise may be blank: then nothing supports the hypothesis)."""
    if not pairs:
        raise InvalidArgument("pairs is empty: send at least one (premise, hypothesis) pair")
    if len(pairs) > MAX_JUDGE_ITEMS:
        raise InvalidArgument(f"{len(pairs)} pairs; the limit is {MAX_JUDGE_ITEMS} per call")
    for i, (premise, hypothesis) in enumerate(pairs):
        for field, text in (("premise", premise), ("hypothesis", hypothesis)):
            if len(text) > MAX_JUDGE_TEXT_CHARS:
                raise InvalidArgument(
                    f"pairs[{i}].{field} is {len(text)} characters; the limit is {MAX_JUDGE_TEXT_CHARS}"
                )
        if not hypothesis.strip():
            raise InvalidArgument(f"pairs[{i}].hypothesis is blank: there is no claim to judge")


def check_relevance(query: str, passages: Sequence[str]) -> None:
    """InvalidArgument unless a non-blank query within MAX_JUDGE_QUERY_CHARS and 1..MAX_JUDGE_ITEMS
    passages each within MAX_JUDGE_TEXT_CHARS."""
    if not query.strip():
        raise InvalidArgument("query is blank: relevance needs a query")
    if len(query) > MAX_JUDGE_QUERY_CHARS:
        raise InvalidArgument(f"query is {len(query)} characters; the limit is {MAX_JUDGE_QUERY_CHARS}")
    if not passages:
        raise InvalidArgument("passages is empty: send at least one passage")
    if len(passages) > MAX_JUDGE_ITEMS:
        raise InvalidArgument(f"{len(passages)} passages; the limit is {MAX_JUDGE_ITEMS} per call")
    for i, passage in enumerate(passages):
        if len(passage) > MAX_JUDGE_TEXT_CHARS:
            raise InvalidArgument(
                f"passages[{i}] is {len(passage)} characters; the limit is {MAX_JUDGE_TEXT_CHARS}"
            )


def _sigmoid(x: float) -> float:
    # split by sign: exp never overflows
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class Judging:
    """The two judges over the guardrail's loaded models (the grounding model and its cross-encoder)."""

    def __init__(self, entailment: EntailmentModel, cross_encoder: PairScorer) -> None:
        self._entailment = entailment
        self._cross_encoder = cross_encoder

    @property
    def entailment_model(self) -> str:
        """e.g. ``grounding-lr@1`` (the model card's name@version)."""
        return self._entailment.name

    @property
    def relevance_model(self) -> str:
        """e.g. ``reranker_en@<digest>`` (the cross-encoder's directory and weights digest)."""
        return self._cross_encoder.model_id

    def entail(self, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        """Class probabilities of each ``(premise, hypothesis)``, in order (limits checked first)."""
        check_pairs(pairs)
        return [_entailment(self._entailment.judge(h, p)) for p, h in pairs]

    def relevance(self, query: str, passages: Sequence[str]) -> list[float]:
        """The cross-encoder's sigmoid relevance of each passage to ``query``, in order, in 0..1."""
        check_relevance(query, passages)
        return [_sigmoid(float(s)) for s in self._cross_encoder.score(query, list(passages))]


def _entailment(j: Judgement) -> Entailment:
    # renormalised in float64: the head's softmax sums to 1 up to rounding, the proto carries doubles
    total = j.entailment + j.neutral + j.contradiction
    return Entailment(j.entailment / total, j.neutral / total, j.contradiction / total)
