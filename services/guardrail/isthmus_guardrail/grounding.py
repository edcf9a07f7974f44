"""Grounding check: is every answer sentence supported by the context spans it cites?

Lexical support, deliberately simple and explainable: a sentence is supported when at least
``threshold`` of its distinct content words occur in the text of its cited spans (all of a sentence's
spans together). Words are NFKC-folded, lower-cased, stop words are removed and the rest are stemmed with
the Snowball English stemmer (PyStemmer), so "indexes"/"indexed" match "index". Negations (no, not,
never, n't, ...) are *kept* as content words, so "is not supported" is not grounded by "is supported".
A sentence extracted verbatim from a context always passes; a sentence with no content words ("Yes.")
passes if it cites a known span.

Spans are document offsets; a context covers ``[context.start, context.start + len(context.text))``.
A span partly outside its chunk is clipped to it; a span wholly outside is an unknown citation.

Findings (the sentence's 0-based index is in every message):

* ``grounding.uncited`` — the sentence cites nothing;
* ``grounding.unknown_citation`` — a cited chunk is not among the contexts (or the span is not in it);
* ``grounding.unsupported`` — the cited text holds too few of the sentence's content words
  (score = 1 - support).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Finding

UNCITED = "grounding.uncited"
UNKNOWN_CITATION = "grounding.unknown_citation"
UNSUPPORTED = "grounding.unsupported"

_NEGATIONS = frozenset(
    {"no", "not", "never", "none", "nor", "nobody", "nothing", "nowhere", "cannot", "without"}
)
_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")
_MAX_LISTED = 8


@functools.cache
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(w.lower() for w in STOP_WORDS) - _NEGATIONS


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def content_words(text: str) -> set[str]:
    """Distinct stemmed content words of ``text`` (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    folded = re.sub(r"n't\b", " not", folded)
    folded = re.sub(r"'(?:s|re|ve|ll|d|m)\b", " ", folded)
    stop = _stop_words()
    words = [w for w in _WORD.findall(folded) if w not in stop and w != "_"]
    stemmer = _stemmer()
    return set(stemmer.stemWords(words))


def _cited_text(span: CitedSpan, context: Context) -> str | None:
    """The context text under ``span`` (clipped to the chunk), or None if the span misses the chunk."""
    chunk_end = context.start + len(context.text)
    start, end = max(span.start, context.start), min(span.end, chunk_end)
    if span.end <= span.start or end <= start:
        return None
    return context.text[start - context.start : end - context.start]


def check_grounding(
    sentences: Sequence[AnswerSentence], contexts: Sequence[Context], threshold: float
) -> list[Finding]:
    """Findings for answer sentences not supported by their citations; empty when all are grounded.

    Raises :class:`InvalidArgument` if ``threshold`` is outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgument(f"grounding threshold must be within [0, 1], got {threshold}")
    by_chunk: dict[str, Context] = {}
    for c in contexts:
        by_chunk.setdefault(c.chunk_id, c)

    findings: list[Finding] = []
    for i, sentence in enumerate(sentences):
        if not sentence.citations:
            findings.append(Finding(code=UNCITED, message=f"sentence {i} cites no context span"))
            continue
        cited: list[str] = []
        for span in sentence.citations:
            context = by_chunk.get(span.chunk_id)
            if context is None or context.document_id != span.document_id:
                findings.append(
                    Finding(
                        code=UNKNOWN_CITATION,
                        message=f"sentence {i} cites chunk {span.chunk_id!r} of document "
                        f"{span.document_id!r}, which is not among the {len(by_chunk)} contexts",
                    )
                )
                continue
            text = _cited_text(span, context)
            if text is None:
                findings.append(
                    Finding(
                        code=UNKNOWN_CITATION,
                        message=f"sentence {i} cites [{span.start}, {span.end}) of chunk {span.chunk_id!r}, "
                        f"which covers [{context.start}, {context.start + len(context.text)})",
                    )
                )
                continue
            cited.append(text)
        if not cited:
            continue  # every citation is unknown: already reported
        words = content_words(sentence.text)
        if not words:
            continue
        found = words & content_words(" ".join(cited))
        support = len(found) / len(words)
        if support < threshold:
            missing = sorted(words - found)
            listed = ", ".join(missing[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")
            findings.append(
                Finding(
                    code=UNSUPPORTED,
                    message=f"sentence {i}: {support:.0%} of its content words are in the cited spans "
                    f"(threshold {threshold:.0%}); missing: {listed}",
                    score=round(1.0 - support, 4),
                )
            )
    return findings
