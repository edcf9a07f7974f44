"""The learned prompt-injection detector: logistic regression over character and word n-grams and the
encoder's vector, with an n-gram-only first stage, scored with numpy from a plain artefact (``.npz``
read with ``allow_pickle=False`` + ``card.json``).

logit(text) = w_char · tfidf(char n-grams) + w_word · tfidf(word n-grams) + w_emb · encoder(text) + b,
with the TF-IDF of scikit-learn's ``char_wb`` and ``word`` analysers (sublinear tf, idf, L2 norm per
family) over the folded text and the bundled bge-small vector (``kind="passage"``, L2-normalised).

Cascade: the encoder is most of the cost of a check, so a second, n-gram-only logistic regression (the
*fast* model, same features without the vector) scores every text first. Each stage has a band of fast
logits chosen on the validation split: below it the text is benign, above it an injection, without the
encoder (on the validation split, every such decision is the full model's); only texts inside the band
are embedded and scored by the full model.

Each stage has an operating point (a logit threshold chosen on the validation split, one for the full
model, one for the fast model, written in the card); a finding's score is ``sigmoid(logit - threshold)``
of the model that decided, so 0.5 is the operating point and a policy threshold moves from there.
Texts are scored whole at the ``input`` stage (the vector sees the first ``max_tokens`` tokens, the
n-grams all of it); at ``ingest`` (document chunks) long texts are scored per window
(:func:`~isthmus_guardrail.detector.features.windows`), the highest window wins and is the span.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.embedder import Embedder
from isthmus_core.ports.guard import Finding
from isthmus_guardrail.components import INJECTION_MODEL, Stage
from isthmus_guardrail.detector.features import ngram_counts, windows, word_counts
from isthmus_guardrail.injection import normalise

#: the artefact shipped in the package (``make train-injection`` writes it)
ARTEFACT_DIR = Path(__file__).resolve().parent.parent / "models" / "injection"
WEIGHTS_FILE = "injection-lr.npz"
CARD_FILE = "card.json"
#: below this re-centred score a text has no finding
MIN_SCORE = 0.05
STAGES: tuple[Stage, ...] = ("input", "ingest")
_ARRAYS = ("vocabulary", "idf", "coef_char", "coef_emb", "intercept", "ngram_range")
_WORD_ARRAYS = ("word_vocabulary", "word_idf", "coef_word", "word_ngram_range")
_FAST_ARRAYS = ("fast_coef_char", "fast_coef_word", "fast_intercept")


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _empty() -> npt.NDArray[np.float64]:
    return np.zeros(0)


def _tfidf_dots(
    counts: Counter[str],
    vocabulary: Mapping[str, int],
    idf: npt.NDArray[np.float64],
    coefs: Sequence[npt.NDArray[np.float64]],
) -> list[float]:
    """``coef · tfidf`` for each of ``coefs`` (sublinear tf, idf, L2 norm); 0 when no n-gram is known."""
    pairs = [(vocabulary[g], c) for g, c in counts.items() if g in vocabulary]
    if not pairs:
        return [0.0] * len(coefs)
    index = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
    tf = 1.0 + np.log(np.fromiter((c for _, c in pairs), dtype=np.float64, count=len(pairs)))
    x = tf * idf[index]
    norm = float(np.sqrt(x @ x))
    return [float(x @ coef[index]) / norm for coef in coefs]


@dataclass(frozen=True, slots=True)
class Weights:
    """The fitted models: n-gram vocabularies with idf, the full model's weights (n-grams + vector +
    intercept) and, optionally, the fast model's (n-grams + intercept, same vocabularies)."""

    vocabulary: Mapping[str, int]
    idf: npt.NDArray[np.float64]
    coef_char: npt.NDArray[np.float64]
    coef_emb: npt.NDArray[np.float64]
    intercept: float
    ngram_range: tuple[int, int]
    word_vocabulary: Mapping[str, int] = field(default_factory=dict)
    word_idf: npt.NDArray[np.float64] = field(default_factory=_empty)
    coef_word: npt.NDArray[np.float64] = field(default_factory=_empty)
    word_ngram_range: tuple[int, int] = (1, 2)
    fast_coef_char: npt.NDArray[np.float64] | None = None
    fast_coef_word: npt.NDArray[np.float64] | None = None
    fast_intercept: float = 0.0

    @property
    def has_fast(self) -> bool:
        return self.fast_coef_char is not None

    @classmethod
    def load(cls, path: Path) -> Weights:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in _ARRAYS}
                arrays |= {name: npz[name] for name in (*_WORD_ARRAYS, *_FAST_ARRAYS) if name in npz.files}
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigurationError(
                f"injection model weights {path} cannot be read: {exc}", path=str(path)
            ) from exc

        def floats(name: str) -> npt.NDArray[np.float64]:
            return np.asarray(arrays[name], dtype=np.float64)

        vocab = [str(g) for g in arrays["vocabulary"].tolist()]
        words = [str(g) for g in arrays["word_vocabulary"].tolist()] if "word_vocabulary" in arrays else []
        has_words = all(name in arrays for name in _WORD_ARRAYS)
        has_fast = all(name in arrays for name in _FAST_ARRAYS)
        weights = cls(
            vocabulary={g: i for i, g in enumerate(vocab)},
            idf=floats("idf"),
            coef_char=floats("coef_char"),
            coef_emb=floats("coef_emb"),
            intercept=float(arrays["intercept"].reshape(-1)[0]),
            ngram_range=(int(arrays["ngram_range"][0]), int(arrays["ngram_range"][1])),
            word_vocabulary={g: i for i, g in enumerate(words)} if has_words else {},
            word_idf=floats("word_idf") if has_words else _empty(),
            coef_word=floats("coef_word") if has_words else _empty(),
            word_ngram_range=(
                (int(arrays["word_ngram_range"][0]), int(arrays["word_ngram_range"][1]))
                if has_words
                else (1, 2)
            ),
            fast_coef_char=floats("fast_coef_char") if has_fast else None,
            fast_coef_word=floats("fast_coef_word") if has_fast else None,
            fast_intercept=float(arrays["fast_intercept"].reshape(-1)[0]) if has_fast else 0.0,
        )
        n_char, n_word = len(vocab), len(weights.word_vocabulary)
        consistent = (
            n_char == len(weights.idf) == len(weights.coef_char)
            and n_word == len(weights.word_idf) == len(weights.coef_word)
            and (
                weights.fast_coef_char is None
                or (
                    len(weights.fast_coef_char) == n_char
                    and weights.fast_coef_word is not None
                    and len(weights.fast_coef_word) == n_word
                )
            )
        )
        if not consistent:
            raise ConfigurationError(f"injection model weights {path} are inconsistent", path=str(path))
        return weights

    def save(self, path: Path) -> None:
        vocab = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        words = sorted(self.word_vocabulary, key=self.word_vocabulary.__getitem__)
        arrays: dict[str, npt.NDArray[Any]] = {
            "vocabulary": np.array(vocab, dtype=np.str_),
            "idf": self.idf.astype(np.float32),
            "coef_char": self.coef_char.astype(np.float32),
            "coef_emb": self.coef_emb.astype(np.float32),
            "intercept": np.array([self.intercept], dtype=np.float64),
            "ngram_range": np.array(self.ngram_range, dtype=np.int64),
            "word_vocabulary": np.array(words, dtype=np.str_),
            "word_idf": self.word_idf.astype(np.float32),
            "coef_word": self.coef_word.astype(np.float32),
            "word_ngram_range": np.array(self.word_ngram_range, dtype=np.int64),
        }
        if self.fast_coef_char is not None and self.fast_coef_word is not None:
            arrays["fast_coef_char"] = self.fast_coef_char.astype(np.float32)
            arrays["fast_coef_word"] = self.fast_coef_word.astype(np.float32)
            arrays["fast_intercept"] = np.array([self.fast_intercept], dtype=np.float64)
        np.savez_compressed(path, allow_pickle=False, **arrays)

    def char_logit(self, text: str) -> float:
        """w_char · tfidf(char n-grams of the folded text) (0 when no n-gram of the text is known)."""
        counts = ngram_counts(normalise(text).text, *self.ngram_range)
        return _tfidf_dots(counts, self.vocabulary, self.idf, [self.coef_char])[0]

    def lexical_logits(self, text: str) -> tuple[float, float]:
        """The n-gram terms of ``text``: (the full model's, without vector and intercept; the fast
        model's logit, with its intercept — 0 when there is no fast model)."""
        folded = normalise(text).text
        char_coefs = [self.coef_char]
        word_coefs = [self.coef_word]
        if self.fast_coef_char is not None and self.fast_coef_word is not None:
            char_coefs.append(self.fast_coef_char)
            word_coefs.append(self.fast_coef_word)
        chars = _tfidf_dots(ngram_counts(folded, *self.ngram_range), self.vocabulary, self.idf, char_coefs)
        words = [0.0] * len(word_coefs)
        if self.word_vocabulary:
            counts = word_counts(folded, *self.word_ngram_range)
            words = _tfidf_dots(counts, self.word_vocabulary, self.word_idf, word_coefs)
        if len(chars) == 1:
            return chars[0] + words[0], 0.0
        return chars[0] + words[0], chars[1] + words[1] + self.fast_intercept


@dataclass(frozen=True, slots=True)
class Band:
    """A stage's cascade: fast logits below ``benign_below`` are benign, above ``injection_above``
    injections, without the encoder; ``fast_logit`` is the fast model's operating point."""

    fast_logit: float
    benign_below: float
    injection_above: float


@dataclass(frozen=True, slots=True)
class Score:
    """One text's (or window's) score: the deciding model's logit, its stage threshold, and whether the
    full model (with the encoder) decided."""

    logit: float
    threshold: float
    embedded: bool

    @property
    def recentred(self) -> float:
        return sigmoid(self.logit - self.threshold)


class LinearInjectionModel:
    """:class:`~isthmus_guardrail.components.InjectionModel` over :class:`Weights` and an encoder."""

    def __init__(self, weights: Weights, card: Mapping[str, Any], encoder: Embedder) -> None:
        thresholds = card.get("thresholds", {})
        try:
            self._thresholds: dict[str, float] = {
                stage: float(thresholds[stage]["logit"]) for stage in STAGES
            }
            self._bands: dict[str, Band] = {}
            for stage in STAGES:
                band = thresholds[stage].get("cascade")
                if band is not None and weights.has_fast:
                    self._bands[stage] = Band(
                        float(band["fast_logit"]), float(band["benign_below"]), float(band["injection_above"])
                    )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(f"injection model card has no threshold per stage: {exc}") from exc
        if encoder.dimension != len(weights.coef_emb):
            raise ConfigurationError(
                f"injection model expects {len(weights.coef_emb)}-dimensional vectors, "
                f"encoder {encoder.model_id} gives {encoder.dimension}"
            )
        self._weights = weights
        self._encoder = encoder
        self._name = f"{card['name']}@{card['version']}"
        self._windowed = {
            stage: bool(thresholds[stage].get("windows", stage == "ingest")) for stage in STAGES
        }

    @property
    def name(self) -> str:
        return self._name

    def threshold(self, stage: Stage) -> float:
        """The stage's operating point, as a logit of the full model."""
        return self._thresholds[stage]

    def _embedding_terms(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        if not texts:
            return np.zeros(0)
        emb = np.asarray(self._encoder.embed(list(texts), kind="passage").vectors, dtype=np.float64)
        out: npt.NDArray[np.float64] = emb @ self._weights.coef_emb
        return out

    def logits(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """The full model's raw logit of each text, scored whole (no windows, no cascade)."""
        lexical = np.array([self._weights.lexical_logits(t)[0] for t in texts])
        out: npt.NDArray[np.float64] = lexical + self._embedding_terms(texts) + self._weights.intercept
        return out

    def fast_logits(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """The fast (n-gram only) model's raw logit of each text, scored whole."""
        return np.array([self._weights.lexical_logits(t)[1] for t in texts])

    def scores(self, texts: Sequence[str], stage: Stage) -> list[Score]:
        """Each text scored whole through the stage's cascade: the encoder runs only for texts whose
        fast logit falls inside the stage's band (for every text when the model has no cascade)."""
        threshold = self._thresholds[stage]
        band = self._bands.get(stage)
        lexical = [self._weights.lexical_logits(t) for t in texts]
        out: list[Score | None] = [None] * len(texts)
        uncertain: list[int] = []
        for i, (_, fast) in enumerate(lexical):
            if band is not None and fast < band.benign_below:
                out[i] = Score(fast, band.fast_logit, embedded=False)
            elif band is not None and fast > band.injection_above:
                out[i] = Score(fast, band.fast_logit, embedded=False)
            else:
                uncertain.append(i)
        terms = self._embedding_terms([texts[i] for i in uncertain])
        for i, term in zip(uncertain, terms, strict=True):
            out[i] = Score(lexical[i][0] + float(term) + self._weights.intercept, threshold, embedded=True)
        return [s for s in out if s is not None]

    def window_scores(self, texts: Sequence[str], stage: Stage) -> list[tuple[tuple[int, int], Score]]:
        """Per text, its highest-scoring window and that window's score (the whole text at a stage
        scored without windows)."""
        spans = [windows(t) if self._windowed[stage] else [(0, len(t))] for t in texts]
        flat = [t[s:e] for t, ws in zip(texts, spans, strict=True) for s, e in ws]
        scored = self.scores(flat, stage)
        best: list[tuple[tuple[int, int], Score]] = []
        i = 0
        for ws in spans:
            chunk = scored[i : i + len(ws)]
            k = max(range(len(ws)), key=lambda j: chunk[j].logit - chunk[j].threshold)
            best.append((ws[k], chunk[k]))
            i += len(ws)
        return best

    def findings(self, texts: Sequence[str], stage: Stage) -> list[list[Finding]]:
        kept = [t.strip() != "" for t in texts]
        best = iter(self.window_scores([t for t, keep in zip(texts, kept, strict=True) if keep], stage))
        out: list[list[Finding]] = []
        for keep in kept:
            if not keep:
                out.append([])
                continue
            (start, end), score = next(best)
            recentred = score.recentred
            if recentred < MIN_SCORE:
                out.append([])
                continue
            how = "" if score.embedded else " (n-gram stage, encoder not needed)"
            out.append(
                [
                    Finding(
                        code=INJECTION_MODEL,
                        message=f"model {self._name}{how}: P(injection) {sigmoid(score.logit):.3f}, {stage} "
                        f"operating point {sigmoid(score.threshold):.3f}, characters {start}-{end}",
                        start=start,
                        end=end,
                        score=round(recentred, 4),
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
