"""Features of (hypothesis = an answer sentence, premise = its cited text) for the grounding model.

Pure: the cross-encoder scores are computed by the caller (:mod:`.model`) and passed in. The premise is
split into sentences; only the ``k`` sentences sharing the most content words with the hypothesis are
*candidates* (they alone go through the cross-encoder: that caps the cost per answer sentence). The
candidate the cross-encoder scores highest is the *aligned* sentence. Features:

* relevance — the ms-marco cross-encoder logit of (hypothesis, aligned sentence), raw/10 and sigmoid;
* lexical support — share of the hypothesis's content words in the aligned sentence and in the whole
  premise, and share of the aligned sentence's content words in the hypothesis;
* polarity against the aligned sentence — negation mismatch (the lexical check's negation scopes),
  negation-cue parity, antonym pairs of the curated lexicon (:mod:`.lexicon`), negative affixes
  ("effective"/"ineffective"), quantifier classes (all/some/none), hedges;
* numbers — a number of the hypothesis absent from the premise, and from the aligned sentence (the
  lexical check's number reading);
* polarity against any candidate (contradiction is the max over the candidates), and products of the
  polarity signals with relevance (a negated *relevant* sentence contradicts; a negated unrelated one is
  merely unsupported).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from isthmus_guardrail.entailment.lexicon import (
    ANTONYM_PAIRS,
    HEDGES,
    NEGATIVE_PREFIXES,
    NONE,
    PARTIAL,
    UNIVERSAL,
)
from isthmus_guardrail.grounding import (
    _NEGATIONS,
    _negation_mismatch,
    _sentences,
    _stemmer,
    content_words,
    numbers,
)

FEATURE_NAMES: tuple[str, ...] = (
    "ce",
    "ce_sigmoid",
    "support_aligned",
    "support_premise",
    "coverage_aligned",
    "hypothesis_length",
    "negation_mismatch",
    "negation_parity",
    "antonym",
    "negative_affix",
    "number_mismatch",
    "number_mismatch_aligned",
    "has_number",
    "quantifier_mismatch",
    "hedge_mismatch",
    "polarity",
    "polarity_any_candidate",
    "polarity_x_relevance",
    "negation_x_relevance",
    "antonym_x_relevance",
    "number_x_relevance",
    "polarity_x_support",
    "number_x_support",
)

_TOKEN = re.compile(r"\w+(?:-\w+)*")
#: a premise sentence longer than this many characters is cut (the cross-encoder sees at most this much)
MAX_SENTENCE_CHARS = 600


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    return re.sub(r"n't\b", " not", folded)


@functools.lru_cache(maxsize=8192)
def _tokens(text: str) -> tuple[str, ...]:
    """Lower-cased word tokens (stop words kept: "more", "all", "not" matter here)."""
    return tuple(_TOKEN.findall(_fold(text)))


@functools.lru_cache(maxsize=8192)
def _stems(text: str) -> frozenset[str]:
    stemmer = _stemmer()
    return frozenset(stemmer.stemWords(list(_tokens(text))))


@functools.cache
def _antonyms() -> tuple[tuple[str, str], ...]:
    stemmer = _stemmer()
    return tuple((stemmer.stemWord(a), stemmer.stemWord(b)) for a, b in ANTONYM_PAIRS)


def clear_caches() -> None:
    """Forget every analysed text (an erasure: the keys are answer and chunk texts)."""
    _tokens.cache_clear()
    _stems.cache_clear()


def sentences_of(text: str) -> list[str]:
    """The sentences of a cited text (the lexical check's split), each cut at :data:`MAX_SENTENCE_CHARS`."""
    return [s.strip()[:MAX_SENTENCE_CHARS] for s in _sentences(text) if s.strip()]


def candidates(hypothesis: str, sentences: Sequence[str], k: int) -> list[int]:
    """Indices of the ``k`` sentences sharing most content words with ``hypothesis`` (ties: first)."""
    words = content_words(hypothesis)
    overlap = [len(words & content_words(s)) for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: (-overlap[i], i))
    return order[:k]


def antonym_conflicts(hypothesis: str, premise: str) -> list[tuple[str, str]]:
    """Lexicon pairs with one word in the hypothesis and its opposite in the premise (and not the word)."""
    h, p = _stems(hypothesis), _stems(premise)
    found = []
    for a, b in _antonyms():
        if a in h and b in p and a not in p and b not in h:
            found.append((a, b))
        elif b in h and a in p and b not in p and a not in h:
            found.append((b, a))
    return found


def affix_conflicts(hypothesis: str, premise: str) -> list[tuple[str, str]]:
    """Words whose negative-affix form is on the other side ("effective" vs "ineffective")."""
    h, p = set(_tokens(hypothesis)), set(_tokens(premise))
    found = []
    for one, other in ((h, p), (p, h)):
        for word in one:
            if len(word) < 4:
                continue
            for prefix in NEGATIVE_PREFIXES:
                if prefix + word in other and word not in other and prefix + word not in one:
                    found.append((word, prefix + word) if one is h else (prefix + word, word))
    return found


def _negation_cues(text: str) -> int:
    tokens = _tokens(text)
    return sum(1 for i, t in enumerate(tokens) if t in _NEGATIONS and not _not_only(tokens, i))


def _not_only(tokens: Sequence[str], i: int) -> bool:
    return tokens[i] == "not" and i + 1 < len(tokens) and tokens[i + 1] in ("only", "just", "merely")


def quantifier_mismatch(hypothesis: str, premise: str) -> bool:
    """ "all" against "some"/"no" (or "some" against "all") on the two sides."""
    h, p = set(_tokens(hypothesis)), set(_tokens(premise))
    universal_h, universal_p = bool(h & UNIVERSAL), bool(p & UNIVERSAL)
    partial_h, partial_p = bool(h & PARTIAL), bool(p & PARTIAL)
    return (universal_h and not universal_p and (partial_p or bool(p & NONE))) or (
        partial_h and not partial_p and universal_p
    )


def hedge_mismatch(hypothesis: str, premise: str) -> bool:
    return bool(set(_tokens(hypothesis)) & HEDGES) != bool(set(_tokens(premise)) & HEDGES)


def number_mismatch(hypothesis: str, premise: str) -> bool:
    """A number of the hypothesis that the premise does not hold (percentages need percentages)."""
    found = numbers(premise)
    values = {value for _, (value, _) in found}
    percents = {value for _, (value, percent) in found if percent}
    return any(
        not (value in percents if percent else value in values) for _, (value, percent) in numbers(hypothesis)
    )


def _polarity(hypothesis: str, sentence: str) -> tuple[float, float, float, float, float, float]:
    """negation mismatch, negation parity, antonym, affix, quantifier and hedge signals vs one sentence."""
    negation = float(_negation_mismatch(0, hypothesis, [sentence]) is not None)
    parity = float((_negation_cues(hypothesis) + _negation_cues(sentence)) % 2)
    antonym = float(min(len(antonym_conflicts(hypothesis, sentence)), 2)) / 2
    affix = float(bool(affix_conflicts(hypothesis, sentence)))
    quantifier = float(quantifier_mismatch(hypothesis, sentence))
    hedge = float(hedge_mismatch(hypothesis, sentence))
    return negation, parity, antonym, affix, quantifier, hedge


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def features(
    hypothesis: str, premise: str, candidate_sentences: Sequence[str], ce_scores: Sequence[float]
) -> npt.NDArray[np.float64]:
    """The :data:`FEATURE_NAMES` vector; ``ce_scores[i]`` is the cross-encoder logit of
    (hypothesis, ``candidate_sentences[i]``); ``premise`` is the whole cited text."""
    words = content_words(hypothesis)
    n = max(len(words), 1)
    if candidate_sentences:
        best = int(np.argmax(ce_scores))
        aligned, ce = candidate_sentences[best], float(ce_scores[best])
    else:
        aligned, ce = "", -12.0
    aligned_words = content_words(aligned)
    support_aligned = len(words & aligned_words) / n
    support_premise = len(words & content_words(premise)) / n
    coverage = len(words & aligned_words) / max(len(aligned_words), 1)
    negation, parity, antonym, affix, quantifier, hedge = _polarity(hypothesis, aligned)
    polarity = max(negation, antonym, affix)
    polarity_any = 0.0
    for sentence, score in zip(candidate_sentences, ce_scores, strict=True):
        if score >= ce - 3.0:
            n_, _, a_, f_, _, _ = _polarity(hypothesis, sentence)
            polarity_any = max(polarity_any, n_, a_, f_)
    num = float(number_mismatch(hypothesis, premise))
    num_aligned = float(number_mismatch(hypothesis, aligned))
    has_number = float(bool(numbers(hypothesis)))
    relevance = _sigmoid(ce)
    return np.array(
        [
            ce / 10.0,
            relevance,
            support_aligned,
            support_premise,
            coverage,
            math.log1p(len(words)) / 3.0,
            negation,
            parity,
            antonym,
            affix,
            num,
            num_aligned,
            has_number,
            quantifier,
            hedge,
            polarity,
            polarity_any,
            polarity * relevance,
            negation * relevance,
            antonym * relevance,
            max(num, num_aligned) * relevance,
            polarity * support_aligned,
            num * support_premise,
        ],
        dtype=np.float64,
    )
