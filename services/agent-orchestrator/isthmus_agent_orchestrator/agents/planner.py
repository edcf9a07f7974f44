"""The deterministic planner of ``plan-execute``: a compound question split into the questions it asks.

``"What is a glider? Also, how do thermals form?"`` → ``["What is a glider?", "how do thermals form?"]``.
The question is cut at sentence ends (``?``, ``!``, and ``.`` before a capital letter) and at
connectives that join two requests (``Also,``, ``and also``, ``as well as``, ``In addition,`` …,
``; ``); the connective itself is dropped. A fragment with fewer than :data:`MIN_WORDS` words ("Why?",
"Thanks.") is no question of its own: it stays with the part before it. Parts are deduplicated
(case-insensitively); past ``max_sub_questions`` the rest is joined into the last part, so no words
of the question are lost. Never empty: a question with nothing to cut is its own single sub-question.

The original question is NOT added as an extra sub-question when it was split: the parts partition its
words, so the whole adds no term; in the reciprocal-rank fusion of the parts' results it would only
re-weight towards whichever part dominates a search for the whole (the bias splitting removes), at the
cost of one more retrieval. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Final

#: a part with fewer words than this is merged into the one before it
MIN_WORDS: Final = 3

# sentence ends: "?"/"!" (runs of them) before a space; "." before a space and a capital or a digit
# (so "e.g. gliders" and "3.5 m" stay whole)
_SENTENCE_END = re.compile(r"((?<=[?!])\s+|(?<=\.)\s+(?=[A-Z0-9\"'(]))")
# connectives joining two requests inside a sentence; the separator is dropped
_CONNECTIVE = re.compile(
    r"(;\s+|,?\s+(?:and|but)\s+also\s+|,?\s+as\s+well\s+as\s+"
    r"|,\s+(?:also|additionally|furthermore|moreover|plus)\s*,?\s+)",
    re.IGNORECASE,
)
# a leading connective of a part ("Also, how…" → "how…")
_LEADING = re.compile(
    r"^(?:also|and\s+also|additionally|in\s+addition|furthermore|moreover|besides|plus|and|then)\b[,:]?\s*",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _joined(pieces: list[str], separators: list[str]) -> list[str]:
    """``pieces`` (cut at ``separators``) as parts: a piece too short to be a question of its own goes
    back with the part before it, its separator restored (``"X as well as Y"`` stays whole)."""
    parts = [pieces[0]]
    for sep, piece in zip(separators, pieces[1:], strict=True):
        if _words(piece) < MIN_WORDS or _words(_LEADING.sub("", parts[-1])) < MIN_WORDS:
            parts[-1] = f"{parts[-1]}{sep}{piece}"
        else:
            parts.append(piece)
    return parts


def _cut(text: str, pattern: re.Pattern[str]) -> list[str]:
    split = pattern.split(text)  # the patterns capture their separator: text, sep, text, sep, ...
    return _joined(split[0::2], split[1::2])


def split_question(question: str, max_sub_questions: int = 4) -> list[str]:
    """The sub-questions of ``question`` (the module's doc): at least one, ``max_sub_questions`` at most."""
    whole = " ".join(question.split())
    parts: list[str] = []
    for sentence in _cut(whole, _SENTENCE_END):
        for piece in _cut(sentence, _CONNECTIVE):
            piece = _LEADING.sub("", piece.strip()).strip(" ,;:")
            if piece:
                parts.append(piece)
    seen: set[str] = set()
    unique: list[str] = []
    for part in parts:
        key = " ".join(_WORD.findall(part.lower()))
        if key and key not in seen:
            seen.add(key)
            unique.append(part)
    cap = max(1, max_sub_questions)
    if len(unique) > cap:
        unique = [*unique[: cap - 1], " ".join(unique[cap - 1 :])]
    return unique or [whole or question]


class HeuristicPlanner:
    """:class:`~isthmus_agent_orchestrator.agents.types.Planner` by :func:`split_question`."""

    name = "heuristic"

    async def plan(self, question: str, *, max_sub_questions: int = 4) -> list[str]:
        return split_question(question, max_sub_questions)
