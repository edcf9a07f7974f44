"""The checks the guard composes, as Protocols: each is optional (``None`` = off) and returns findings.

The :class:`~isthmus_guardrail.guard.Guard` decides actions from findings and the tenant's policy; a
component only finds. Every finding keeps its detector's name and score in ``code``/``message``/
``score`` (``prompt_injection.model`` "injection-lr@2 score 0.93"...), so a verdict explains itself.

Stages: ``"input"`` (questions, agent steps), ``"ingest"`` (document chunks). A learned injection
model has one operating point per stage (documents are long and varied: a stricter one at ingest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.guard import BannedTopic, Finding, Policy

Stage = Literal["input", "ingest"]

#: finding code of the learned injection detector
INJECTION_MODEL = "prompt_injection.model"
#: finding codes of the grounding model
CONTRADICTED = "grounding.contradicted"
NOT_ENTAILED = "grounding.not_entailed"
#: finding code prefix of toxicity and banned topics
TOXICITY_PREFIX = "toxicity."
TOPIC_PREFIX = "topic."


@runtime_checkable
class InjectionModel(Protocol):
    """A learned prompt-injection detector."""

    @property
    def name(self) -> str:
        """``<model>@<version>``, e.g. ``injection-lr@2``: named in every finding."""
        ...

    def findings(self, texts: Sequence[str], stage: Stage) -> list[list[Finding]]:
        """Per text, its :data:`INJECTION_MODEL` findings (zero or one; long texts are scored in windows,
        the span is the window's). Scores are re-centred so that 0.5 is the stage's operating point
        chosen on the validation split; a policy's ``injection_threshold`` (input) or
        ``ingest_injection_threshold`` (ingest) applies to them like to the rules' scores. A text
        scoring below 0.05 has no finding."""
        ...


@runtime_checkable
class GroundingModel(Protocol):
    """A model judging whether answer sentences are entailed by the spans they cite (NLI)."""

    @property
    def name(self) -> str: ...

    def findings(
        self, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], policy: Policy
    ) -> list[Finding]:
        """:data:`CONTRADICTED` for a sentence whose P(contradiction) ≥ ``policy.contradiction_threshold``,
        :data:`NOT_ENTAILED` for one whose P(entailment) < ``policy.entailment_threshold``; the message
        names the sentence index, the model and the probabilities. Sentences citing nothing known are
        left to the lexical check."""
        ...


@runtime_checkable
class ToxicityDetector(Protocol):
    def findings(self, text: str) -> list[Finding]:
        """``toxicity.<kind>`` findings with spans and scores in [0, 1]."""
        ...


@runtime_checkable
class TopicMatcher(Protocol):
    def findings(self, text: str, topics: Sequence[BannedTopic]) -> list[Finding]:
        """``topic.<name>`` for each topic whose similarity to the text is at or above its threshold
        (score = the similarity; the message names the topic and the threshold)."""
        ...
