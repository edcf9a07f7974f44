"""The grounding model: a multinomial logistic-regression head over cross-encoder and polarity features.

Three classes, in this order: ``entailment``, ``neutral``, ``contradiction``. Inference is numpy only:
the head's weights are a plain ``.npz`` (loaded with ``allow_pickle=False``) beside its ``card.json``
(provenance, training command, metrics); see ``models/grounding/README.md``. Training
(scikit-learn, at training time only) is :mod:`isthmus_guardrail.training.grounding`.

Per answer sentence: its cited texts (clipped to their chunks, like the lexical check) are joined and
split into sentences (an answer sentence quoted verbatim is entailed outright), the ``candidates`` best
by content-word overlap go through the cross-encoder, and the features of :mod:`.features` give
P(entailment), P(neutral), P(contradiction). The cost is at most ``candidates`` cross-encoder runs per
answer sentence.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.guard import Finding, Policy
from isthmus_guardrail.components import CONTRADICTED, NOT_ENTAILED
from isthmus_guardrail.entailment.features import FEATURE_NAMES, candidates, features, sentences_of
from isthmus_guardrail.grounding import _cited_text

CLASSES = ("entailment", "neutral", "contradiction")
#: the artefact folder inside the package
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "grounding"
WEIGHTS_FILE = "grounding-lr.npz"
CARD_FILE = "card.json"
#: cross-encoder runs per answer sentence at most
DEFAULT_CANDIDATES = 3


class PairScorer(Protocol):
    """What the model needs of :class:`isthmus_core.onnx_reranker.OnnxCrossEncoder`."""

    @property
    def model_id(self) -> str: ...

    def score(self, query: str, passages: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class Judgement:
    """The model's view of one (sentence, cited text) pair."""

    entailment: float
    neutral: float
    contradiction: float
    aligned: str  # the cited sentence the cross-encoder found most relevant ("" if none)

    @property
    def label(self) -> str:
        probs = (self.entailment, self.neutral, self.contradiction)
        return CLASSES[int(np.argmax(probs))]


@dataclass(frozen=True, slots=True)
class Head:
    """A standardised multinomial logistic regression: softmax(((x - mean) / scale) @ coef.T + intercept)."""

    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]  # (classes, features)
    intercept: npt.NDArray[np.float64]  # (classes,)

    def probabilities(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        probs: npt.NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
        return probs

    def save(self, path: Path, feature_names: Sequence[str] = FEATURE_NAMES) -> None:
        np.savez(
            path,
            mean=self.mean,
            scale=self.scale,
            coef=self.coef,
            intercept=self.intercept,
            feature_names=np.array(list(feature_names)),
            classes=np.array(list(CLASSES)),
        )

    @classmethod
    def load(cls, path: Path) -> Head:
        """Raises ConfigurationError when the file is missing, unreadable or made for other features."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"grounding model weights {path} could not be read: {exc}") from exc
        names = tuple(str(n) for n in arrays.get("feature_names", ()))
        classes = tuple(str(c) for c in arrays.get("classes", ()))
        if names != FEATURE_NAMES or classes != CLASSES:
            raise ConfigurationError(
                f"grounding model weights {path} were trained for features {names} and classes {classes}; "
                f"this code computes {FEATURE_NAMES} and {CLASSES} (retrain: make train-grounding)"
            )
        head = cls(
            mean=arrays["mean"].astype(np.float64),
            scale=arrays["scale"].astype(np.float64),
            coef=arrays["coef"].astype(np.float64),
            intercept=arrays["intercept"].astype(np.float64),
        )
        if head.coef.shape != (len(CLASSES), len(FEATURE_NAMES)):
            raise ConfigurationError(f"grounding model weights {path} have coef shape {head.coef.shape}")
        return head


class NliGroundingModel:
    """:class:`~isthmus_guardrail.components.GroundingModel` over a cross-encoder and a trained head."""

    def __init__(
        self, cross_encoder: PairScorer, head: Head, *, name: str, candidates: int = DEFAULT_CANDIDATES
    ) -> None:
        if candidates < 1:
            raise ConfigurationError(f"grounding candidates must be at least 1, got {candidates}")
        self._cross_encoder = cross_encoder
        self._head = head
        self._name = name
        self._candidates = candidates

    @property
    def name(self) -> str:
        return self._name

    def judge(self, hypothesis: str, premise: str) -> Judgement:
        """P(entailment), P(neutral), P(contradiction) of ``hypothesis`` given ``premise``.

        A hypothesis quoted verbatim from the premise (case and spacing aside) is entailed without a
        model run, as in the lexical check: an extractive answer is never "contradicted" by its source."""
        quoted = _normalise(hypothesis)
        if quoted and quoted in _normalise(premise):
            return Judgement(1.0, 0.0, 0.0, hypothesis)
        sentences = sentences_of(premise)
        chosen = [sentences[i] for i in candidates(hypothesis, sentences, self._candidates)]
        scores = [float(s) for s in self._cross_encoder.score(hypothesis, chosen)] if chosen else []
        x = features(hypothesis, premise, chosen, scores)
        p = self._head.probabilities(x)
        aligned = chosen[int(np.argmax(scores))] if chosen else ""
        return Judgement(float(p[0]), float(p[1]), float(p[2]), aligned)

    def findings(
        self, sentences: Sequence[AnswerSentence], contexts: Sequence[Context], policy: Policy
    ) -> list[Finding]:
        by_chunk: dict[str, Context] = {}
        for c in contexts:
            by_chunk.setdefault(c.chunk_id, c)
        found: list[Finding] = []
        for i, sentence in enumerate(sentences):
            cited = []
            for span in sentence.citations:
                context = by_chunk.get(span.chunk_id)
                if context is None or context.document_id != span.document_id:
                    continue
                text = _cited_text(span, context)
                if text is not None and text.strip():
                    cited.append(text)
            if not cited or not sentence.text.strip():
                continue  # cites nothing known: the lexical check reports it
            j = self.judge(sentence.text, "\n\n".join(cited))
            probs = (
                f"P(entailment)={j.entailment:.2f}, P(neutral)={j.neutral:.2f}, "
                f"P(contradiction)={j.contradiction:.2f}"
            )
            if j.contradiction >= policy.contradiction_threshold:
                found.append(
                    Finding(
                        code=CONTRADICTED,
                        message=f"sentence {i}: contradicted by the cited text ({self._name}: {probs}); "
                        f"closest cited sentence: {j.aligned[:160]!r}",
                        score=round(j.contradiction, 4),
                    )
                )
            elif j.entailment < policy.entailment_threshold:
                found.append(
                    Finding(
                        code=NOT_ENTAILED,
                        message=f"sentence {i}: not entailed by the cited text ({self._name}: {probs}; "
                        f"threshold {policy.entailment_threshold:.2f})",
                        score=round(1.0 - j.entailment, 4),
                    )
                )
        return found


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split()).rstrip(" .!?")


def read_card(model_dir: Path = DEFAULT_DIR) -> dict[str, object]:
    path = model_dir / CARD_FILE
    try:
        card: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"grounding model card {path} could not be read: {exc}") from exc
    return card


def load_model(
    cross_encoder: PairScorer, model_dir: Path = DEFAULT_DIR, *, candidates: int = DEFAULT_CANDIDATES
) -> NliGroundingModel:
    """The model of ``model_dir`` (weights + card) over ``cross_encoder``."""
    card = read_card(model_dir)
    head = Head.load(model_dir / WEIGHTS_FILE)
    name = f"{card.get('name', 'grounding-lr')}@{card.get('version', '0')}"
    return NliGroundingModel(cross_encoder, head, name=name, candidates=candidates)
