"""The deterministic critic of ``reflect``: is a draft grounded in what it cites, and if not, what to
retrieve with instead.

A draft is grounded when (1) at least :attr:`HeuristicCritic.min_cited_share` of its sentences cite a
context, (2) the cited sentences' content words are found, on average for at least
:attr:`~HeuristicCritic.min_overlap` of them, in the contexts they cite, and (3) at least
:attr:`~HeuristicCritic.min_coverage` of the question's content words occur in the contexts cited. When
it is not, the retry query is the question followed by its content words that no cited context
contains (repeating them weighs them more in the lexical half of the hybrid search); no such word: no
retry query (retrieving again with the same words finds the same passages). Words are compared
lowercased, stopwords dropped, by their first :data:`PREFIX` letters (a crude stem: "thermals" meets
"thermal"). Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Final, Protocol

from isthmus_agent_orchestrator.agents.types import Critique, Draft
from isthmus_agent_orchestrator.extractive import STOPWORDS

#: letters a word is compared by
PREFIX: Final = 6
_WORD = re.compile(r"[^\W_]+")


class Critic(Protocol):
    """Judges a draft before anyone sees it (``reflect``): grounded, or a better query to retrieve with."""

    async def critique(self, question: str, draft: Draft) -> Critique: ...


def content_words(text: str) -> list[str]:
    """The content words of ``text`` in order, lowercased, without stopwords, lone letters or repeats."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        if w not in STOPWORDS and (len(w) > 1 or w.isdigit()):
            seen.setdefault(w, None)
    return list(seen)


def _keys(words: list[str]) -> set[str]:
    return {w[:PREFIX] for w in words}


class HeuristicCritic:
    name = "heuristic"

    def __init__(self, min_cited_share: float = 0.5, min_overlap: float = 0.5, min_coverage: float = 0.7):
        self.min_cited_share = min_cited_share
        self.min_overlap = min_overlap
        self.min_coverage = min_coverage

    async def critique(self, question: str, draft: Draft) -> Critique:
        return self.judge(question, draft)

    def judge(self, question: str, draft: Draft) -> Critique:
        by_id = {c.chunk_id: c for c in draft.contexts}
        sentences = [s for s in draft.sentences if s.text.strip()]
        cited = [s for s in sentences if any(c.chunk_id in by_id for c in s.citations)]
        cited_text = " ".join(
            by_id[c.chunk_id].text for s in cited for c in s.citations if c.chunk_id in by_id
        )
        cited_keys = _keys(content_words(cited_text))
        asked = content_words(question)
        missing = [w for w in asked if w[:PREFIX] not in cited_keys]
        share = len(cited) / len(sentences) if sentences else 0.0
        overlaps = []
        for s in cited:
            words = _keys(content_words(s.text))
            own = _keys(
                content_words(" ".join(by_id[c.chunk_id].text for c in s.citations if c.chunk_id in by_id))
            )
            overlaps.append(len(words & own) / len(words) if words else 1.0)
        overlap = sum(overlaps) / len(overlaps) if overlaps else 0.0
        coverage = 1 - len(missing) / len(asked) if asked else 1.0
        reason = (
            f"{len(cited)} of {len(sentences)} sentences cite a context; {overlap:.0%} of their words are "
            f"in what they cite; {coverage:.0%} of the question's words are in the cited contexts"
        )
        grounded = (
            share >= self.min_cited_share and overlap >= self.min_overlap and coverage >= self.min_coverage
        )
        if grounded:
            return Critique(True, reason)
        retry = f"{question} {' '.join(missing)}" if missing else ""
        return Critique(False, reason, retry)
