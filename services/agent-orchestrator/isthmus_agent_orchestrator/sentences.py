"""Sentence segmentation as character spans (pure).

Boundaries come from `pySBD <https://github.com/nipunsadvilkar/pySBD>`_ (rule-based, the "Golden Rules"
set: abbreviations, decimals, initials, ellipses, quotes, lists). pySBD is run non-destructively
(``clean=False``) and its segments are located back in the original text, so every span satisfies
``text[start:end] == text[start:end].strip()`` and that string is the sentence.

pySBD ends a sentence at every newline. Parsed Markdown and HTML keep a single newline only where the
source has a real break (list items, table rows, ``<br>``), but plain text and PDF text keep the source's
line wrapping; so a single newline that is plainly a wrap — the line does not end a sentence (no ``.``,
``!``, ``?`` or ``:``) and the next one goes on in lower case — is read as a space. The replacement has
the same length, so offsets still point into the original text.

Segmenting is the costliest step of an extractive answer (pySBD: milliseconds per chunk), and the same
retrieved chunks come back for many questions, so the spans of the last :data:`SPANS_CACHE_SIZE`
distinct texts are kept (:func:`spans_cache_info`: hits and misses, for the metrics).
"""

from __future__ import annotations

import functools

import pysbd

from isthmus_core.text import unwrap_lines

#: the single sentence a generator answers with when the contexts do not support an answer
NO_ANSWER = "I could not find an answer in the indexed documents."
#: distinct texts whose sentence spans are kept (a chunk of ~2 kB: ~16 MB at most)
SPANS_CACHE_SIZE = 8192


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``, in order, whitespace excluded.

    Spans are sorted, do not overlap, and never cover leading or trailing whitespace; blank text gives
    ``[]``. Every non-blank character of ``text`` lies inside exactly one span.
    """
    return list(_spans(text))


def spans_cache_info() -> tuple[int, int, int, int]:
    """``(hits, misses, size, maxsize)`` of the spans cache."""
    info = _spans.cache_info()
    return info.hits, info.misses, info.currsize, info.maxsize or 0


def clear_spans_cache() -> None:
    """Forget every cached text (an erasure: the keys are chunk texts)."""
    _spans.cache_clear()


@functools.lru_cache(maxsize=SPANS_CACHE_SIZE)
def _spans(text: str) -> tuple[tuple[int, int], ...]:
    if not text.strip():
        return ()
    segmenter = pysbd.Segmenter(language="en", clean=False, char_span=False)
    text = unwrap_lines(text)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for segment in segmenter.segment(text):
        piece = segment.strip()
        if not piece:
            continue
        start = text.find(piece, cursor)
        if start < 0:
            # pySBD altered the segment (it should not with clean=False); keep the rest as one sentence
            break
        _add_stripped(text, cursor, start, spans)  # text pySBD skipped, if any, stays covered
        spans.append((start, start + len(piece)))
        cursor = start + len(piece)
    _add_stripped(text, cursor, len(text), spans)
    return tuple(spans)


def _add_stripped(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    piece = text[start:end]
    if piece.strip():
        lead = len(piece) - len(piece.lstrip())
        spans.append((start + lead, start + len(piece.rstrip())))
