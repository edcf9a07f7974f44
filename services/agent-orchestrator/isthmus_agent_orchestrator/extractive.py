"""An offline, citation-grounded generator that answers with sentences quoted from the contexts.

Every answer sentence is verbatim from one context and cites exactly its own span (document offsets), so
the output guardrail's grounding check always has something to verify. Scoring:

* each context (best first) is split into sentences (:func:`~.sentences.split_sentences`); a sentence
  that repeats one already seen (overlapping chunks) is kept once, at its best-ranked place;
* a chunk is a window on its document, so its first and last "sentences" may be cut by the window: the
  first one of a chunk that does not start the document is dropped when ingestion marked the chunk as
  starting inside a sentence (``Context.continues_sentence``: after "Dr.", or in a sentence longer than
  a chunk) or when it may go on from something before it (starts in lower case, with a digit or with
  ``,;:)``); the last one when it does not end a sentence (no terminal ``.``/``!``/``?``/``…``, or pySBD
  would carry it on into a following sentence, as after ``Dr.``). The answer is made of whole sentences
  only; a sentence cut by one chunk is usually whole in its neighbour (chunks overlap);
* question and sentences become sets of content terms: lowercased words, stopwords removed, Snowball
  stems (PyStemmer);
* a term's weight is an IDF over the candidate sentences, so words that occur everywhere count less;
* ``overlap`` = weight of the question terms a sentence contains / weight of all question terms, in [0, 1];
* sentences with ``overlap >= min_overlap`` qualify; the best ``max_sentences`` by
  ``overlap + RANK_BOOST / (1 + context rank)`` are kept and returned in reading order (context rank,
  then position).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import Stemmer

from isthmus_agent_orchestrator.sentences import NO_ANSWER, split_sentences
from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context, Generation

#: added to a sentence's score, divided by (1 + rank of its context): breaks near-ties in favour of the
#: contexts retrieval ranked higher, without letting rank outweigh a real difference in overlap
RANK_BOOST = 0.05

_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")
#: a sentence's last character, before closing quotes and brackets
_TERMINAL = re.compile("[.!?\u2026\u3002\uff01\uff1f][\"'\u201d\u2019\u00bb)\\]]*$")
#: characters a sentence never starts with (they go on from the text before)
_CONTINUATION_MARKS = frozenset(",;:)]}\u201d\u2019\u00bb-\u2013\u2014")
#: distinct sentences whose dedup key and content terms are kept (quoted chunks recur across questions)
SENTENCE_CACHE_SIZE = 32768
#: a sentence put after a candidate's end: the candidate ends a sentence iff pySBD keeps the probe whole
_PROBE = "Smith stays."

#: function words and question words: they say nothing about which sentence answers the question
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each either else ever every few for
    from further get gets got had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me might more most much must my myself neither no nor not now of off
    on once only or other our ours ourselves out over own please same shall she should so some such than
    that the their theirs them themselves then there these they this those through to too under until up
    upon us very was we were what whatever when where whether which while who whom whose why will with
    would yet you your yours yourself yourselves tell know explain describe give list show
    """.split()
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    rank: int
    position: int
    start: int  # offsets inside the context's text
    end: int
    context: Context
    terms: frozenset[str]

    @property
    def text(self) -> str:
        return self.context.text[self.start : self.end]


class ExtractiveGenerator:
    """Quotes the context sentences that best overlap the question; abstains when none does enough."""

    def __init__(self, max_sentences: int = 3, min_overlap: float = 0.2) -> None:
        if max_sentences < 1:
            raise ConfigurationError(f"max_sentences must be at least 1, got {max_sentences}")
        if not 0.0 <= min_overlap <= 1.0:
            raise ConfigurationError(f"min_overlap must be between 0 and 1, got {min_overlap}")
        self._max_sentences = max_sentences
        self._min_overlap = min_overlap
        self._stemmer = Stemmer.Stemmer("english")
        #: ``(dedup key, content terms)`` of a context sentence, kept per distinct sentence text
        self._sentence_cached = functools.lru_cache(maxsize=SENTENCE_CACHE_SIZE)(self._sentence_key_terms)

    @property
    def name(self) -> str:
        return "extractive"

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        return self._answer(question, contexts)

    async def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        for sentence in self._answer(question, contexts).sentences:
            yield sentence

    # ---- pure core

    def terms(self, text: str) -> frozenset[str]:
        """Content terms of ``text``: lowercased words minus stopwords and lone letters, stemmed."""
        words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
        return frozenset(self._stemmer.stemWords(words))

    def cache_info(self) -> tuple[int, int, int, int]:
        """``(hits, misses, size, maxsize)`` of the sentence cache."""
        info = self._sentence_cached.cache_info()
        return info.hits, info.misses, info.currsize, info.maxsize or 0

    def clear_cache(self) -> None:
        """Forget every cached sentence (an erasure: the keys are sentences of chunks)."""
        self._sentence_cached.cache_clear()

    def _sentence_key_terms(self, sentence: str) -> tuple[str, frozenset[str]]:
        return _SPACE.sub(" ", sentence).lower(), self.terms(sentence)

    def _answer(self, question: str, contexts: Sequence[Context]) -> Generation:
        if not question.strip():
            raise InvalidArgument("question is empty")
        question_terms = self.terms(question)
        candidates = self._candidates(contexts)
        if not question_terms or not candidates:
            return _abstain()
        df = Counter(t for c in candidates for t in c.terms if t in question_terms)
        n = len(candidates)
        weight = {t: math.log(1.0 + (n + 1) / (df[t] + 1)) for t in question_terms}
        total = sum(weight.values())
        scored: list[tuple[float, _Candidate]] = []
        for c in candidates:
            overlap = sum(weight[t] for t in question_terms & c.terms) / total
            if overlap > 0.0 and overlap >= self._min_overlap:
                scored.append((overlap + RANK_BOOST / (1 + c.rank), c))
        if not scored:
            return _abstain()
        scored.sort(key=lambda sc: (-sc[0], sc[1].rank, sc[1].position))
        chosen = sorted((c for _, c in scored[: self._max_sentences]), key=lambda c: (c.rank, c.position))
        return Generation(sentences=tuple(_sentence(c) for c in chosen), generator=self.name)

    def _candidates(self, contexts: Sequence[Context]) -> list[_Candidate]:
        out: list[_Candidate] = []
        seen: set[str] = set()
        for rank, context in enumerate(contexts):
            for position, (start, end) in enumerate(whole_sentences(context)):
                key, terms = self._sentence_cached(context.text[start:end])
                if key in seen:
                    continue
                seen.add(key)
                if terms:
                    out.append(_Candidate(rank, position, start, end, context, terms))
        return out


def whole_sentences(context: Context) -> list[tuple[int, int]]:
    """Spans of the sentences of ``context.text`` that the chunk's window does not cut (see module docs)."""
    text = context.text
    spans = split_sentences(text)
    if (
        spans
        and context.start > 0
        and (context.continues_sentence or _continues_something(text[spans[0][0] : spans[0][1]]))
    ):
        spans = spans[1:]
    if spans and not _ends_a_sentence(text[spans[-1][0] : spans[-1][1]]):
        spans = spans[:-1]
    return spans


def _continues_something(sentence: str) -> bool:
    return sentence[0].islower() or sentence[0].isdigit() or sentence[0] in _CONTINUATION_MARKS


def _ends_a_sentence(sentence: str) -> bool:
    if not _TERMINAL.search(sentence):
        return False
    # "... hours. Dr." ends in a full stop, yet "Dr." is not a sentence: pySBD joins it to what follows
    probe = f"{sentence} {_PROBE}"
    return any(probe[start:end] == _PROBE for start, end in split_sentences(probe))


def _sentence(c: _Candidate) -> AnswerSentence:
    span = c.context.cite(c.context.start + c.start, c.context.start + c.end)
    return AnswerSentence(text=c.text, citations=(span,))


def _abstain() -> Generation:
    return Generation(sentences=(AnswerSentence(NO_ANSWER),), generator="extractive", abstained=True)
