"""Grounding check: is every answer sentence supported by the context spans it cites?

Lexical support, deliberately simple and explainable: a sentence is supported when at least
``threshold`` of its distinct content words occur in the text of its cited spans (all of a sentence's
spans together). Words are NFKC-folded, lower-cased, stop words are removed and the rest are stemmed with
the Snowball English stemmer (PyStemmer), so "indexes"/"indexed" match "index". Negations (no, not,
never, n't, ...) are *kept* as content words. A sentence extracted verbatim from a context always passes;
a sentence with no content words ("Yes.") passes if it cites a known span.

Word overlap alone passes contradictions ("Refunds are not processed within five days" shares almost
every word with "Refunds are processed within five days"), so a supported sentence is checked twice more:

* **negation polarity** — a negation cue (not, no, never, n't, none, nor, nothing, nobody, nowhere,
  cannot, without; "not only/just/merely" is no negation) scopes over the run of content words that
  follows it (a few stop words may come first: "is not *replicated*", "not all *documents*") and ends at
  the next stop word, punctuation or conjunction (and, or, but, however, although...). Each content word
  of the sentence that also occurs in the cited text is compared with its occurrence in the cited
  sentence that best overlaps the answer sentence (most shared content words; ties: any of them): a word
  negated on one side and not on the other is a ``grounding.negation_mismatch``, either way round
  ("is not replicated" against "is replicated", and "is replicated" against "is not replicated"),
  unless a negation covers another word of the same negated phrase on the other side (the negation moved
  with the word order: "Windows is not supported" against "does not support Windows");
* **numbers** — every number of the sentence must occur in the cited text: digits ("5", "1,000",
  "2.50", "21st"; thousands separators and trailing zeros normalised, so "1,000" = "1000" and "5.0" =
  "5"), cardinal number words ("five", "fifty", "twenty-one", "one hundred and five", "2 million")
  and percentages ("5%", "5 percent": a percentage needs a percentage, a bare number matches either).
  A lone "one" is not taken for a number ("one of the chunks"), nor are ordinal words ("first") or
  digits inside identifiers ("x86", "H2O"). A missing number is a ``grounding.number_mismatch``.

What lexical checks cannot catch: antonyms and negative affixes ("unsupported" vs "supported", "rarely",
"fails to"), negation scope beyond the next run of content words, quantifiers and comparatives ("more
than five", "at most"), numbers swapped between entities of the same span, units ("5 ms" vs "5 s"),
dates written differently, and any paraphrase that changes meaning while keeping the words. These need a
model: the grounding model of :mod:`isthmus_guardrail.entailment` runs beside this check. All checks
here are pure and run in microseconds per sentence.

Spans are document offsets; a context covers ``[context.start, context.start + len(context.text))``.
A span partly outside its chunk is clipped to it; a span wholly outside is an unknown citation.

Findings (the sentence's 0-based index is in every message):

* ``grounding.uncited`` — the sentence cites nothing;
* ``grounding.unknown_citation`` — a cited chunk is not among the contexts (or the span is not in it);
* ``grounding.unsupported`` — the cited text holds too few of the sentence's content words
  (score = 1 - support);
* ``grounding.negation_mismatch`` — (supported sentences only) a word is negated in the sentence and not
  in the cited text, or the other way round; the message names the word and the negation;
* ``grounding.number_mismatch`` — (supported sentences only) a number of the sentence is not in the cited
  text; the message names the number as written.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Finding

UNCITED = "grounding.uncited"
UNKNOWN_CITATION = "grounding.unknown_citation"
UNSUPPORTED = "grounding.unsupported"
NEGATION_MISMATCH = "grounding.negation_mismatch"
NUMBER_MISMATCH = "grounding.number_mismatch"

_NEGATIONS = frozenset(
    {"no", "not", "never", "none", "nor", "nobody", "nothing", "nowhere", "cannot", "without"}
)
_WORD = re.compile(r"\d+(?:[.,]\d+)*|\w+")
_MAX_LISTED = 8

# ---- negation scope
#: "not only X but also Y" affirms X
_NOT_NEGATING_AFTER_NOT = frozenset({"only", "just", "merely", "simply", "solely"})
#: a negation's scope never crosses these (nor punctuation)
_CLAUSE_BREAKS = frozenset(
    {"but", "however", "although", "though", "whereas", "while", "yet", "except", "unless", "and", "or"}
)
#: stop words a negation may skip before its first content word ("is not *replicated*", "not all *docs*")
_MAX_SKIPPED = 3
_POLARITY_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")

# ---- numbers
_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_NUMBER_TOKEN = re.compile(
    r"(?P<num>(?<![^\W_])\d+(?:[.,]\d+)*)(?:st|nd|rd|th)?|(?P<word>[^\W\d_]+)|(?P<sym>\S)"
)
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN = re.compile(r"\d+(?:\.\d+)?")


@functools.cache
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(w.lower() for w in STOP_WORDS) - _NEGATIONS


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _fold(text: str) -> str:
    """NFKC, case-folded, "n't" spelled " not", other clitics ('s, 're, ...) dropped."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    folded = re.sub(r"n't\b", " not", folded)
    return re.sub(r"'(?:s|re|ve|ll|d|m)\b", " ", folded)


#: distinct texts whose word analyses are kept: answers quote the same indexed sentences again and again
WORDS_CACHE_SIZE = 16384


def clear_word_caches() -> None:
    """Forget every analysed text (an erasure: the keys are chunk and answer texts)."""
    content_words.cache_clear()
    _polar_words.cache_clear()


@functools.lru_cache(maxsize=WORDS_CACHE_SIZE)
def content_words(text: str) -> frozenset[str]:
    """Distinct stemmed content words of ``text`` (see the module docstring)."""
    folded = _fold(text)
    stop = _stop_words()
    words = [w for w in _WORD.findall(folded) if w not in stop and w != "_"]
    stemmer = _stemmer()
    return frozenset(stemmer.stemWords(words))


# ------------------------------------------------------------------------------------- negation


@dataclass(frozen=True, slots=True)
class _Word:
    stem: str
    surface: str
    cue: str | None  # the negation whose scope holds the word, None if none does
    scope: int = -1  # which negation of the text (its token index), -1 if none


@functools.lru_cache(maxsize=WORDS_CACHE_SIZE)
def _polar_words(text: str) -> tuple[_Word, ...]:
    """The content words of ``text`` (negation cues excluded), each with the negation scoping over it."""
    tokens = _POLARITY_TOKEN.findall(_fold(text))
    stop, stemmer = _stop_words(), _stemmer()
    words: list[_Word] = []
    cue: str | None = None  # the open negation
    scope = -1  # its token index
    skipped = 0  # stop words skipped since the cue, before its first content word
    in_run = False  # inside the run of content words the cue scopes over
    for i, token in enumerate(tokens):
        is_word = token[0].isalnum() or token[0] == "_"
        if not is_word or token in _CLAUSE_BREAKS:
            cue, in_run = None, False
        elif token in _NEGATIONS:
            following = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (token == "not" and following in _NOT_NEGATING_AFTER_NOT):
                cue, scope, skipped, in_run = token, i, 0, False
        elif token in stop or token == "_":
            if cue is not None and (in_run or skipped >= _MAX_SKIPPED):
                cue, in_run = None, False
            skipped += 1
        else:
            words.append(_Word(stemmer.stemWord(token), token, cue, scope if cue is not None else -1))
            in_run = cue is not None
    return tuple(words)


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def _negation_mismatch(i: int, sentence: str, cited: Sequence[str]) -> Finding | None:
    """A finding when a word of ``sentence`` is negated differently in its best-matching cited sentence.

    A difference is forgiven when the same negation covers another word of the phrase on both sides
    ("Windows is not supported" against "does not support Windows": the negation moved with the word
    order, it did not appear or vanish).
    """
    answer = _polar_words(sentence)
    if not answer:
        return None
    answer_stems = {w.stem for w in answer}
    answer_negated = {w.stem for w in answer if w.cue is not None}
    source = [words for text in cited for s in _sentences(text) if (words := _polar_words(s))]
    overlap = [len(answer_stems & {w.stem for w in words}) for words in source]
    problems: list[str] = []
    seen: set[str] = set()
    for word in answer:
        if word.stem in seen:
            continue
        seen.add(word.stem)
        if len({w.cue is None for w in answer if w.stem == word.stem}) > 1:
            continue  # negated once and affirmed once in the same sentence: no single polarity to compare
        holding = [k for k, words in enumerate(source) if any(w.stem == word.stem for w in words)]
        if not holding:
            continue  # not in the cited text at all: the support score deals with it
        best = max(overlap[k] for k in holding)
        aligned = [source[k] for k in holding if overlap[k] == best]
        negated = word.cue is not None
        if any(_agrees(word, negated, answer, words, answer_negated) for words in aligned):
            continue
        if negated:
            problems.append(f"{word.surface!r} is negated ({word.cue!r}) but not in the cited text")
        else:
            cue = next(w.cue for words in aligned for w in words if w.stem == word.stem and w.cue)
            problems.append(f"{word.surface!r} is negated in the cited text ({cue!r}), not in the sentence")
    if not problems:
        return None
    return Finding(code=NEGATION_MISMATCH, message=f"sentence {i}: " + "; ".join(problems[:_MAX_LISTED]))


def _agrees(
    word: _Word, negated: bool, answer: Sequence[_Word], source: Sequence[_Word], answer_negated: set[str]
) -> bool:
    """Does cited sentence ``source`` give ``word`` the answer's polarity (or the same negation nearby)?"""
    occurrences = [w for w in source if w.stem == word.stem]
    if any((w.cue is not None) == negated for w in occurrences):
        return True
    if negated:  # the cited sentence negates another word of the answer's negated phrase
        phrase = {w.stem for w in answer if w.scope == word.scope}
        return any(w.cue is not None and w.stem in phrase for w in source)
    # the answer negates another word of the cited sentence's negated phrase
    scopes = {w.scope for w in occurrences}
    return any(w.scope in scopes and w.stem in answer_negated for w in source)


# -------------------------------------------------------------------------------------- numbers


NumberKey = tuple[Decimal | str, bool]  # (value, or the literal when it is not a plain number; is a %)


def _digits_value(token: str) -> Decimal | str:
    """``"1,000.50"`` -> 1000.5; a token that is not a plain or thousands-separated number stays literal."""
    if _THOUSANDS.fullmatch(token):
        token = token.replace(",", "")
    elif not _PLAIN.fullmatch(token):
        return token  # "1.2.3", "1,5": compared as written
    try:
        return Decimal(token)
    except InvalidOperation:  # pragma: no cover - the patterns above only let numbers through
        return token


def _is_number_word(token: str) -> bool:
    return token in _UNITS or token in _TENS or token == "hundred" or token in _SCALES


def _word_numbers(run: Sequence[tuple[str, int, int]]) -> Iterator[tuple[int, int, int]]:
    """(start, end, value) of each cardinal in a run of (number word or hyphen/"and", start, end)."""
    total = current = 0
    first = last_end = -1
    words: list[str] = []
    last = ""  # kind of the previous number word: unit, tens, hundred, scale

    def flush() -> Iterator[tuple[int, int, int]]:
        nonlocal total, current, first, words, last
        if words and words != ["one"]:  # a lone "one" is a pronoun more often than a number
            yield first, last_end, total + current
        total = current = 0
        first, words, last = -1, [], ""

    for w, start, end in run:
        if w in ("-", "and"):
            continue
        if w in _UNITS:
            if last == "unit" or (last == "tens" and not 0 < _UNITS[w] < 10):
                yield from flush()
            current += _UNITS[w]
            kind = "unit"
        elif w in _TENS:
            if last in ("unit", "tens"):
                yield from flush()
            current += _TENS[w]
            kind = "tens"
        elif w == "hundred":
            if last == "hundred":
                yield from flush()
            current = (current or 1) * 100
            kind = "hundred"
        else:
            if last == "scale":
                yield from flush()
            total += (current or 1) * _SCALES[w]
            current = 0
            kind = "scale"
        if first < 0:
            first = start
        words.append(w)
        last, last_end = kind, end
    yield from flush()


def numbers(text: str) -> list[tuple[str, NumberKey]]:
    """The numbers of ``text``: (as written, (value, is a percentage)), in order (see the module doc)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    tokens = [
        (m.lastgroup or "", m.group(m.lastgroup or 0), m.start(), m.end())
        for m in _NUMBER_TOKEN.finditer(folded)
    ]
    found: list[tuple[int, int, Decimal | str, int]] = []  # start, end, value, index of the next token
    i = 0
    while i < len(tokens):
        kind, tok, start, end = tokens[i]
        if kind == "num":
            value: Decimal | str = _digits_value(tok)
            i += 1
            if i < len(tokens) and isinstance(value, Decimal):
                scale = tokens[i][1]
                if scale == "hundred" or scale in _SCALES:
                    value *= 100 if scale == "hundred" else _SCALES[scale]
                    end, i = tokens[i][3], i + 1
            found.append((start, end, value, i))
        elif kind == "word" and _is_number_word(tok):
            run: list[tuple[str, int, int]] = []
            j = i
            while j < len(tokens):
                t = tokens[j][1]
                after = tokens[j + 1][1] if j + 1 < len(tokens) else ""
                connects = (t == "-" and after in _UNITS) or (
                    t == "and"
                    and run
                    and run[-1][0] in ("hundred", *_SCALES)
                    and (after in _UNITS or after in _TENS)
                )
                if not (_is_number_word(t) or connects):
                    break
                run.append((t, tokens[j][2], tokens[j][3]))
                j += 1
            for s, e, v in _word_numbers(run):
                following = next(k for k in range(i, j + 1) if k == j or tokens[k][2] >= e)
                found.append((s, e, Decimal(v), following))
            i = j
        else:
            i += 1
    result: list[tuple[str, NumberKey]] = []
    for start, end, value, after in found:
        nxt = tokens[after][1] if after < len(tokens) else ""
        percent = nxt in ("%", "percent") or (
            nxt == "per" and after + 1 < len(tokens) and tokens[after + 1][1] == "cent"
        )
        if percent:
            end = tokens[after + (nxt == "per")][3]
        result.append((text[start:end] if len(folded) == len(text) else folded[start:end], (value, percent)))
    return result


def _number_mismatch(i: int, sentence: str, cited: Sequence[str]) -> Finding | None:
    """A finding naming the numbers of ``sentence`` that the cited text does not hold."""
    found = [key for text in cited for _, key in numbers(text)]
    values = {value for value, _ in found}
    percents = {value for value, percent in found if percent}
    missing: list[str] = []
    for surface, (value, percent) in numbers(sentence):
        if (value in percents if percent else value in values) or surface in missing:
            continue
        missing.append(surface)
    if not missing:
        return None
    listed = ", ".join(repr(m) for m in missing[:_MAX_LISTED])
    return Finding(code=NUMBER_MISMATCH, message=f"sentence {i}: number(s) not in the cited text: {listed}")


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
        found = words & content_words(" ".join(cited))
        support = len(found) / len(words) if words else 1.0
        if support >= threshold:
            for check in (_negation_mismatch, _number_mismatch):
                finding = check(i, sentence.text, cited)
                if finding is not None:
                    findings.append(finding)
        else:
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
