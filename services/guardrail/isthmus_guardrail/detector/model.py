"""The learned prompt-injection detector: logistic regression over character n-grams and the encoder's
vector, scored with numpy from a plain artefact (``.npz`` read with ``allow_pickle=False`` + ``card.json``).

logit(text) = w_char · tfidf(char n-grams of the folded text) + w_emb · encoder(text) + b, with the
TF-IDF of scikit-learn's ``char_wb`` analyser (sublinear tf, idf, L2 norm) and the bundled bge-small
vector (``kind="passage"``, L2-normalised). Each stage has an operating point (a logit threshold chosen
on the validation split, written in the card); a finding's score is ``sigmoid(logit - threshold)``, so
0.5 is the operating point and a policy threshold moves from there. Long texts are scored per window
(:func:`~isthmus_guardrail.detector.features.windows`), the highest window wins and is the span.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.embedder import Embedder
from isthmus_core.ports.guard import Finding
from isthmus_guardrail.components import INJECTION_MODEL, Stage
from isthmus_guardrail.detector.features import ngram_counts, windows
from isthmus_guardrail.injection import normalise

#: the artefact shipped in the package (``make train-injection`` writes it)
ARTEFACT_DIR = Path(__file__).resolve().parent.parent / "models" / "injection"
WEIGHTS_FILE = "injection-lr.npz"
CARD_FILE = "card.json"
#: below this re-centred score a text has no finding
MIN_SCORE = 0.05
_ARRAYS = ("vocabulary", "idf", "coef_char", "coef_emb", "intercept", "ngram_range")


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True, slots=True)
class Weights:
    """The fitted model: n-gram vocabulary with idf and weights, embedding weights, intercept."""

    vocabulary: Mapping[str, int]
    idf: npt.NDArray[np.float64]
    coef_char: npt.NDArray[np.float64]
    coef_emb: npt.NDArray[np.float64]
    intercept: float
    ngram_range: tuple[int, int]

    @classmethod
    def load(cls, path: Path) -> Weights:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _ARRAYS}
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigurationError(
                f"injection model weights {path} cannot be read: {exc}", path=str(path)
            ) from exc
        vocab = [str(g) for g in arrays["vocabulary"].tolist()]
        weights = cls(
            vocabulary={g: i for i, g in enumerate(vocab)},
            idf=arrays["idf"].astype(np.float64),
            coef_char=arrays["coef_char"].astype(np.float64),
            coef_emb=arrays["coef_emb"].astype(np.float64),
            intercept=float(arrays["intercept"].reshape(-1)[0]),
            ngram_range=(int(arrays["ngram_range"][0]), int(arrays["ngram_range"][1])),
        )
        if not len(vocab) == len(weights.idf) == len(weights.coef_char):
            raise ConfigurationError(f"injection model weights {path} are inconsistent", path=str(path))
        return weights

    def save(self, path: Path) -> None:
        vocab = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        np.savez_compressed(
            path,
            vocabulary=np.array(vocab, dtype=np.str_),
            idf=self.idf.astype(np.float32),
            coef_char=self.coef_char.astype(np.float32),
            coef_emb=self.coef_emb.astype(np.float32),
            intercept=np.array([self.intercept], dtype=np.float64),
            ngram_range=np.array(self.ngram_range, dtype=np.int64),
        )

    def char_logit(self, text: str) -> float:
        """w_char · tfidf(text) (0 when no n-gram of the text is known)."""
        counts = ngram_counts(normalise(text).text, *self.ngram_range)
        pairs = [(self.vocabulary[g], c) for g, c in counts.items() if g in self.vocabulary]
        if not pairs:
            return 0.0
        index = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
        tf = 1.0 + np.log(np.fromiter((c for _, c in pairs), dtype=np.float64, count=len(pairs)))
        x = tf * self.idf[index]
        return float(x @ self.coef_char[index]) / float(np.sqrt(x @ x))


class LinearInjectionModel:
    """:class:`~isthmus_guardrail.components.InjectionModel` over :class:`Weights` and an encoder."""

    def __init__(self, weights: Weights, card: Mapping[str, Any], encoder: Embedder) -> None:
        thresholds = card.get("thresholds", {})
        try:
            self._thresholds: dict[str, float] = {
                stage: float(thresholds[stage]["logit"]) for stage in ("input", "ingest")
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"injection model card has no threshold per stage: {exc}") from exc
        if encoder.dimension != len(weights.coef_emb):
            raise ConfigurationError(
                f"injection model expects {len(weights.coef_emb)}-dimensional vectors, "
                f"encoder {encoder.model_id} gives {encoder.dimension}"
            )
        self._weights = weights
        self._encoder = encoder
        self._name = f"{card['name']}@{card['version']}"

    @property
    def name(self) -> str:
        return self._name

    def threshold(self, stage: Stage) -> float:
        """The stage's operating point, as a logit."""
        return self._thresholds[stage]

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """The raw logit of each text, scored whole (no windows)."""
        if not texts:
            return np.zeros(0)
        w = self._weights
        emb = np.asarray(self._encoder.embed(list(texts), kind="passage").vectors, dtype=np.float64)
        chars = np.array([w.char_logit(t) for t in texts])
        out: npt.NDArray[np.float64] = chars + emb @ w.coef_emb + w.intercept
        return out

    def window_logits(self, texts: Sequence[str]) -> list[tuple[tuple[int, int], float]]:
        """Per text, its highest-scoring window and that window's logit."""
        spans = [windows(t) for t in texts]
        flat = [t[s:e] for t, ws in zip(texts, spans, strict=True) for s, e in ws]
        logits = self.logits(flat) if flat else np.zeros(0)
        best: list[tuple[tuple[int, int], float]] = []
        i = 0
        for ws in spans:
            chunk = logits[i : i + len(ws)]
            k = int(np.argmax(chunk))
            best.append((ws[k], float(chunk[k])))
            i += len(ws)
        return best

    def findings(self, texts: Sequence[str], stage: Stage) -> list[list[Finding]]:
        threshold = self._thresholds[stage]
        scored = [t.strip() != "" for t in texts]
        best = iter(self.window_logits([t for t, keep in zip(texts, scored, strict=True) if keep]))
        out: list[list[Finding]] = []
        for keep in scored:
            if not keep:
                out.append([])
                continue
            (start, end), logit = next(best)
            score = sigmoid(logit - threshold)
            if score < MIN_SCORE:
                out.append([])
                continue
            out.append(
                [
                    Finding(
                        code=INJECTION_MODEL,
                        message=f"model {self._name}: P(injection) {sigmoid(logit):.3f}, {stage} operating "
                        f"point {sigmoid(threshold):.3f}, characters {start}-{end}",
                        start=start,
                        end=end,
                        score=round(score, 4),
                    )
                ]
            )
        return out


def read_card(directory: Path = ARTEFACT_DIR) -> dict[str, Any]:
    path = directory / CARD_FILE
    try:
        card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"injection model card {path} cannot be read: {exc}", path=str(path)
        ) from exc
    return card


def load_default(encoder: Embedder, directory: Path = ARTEFACT_DIR) -> LinearInjectionModel:
    """The shipped detector over ``encoder`` (the bundled bge-small :class:`OnnxEmbedder`; the model was
    trained on its vectors: another encoder is refused with :class:`ConfigurationError`)."""
    card = read_card(directory)
    expected = card.get("encoder", {}).get("model_id")
    if expected != encoder.model_id:
        raise ConfigurationError(
            f"injection model {card.get('name')} was trained on encoder {expected}, got {encoder.model_id}"
        )
    return LinearInjectionModel(Weights.load(directory / WEIGHTS_FILE), card, encoder)
