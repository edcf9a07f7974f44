"""A deterministic :class:`~isthmus_core.ports.judge.Judge` for fast unit tests: lexical overlap, no model.

* ``entail`` — ``s`` = the share of the hypothesis's content words found in the premise. A negation cue
  ("not", "no", "never", ...) in one of the two texts but not the other, with ``s ≥ 0.5``, reads as a
  contradiction: (0.05, 0.15, 0.80); otherwise P(entailment) = 0.05 + 0.9·s, P(contradiction) = 0.05,
  P(neutral) = the rest.
* ``relevance`` — the share of the query's content words found in the passage.

It passes :class:`~isthmus_core.testing.judge_conformance.JudgeConformance` (like the real adapters:
empty call → ``[]``, blank hypothesis or query → ``JudgeFailed("invalid")``, a text past the port's
limits → ``JudgeFailed("too_long")``). To make it fail: ``FakeJudge(failure="unavailable")`` fails every
call with that code; ``fail_on={"MARKER": "timeout"}`` fails any call one of whose texts holds
``MARKER``. ``calls`` records each call (method, tenant, number of items).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from isthmus_core.ports.judge import (
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Entailment,
    JudgeFailed,
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "cannot", "without", "nothing"})
_STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being it its this that "
    "these those as do does did how what which who whom when where why can could would should will may "
    "has have had there their they them he she his her we our you your i me my".split()
)


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def content_words(text: str) -> set[str]:
    """Lower-cased words minus stop words and negation cues ("n't" counts as "not" elsewhere)."""
    return {w for w in _words(text) if w not in _STOPWORDS and w not in _NEGATIONS and w != "t"}


def _negated(text: str) -> bool:
    words = _words(text)
    return any(w in _NEGATIONS for w in words) or "n't" in text.casefold()


def _share(of: set[str], within: set[str]) -> float:
    return len(of & within) / len(of) if of else 0.0


class FakeJudge:
    """Lexical-overlap judge (see the module docstring); ``name`` = ``fake:lexical``."""

    def __init__(self, *, failure: str | None = None, fail_on: Mapping[str, str] | None = None) -> None:
        self._failure = failure
        self._fail_on = dict(fail_on or {})
        self.calls: list[tuple[str, str, int]] = []

    @property
    def name(self) -> str:
        return "fake:lexical"

    def _maybe_fail(self, texts: Sequence[str]) -> None:
        if self._failure is not None:
            raise JudgeFailed(self._failure, "the fake judge was told to fail")
        for marker, code in self._fail_on.items():
            if any(marker in t for t in texts):
                raise JudgeFailed(code, f"the fake judge fails on texts holding {marker!r}")

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        self.calls.append(("entail", tenant_id, len(pairs)))
        self._maybe_fail([t for pair in pairs for t in pair])
        for i, (premise, hypothesis) in enumerate(pairs):
            for field, text in (("premise", premise), ("hypothesis", hypothesis)):
                if len(text) > MAX_JUDGE_TEXT_CHARS:
                    raise JudgeFailed("too_long", f"pairs[{i}].{field} is {len(text)} characters")
            if not hypothesis.strip():
                raise JudgeFailed("invalid", f"pairs[{i}].hypothesis is blank")
        return [self._entail_one(p, h) for p, h in pairs]

    @staticmethod
    def _entail_one(premise: str, hypothesis: str) -> Entailment:
        s = _share(content_words(hypothesis), content_words(premise))
        if s >= 0.5 and _negated(premise) != _negated(hypothesis):
            return Entailment(0.05, 0.15, 0.80)
        e = 0.05 + 0.9 * s
        return Entailment(e, max(0.0, 1.0 - e - 0.05), 0.05)

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        self.calls.append(("relevance", tenant_id, len(passages)))
        self._maybe_fail([query, *passages])
        if len(query) > MAX_JUDGE_QUERY_CHARS:
            raise JudgeFailed("too_long", f"query is {len(query)} characters")
        if not query.strip():
            raise JudgeFailed("invalid", "query is blank")
        for i, passage in enumerate(passages):
            if len(passage) > MAX_JUDGE_TEXT_CHARS:
                raise JudgeFailed("too_long", f"passages[{i}] is {len(passage)} characters")
        words = content_words(query)
        return [_share(words, content_words(p)) for p in passages]
