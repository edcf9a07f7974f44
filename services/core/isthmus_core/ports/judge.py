"""Judge port: how evaluation scores an answer — entailment of claims by a premise, relevance of passages.

Evaluation (offline runs and online sampling) depends on this Protocol only. Adapters:

* the **offline** judge — a gRPC client of the guardrail's ``Entail`` / ``ScoreRelevance``
  (:mod:`isthmus_core.clients.judge`): the grounding model of the guardrail and the ms-marco
  cross-encoder, bundled, no network;
* the **LLM** judge — an OpenAI-compatible chat model (e.g. SmolLM2 behind llama.cpp) asked one question
  per pair, in the evaluation service.

A judge that cannot judge raises :class:`JudgeFailed` with a short ``failure`` code ("timeout",
"unavailable", "unparseable", "too_long", ...): evaluation counts the sample as failed with that reason,
it never becomes a NaN or a zero. Conformance: :mod:`isthmus_core.testing.judge_conformance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from isthmus_core.errors import IsthmusError

#: most pairs / passages one call judges, and the longest text of one
MAX_JUDGE_ITEMS = 256
MAX_JUDGE_TEXT_CHARS = 32_768
MAX_JUDGE_QUERY_CHARS = 4_096


class JudgeFailed(IsthmusError):
    """The judge could not judge: ``failure`` is a short code counted in reports, ``str(exc)`` the detail."""

    def __init__(self, failure: str, detail: str) -> None:
        super().__init__(f"judge failed ({failure}): {detail}", failure=failure)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Entailment:
    """Class probabilities of one (premise, hypothesis) pair; they sum to 1."""

    entailment: float
    neutral: float
    contradiction: float

    @property
    def label(self) -> str:
        """The most probable class: "entailment", "neutral" or "contradiction"."""
        scores = {"entailment": self.entailment, "neutral": self.neutral, "contradiction": self.contradiction}
        return max(scores, key=lambda k: scores[k])


@runtime_checkable
class Judge(Protocol):
    @property
    def name(self) -> str:
        """``offline:<model>`` or ``llm:<model>``: what the reports name the judge by."""

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        """For each ``(premise, hypothesis)``, in order, how far the premise entails the hypothesis.
        Raises :class:`JudgeFailed` (the whole call) when it cannot judge."""

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        """For each passage, in order, its relevance to ``query`` in 0..1. Raises :class:`JudgeFailed`."""
