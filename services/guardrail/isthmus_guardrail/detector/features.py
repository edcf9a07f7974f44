"""Features of the learned injection detector, in numpy: character n-grams, word n-grams and windows.

The character n-grams are scikit-learn's ``char_wb`` analyser (n-grams inside whitespace-separated words
padded with one space), the word n-grams its ``word`` analyser (tokens of ``\\b\\w+\\b``, lowercased,
joined by one space), reimplemented so that inference needs no scikit-learn; the training command
checks that both give the same scores. Text is first folded like the rules fold it
(:func:`isthmus_guardrail.injection.normalise`: accents, look-alikes, leetspeak, zero-width characters),
so an obfuscated attack has the n-grams of the plain one.
"""

from __future__ import annotations

import re
from collections import Counter

#: a window of a long text holds whole sentences up to this many characters (a longer sentence is cut)
WINDOW_CHARS = 400
_WHITESPACES = re.compile(r"\s\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n\s*")
#: the ``token_pattern`` of the word n-grams (scikit-learn's default keeps 2+ character tokens only)
WORD_TOKEN = r"(?u)\b\w+\b"
_WORD = re.compile(WORD_TOKEN)


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """The n-grams scikit-learn's ``TfidfVectorizer(analyzer="char_wb")`` extracts from ``text``."""
    text = _WHITESPACES.sub(" ", text)
    grams: list[str] = []
    for word in text.split():
        w = " " + word + " "
        size = len(w)
        for n in range(min_n, max_n + 1):
            offset = 0
            grams.append(w[offset : offset + n])
            while offset + n < size:
                offset += 1
                grams.append(w[offset : offset + n])
            if offset == 0:  # a word shorter than n counts once
                break
    return grams


def word_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """The n-grams scikit-learn's ``TfidfVectorizer(analyzer="word", token_pattern=WORD_TOKEN)``
    extracts from ``text`` (lowercased)."""
    tokens = _WORD.findall(text.lower())
    grams: list[str] = []
    for n in range(min_n, max_n + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def word_counts(text: str, min_n: int, max_n: int) -> Counter[str]:
    return Counter(word_ngrams(text, min_n, max_n))


def ngram_counts(text: str, min_n: int, max_n: int) -> Counter[str]:
    return Counter(char_wb_ngrams(text, min_n, max_n))


def windows(text: str, limit: int = WINDOW_CHARS) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of ``text`` covering it: the whole text when it fits in ``limit``
    characters, else consecutive sentences packed up to ``limit`` characters (a longer sentence is cut
    at the last space before the limit)."""
    if len(text) <= limit:
        return [(0, len(text))]
    sentences: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > start:
            sentences.append((start, m.start()))
        start = m.end()
    if start < len(text):
        sentences.append((start, len(text)))
    pieces: list[tuple[int, int]] = []
    for s, e in sentences:
        while e - s > limit:
            cut = text.rfind(" ", s + limit // 2, s + limit)
            cut = cut if cut > s else s + limit
            pieces.append((s, cut))
            s = cut
            while s < e and text[s].isspace():
                s += 1
        if e > s:
            pieces.append((s, e))
    spans: list[tuple[int, int]] = []
    for s, e in pieces:
        if spans and e - spans[-1][0] <= limit:
            spans[-1] = (spans[-1][0], e)
        else:
            spans.append((s, e))
    return spans or [(0, len(text))]
