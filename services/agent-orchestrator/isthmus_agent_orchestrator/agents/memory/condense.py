"""The deterministic condenser: a follow-up question rewritten into a standalone one (no model).

A question is a follow-up (only when there are earlier turns) when it

* refers back with a pronoun (it, its, they, them, their, this, that, these, those, he, him, his, she,
  her) — not the "it" of "is it true/possible that…", nor "that" joining a clause ("the model that ranks");
* is elliptic: begins with "what about", "how about", "what of", "and" or "also";
* or says nothing of its own: no content word at all ("Why?", "How so?"), or at most two words with at
  most one content word ("Examples?").

Its subject is the previous turn's standalone question's main noun phrase: the first run of content words
(joined by "of", kept with a leading article), e.g. "BM25" in "What is BM25?" and "the capital of
France" in "What is the capital of France?". Then

* an elliptic question swaps its own subject into the previous question: "What is BM25?" + "What about
  TF-IDF?" → "What is TF-IDF?";
* a pronoun is replaced by the noun phrase (its/their/his → the possessive): "How is it computed?" →
  "How is BM25 computed?", "What is its complexity?" → "What is BM25's complexity?";
* otherwise (or when the previous question has no noun phrase) the previous question's key terms are
  appended: "Why?" → "Why (BM25 ranking)?".

Anything else is returned unchanged. Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from isthmus_agent_orchestrator.agents.types import Turn

_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9+#'\u2019.\-]*[A-Za-z0-9+#]|[A-Za-z0-9]")
_END: Final = re.compile(r"[\s?.!]*$")

#: pronouns that point back at the previous question's subject (possessives map to "X's")
_PRONOUNS: Final = frozenset({"it", "they", "them", "he", "him", "she", "her"})
_POSSESSIVES: Final = frozenset({"its", "their", "his"})
_DEMONSTRATIVES: Final = frozenset({"this", "that", "these", "those"})
#: "is it true that…", "is it possible to…": a dummy "it", not a reference
_DUMMY_IT_NEXT: Final = frozenset(
    {"true", "possible", "necessary", "important", "better", "worth", "hard", "easy", "likely", "raining"}
)
_ELLIPSIS: Final = (("what", "about"), ("how", "about"), ("what", "of"), ("and",), ("also",))
_QUESTION_WORDS: Final = frozenset(
    {
        "what",
        "who",
        "whom",
        "whose",
        "which",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "has",
        "have",
        "had",
    }
)
_ARTICLES: Final = frozenset({"the", "a", "an"})
#: function words and light verbs: never content, never part of a noun phrase
_STOP: Final = (
    _QUESTION_WORDS
    | _PRONOUNS
    | _POSSESSIVES
    | _DEMONSTRATIVES
    | _ARTICLES
    | frozenset(
        {
            "about",
            "above",
            "after",
            "again",
            "against",
            "all",
            "also",
            "am",
            "and",
            "any",
            "as",
            "at",
            "be",
            "because",
            "been",
            "before",
            "being",
            "below",
            "between",
            "both",
            "but",
            "by",
            "compare",
            "compared",
            "computed",
            "define",
            "describe",
            "difference",
            "differ",
            "each",
            "else",
            "example",
            "examples",
            "explain",
            "few",
            "for",
            "from",
            "further",
            "get",
            "give",
            "go",
            "happen",
            "happens",
            "here",
            "i",
            "if",
            "in",
            "into",
            "just",
            "know",
            "like",
            "list",
            "made",
            "make",
            "many",
            "may",
            "me",
            "mean",
            "means",
            "might",
            "more",
            "most",
            "much",
            "must",
            "my",
            "no",
            "not",
            "now",
            "of",
            "off",
            "on",
            "once",
            "only",
            "or",
            "other",
            "our",
            "out",
            "over",
            "own",
            "please",
            "really",
            "same",
            "say",
            "see",
            "so",
            "some",
            "such",
            "tell",
            "than",
            "then",
            "there",
            "thing",
            "things",
            "through",
            "to",
            "too",
            "under",
            "until",
            "up",
            "us",
            "use",
            "used",
            "uses",
            "using",
            "very",
            "want",
            "way",
            "we",
            "well",
            "with",
            "without",
            "work",
            "works",
            "you",
            "your",
            "ok",
            "okay",
            "yes",
            "sure",
            "thanks",
        }
    )
)
#: verbs that end a noun phrase ("How does BM25 rank documents?" → "BM25")
_VERBS: Final = frozenset(
    {
        "rank",
        "ranks",
        "score",
        "scores",
        "handle",
        "handles",
        "compute",
        "computes",
        "calculate",
        "calculates",
        "store",
        "stores",
        "support",
        "supports",
        "need",
        "needs",
        "cost",
        "costs",
        "run",
        "runs",
        "help",
        "helps",
        "improve",
        "improves",
        "affect",
        "affects",
        "change",
        "changes",
        "return",
        "returns",
        "mean",
        "work",
        "require",
        "requires",
        "take",
        "takes",
        "have",
        "has",
        "index",
        "indexes",
        "retrieve",
        "retrieves",
        "find",
        "finds",
        "become",
        "becomes",
        "contain",
        "contains",
        "come",
        "comes",
        "relate",
        "relates",
        "compare",
        "compares",
        "behave",
        "behaves",
        "perform",
        "performs",
    }
)
_MAX_KEY_TERMS: Final = 6


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower().replace("\u2019", "'")


def _tokens(text: str) -> list[_Tok]:
    return [_Tok(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _is_content(tok: _Tok) -> bool:
    low = tok.low
    return (low[:-2] if low.endswith("'s") else low) not in _STOP


def key_terms(question: str) -> list[str]:
    """The content words of ``question`` in order, without repeats (case-insensitive), at most six."""
    seen: dict[str, str] = {}
    for tok in _tokens(question):
        if _is_content(tok) and tok.low not in seen:
            seen[tok.low] = tok.text
    return list(seen.values())[:_MAX_KEY_TERMS]


#: auxiliaries of a question ("When does…", "How can…") whose main verb comes last
_AUXILIARIES: Final = frozenset(
    {"do", "does", "did", "can", "could", "will", "would", "should", "may", "might", "must"}
)


def _verb(toks: list[_Tok], i: int) -> bool:
    """Not a noun: a known verb, a past tense right after a question word ("Who founded…"), the word
    after "how" ("How long…")."""
    low = toks[i].low
    before = toks[i - 1].low if i > 0 else ""
    past_tense = before in _QUESTION_WORDS and len(low) > 4 and low.endswith("ed")
    # "When does the hangar open", "How do gliders soar": after a question word and an auxiliary, the
    # last word is the verb (the noun phrase sits between them)
    last_after_auxiliary = (
        i == len(toks) - 1 and i >= 3 and toks[0].low in _QUESTION_WORDS and toks[1].low in _AUXILIARIES
    )
    return low in _VERBS or past_tense or before == "how" or last_after_auxiliary


def _swap(phrase: str, topic: str) -> str:
    """``phrase`` (a noun phrase) about ``topic`` instead: "the capital of France" + "Germany" → "the
    capital of Germany", + "the population" → "the population of France"; without "of": ``topic``."""
    head, of, _tail = phrase.rpartition(" of ")
    if not of:
        return topic
    if _tokens(topic)[0].low in _ARTICLES:
        return topic + phrase[phrase.find(" of ") :]
    return head + of + topic


def noun_phrase(question: str) -> tuple[int, int] | None:
    """The span of ``question``'s main noun phrase: its first run of content words (not verbs), joined by
    "of", with the article before it; None when it has none."""
    toks = _tokens(question)
    i = 0
    while i < len(toks) and not (_is_content(toks[i]) and not _verb(toks, i)):
        i += 1
    if i == len(toks):
        return None
    first = i
    last = i
    j = i + 1
    while j < len(toks):
        low = toks[j].low
        if _is_content(toks[j]) and not _verb(toks, j):
            last = j
        elif not (low in {"of", "the", "a", "an"} and j + 1 < len(toks) and _is_content(toks[j + 1])):
            break
        j += 1
    start = toks[first - 1].start if first > 0 and toks[first - 1].low in _ARTICLES else toks[first].start
    return start, toks[last].end


def _ellipsis(toks: list[_Tok]) -> int:
    """How many leading tokens of ``toks`` mark an elliptic follow-up (0: none)."""
    for marker in _ELLIPSIS:
        if tuple(t.low for t in toks[: len(marker)]) == marker:
            return len(marker)
    return 0


def _reference(toks: list[_Tok]) -> _Tok | None:
    """The first pronoun that refers back (None: no such pronoun)."""
    for i, tok in enumerate(toks):
        low = tok.low
        nxt = toks[i + 1].low if i + 1 < len(toks) else ""
        if low == "it" and nxt in _DUMMY_IT_NEXT:
            continue
        if low in _PRONOUNS or low in _POSSESSIVES:
            return tok
        if low in _DEMONSTRATIVES:
            before = toks[i - 1] if i > 0 else None
            if low == "that" and before is not None and _is_content(before):
                continue  # "the model that ranks…": a relative clause
            return tok
    return None


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on an earlier one (see the module docstring)."""
    toks = _tokens(question)
    content = sum(1 for t in toks if _is_content(t))
    return bool(
        _ellipsis(toks) or _reference(toks) is not None or content == 0 or (len(toks) <= 2 and content <= 1)
    )


def _possessive(phrase: str) -> str:
    return phrase + ("'" if phrase.endswith("s") else "'s")


def _split_end(question: str) -> tuple[str, str]:
    """``question`` without its final punctuation, and that punctuation ("?" when it had none)."""
    body = _END.sub("", question)
    end = question[len(body) :].strip()
    return body, (end[-1] if end else "?")


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _substitute(body: str, tok: _Tok, subject: str, *, starts_sentence: bool = True) -> str:
    """``body`` with the pronoun ``tok`` replaced by ``subject`` (or its possessive); a demonstrative used
    as a determiner ("this model") is left alone (returned unchanged)."""
    low = tok.low
    if low in _DEMONSTRATIVES:
        rest = _tokens(body[tok.end :])
        if rest and _is_content(rest[0]):
            return body
    phrase = _possessive(subject) if low in _POSSESSIVES else subject
    if starts_sentence and tok.start == 0 and phrase.split(" ", 1)[0] in _ARTICLES:
        phrase = _capitalized(phrase)
    return body[: tok.start] + phrase + body[tok.end :]


def condense_question(history: Sequence[Turn], question: str) -> str:
    """``question`` as a standalone question, given the conversation's earlier turns (oldest first)."""
    if not history or not question.strip() or not is_follow_up(question):
        return question
    previous = history[-1].standalone or history[-1].question
    prev_body, _ = _split_end(previous.strip())
    span = noun_phrase(prev_body)
    subject = prev_body[span[0] : span[1]] if span else ""
    terms = " ".join(key_terms(prev_body))
    if not terms:
        return question

    body, end = _split_end(question.strip())
    toks = _tokens(body)
    skip = _ellipsis(toks)
    if skip:
        rest = body[toks[skip - 1].end :].strip(" ,") if skip < len(toks) else ""
        rest_toks = _tokens(rest)
        if rest_toks and rest_toks[0].low in _QUESTION_WORDS:
            # "And how is it stored?": the ellipsis word is only a joiner
            body, toks = _capitalized(rest), rest_toks
        elif rest_toks and span is not None:
            ref = _reference(rest_toks)
            if ref is not None:  # "What about its population?": the topic names the subject itself
                topic = _substitute(rest, ref, subject, starts_sentence=False)
            else:
                topic = _swap(subject, rest)
            return prev_body[: span[0]] + topic + prev_body[span[1] :] + end
        elif rest_toks:
            return f"{_capitalized(rest)} ({terms}){end}"
        else:
            return f"{_capitalized(body)} ({terms}){end}"

    ref = _reference(toks)
    if ref is not None and subject:
        rewritten = _substitute(body, ref, subject)
        if rewritten != body:
            return rewritten + end
    return f"{body} ({subject or terms}){end}"


class HeuristicCondenser:
    """:class:`~isthmus_agent_orchestrator.agents.types.Condenser` by :func:`condense_question`."""

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        return condense_question(history, question)
