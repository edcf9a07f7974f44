from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.testing.infra import shared_datasets
from isthmus_guardrail.grounding import (
    NEGATION_MISMATCH,
    NUMBER_MISMATCH,
    UNCITED,
    UNKNOWN_CITATION,
    UNSUPPORTED,
    check_grounding,
    content_words,
    numbers,
)

DOC = (
    "Isthmus is a retrieval platform. Documents are split into chunks of about 400 tokens. "
    "Each chunk is embedded with a small English model. The index is not replicated across regions."
)
# the context is the document's second half; its offsets are document offsets
CUT = DOC.index("Each chunk")
CONTEXT = Context(chunk_id="c1", document_id="d1", text=DOC[CUT:], start=CUT)
OTHER = Context(chunk_id="c2", document_id="d2", text="Refunds take five business days.", start=0)
CONTEXTS = (CONTEXT, OTHER)


def span(
    context: Context, phrase: str, chunk_id: str | None = None, document_id: str | None = None
) -> CitedSpan:
    start = context.start + context.text.index(phrase)
    return CitedSpan(
        chunk_id=chunk_id or context.chunk_id,
        document_id=document_id or context.document_id,
        start=start,
        end=start + len(phrase),
    )


def sentence(text: str, *spans: CitedSpan) -> AnswerSentence:
    return AnswerSentence(text=text, citations=spans)


@pytest.mark.parametrize(
    "phrase",
    [
        "Each chunk is embedded with a small English model.",
        "The index is not replicated across regions.",
        "Refunds take five business days.",
    ],
)
@pytest.mark.parametrize("threshold", [0.0, 0.6, 1.0])
def test_verbatim_extracted_sentence_always_passes(phrase: str, threshold: float) -> None:
    context = CONTEXT if phrase in CONTEXT.text else OTHER
    assert check_grounding([sentence(phrase, span(context, phrase))], CONTEXTS, threshold) == []


def test_paraphrase_with_inflections_is_supported() -> None:
    cited = span(CONTEXT, "Each chunk is embedded with a small English model.")
    answer = sentence("Chunks are embedded using small English models.", cited)
    assert check_grounding([answer], CONTEXTS, 0.6) == []


def test_uncited_sentence_is_reported_with_its_index() -> None:
    ok = sentence("Refunds take five business days.", span(OTHER, "Refunds take five business days."))
    findings = check_grounding([ok, AnswerSentence(text="Chunks are embedded.")], CONTEXTS, 0.6)
    assert [f.code for f in findings] == [UNCITED]
    assert "sentence 1" in findings[0].message


def test_citation_of_unknown_chunk_is_reported() -> None:
    bad = span(CONTEXT, "Each chunk", chunk_id="nope")
    findings = check_grounding([sentence("Each chunk", bad)], CONTEXTS, 0.6)
    assert [f.code for f in findings] == [UNKNOWN_CITATION]
    assert "'nope'" in findings[0].message and "sentence 0" in findings[0].message


def test_citation_with_wrong_document_is_unknown() -> None:
    bad = span(CONTEXT, "Each chunk", document_id="d2")
    assert [f.code for f in check_grounding([sentence("Each chunk", bad)], CONTEXTS, 0.6)] == [
        UNKNOWN_CITATION
    ]


def test_span_outside_the_chunk_is_unknown() -> None:
    before = CitedSpan(chunk_id="c1", document_id="d1", start=0, end=CUT)  # the first half of the doc
    findings = check_grounding([sentence("Isthmus is a retrieval platform.", before)], CONTEXTS, 0.6)
    assert [f.code for f in findings] == [UNKNOWN_CITATION]
    assert f"[0, {CUT})" in findings[0].message


def test_span_partly_outside_the_chunk_is_clipped() -> None:
    phrase = "Each chunk is embedded"
    partial = CitedSpan(chunk_id="c1", document_id="d1", start=CUT - 20, end=CUT + len(phrase))
    assert check_grounding([sentence(phrase, partial)], CONTEXTS, 1.0) == []


def test_offsets_are_relative_to_context_start() -> None:
    # the same offsets taken relative to the chunk point (mostly) before it: clipped to the chunk, the
    # span covers only "Each chu", which supports none of the sentence's words
    phrase = "The index is not replicated across regions."
    offset = CONTEXT.text.index(phrase)
    wrong = CitedSpan(chunk_id="c1", document_id="d1", start=offset, end=offset + len(phrase))
    right = span(CONTEXT, phrase)
    assert check_grounding([sentence(phrase, right)], CONTEXTS, 0.6) == []
    assert wrong.start < CONTEXT.start < wrong.end
    [finding] = check_grounding([sentence(phrase, wrong)], CONTEXTS, 0.6)
    assert finding.code == UNSUPPORTED and finding.score == 1.0


def test_unsupported_sentence_reports_support_and_missing_words() -> None:
    cited = span(CONTEXT, "Each chunk is embedded with a small English model.")
    answer = sentence("Each chunk is encrypted with quantum keys.", cited)
    [finding] = check_grounding([answer], CONTEXTS, 0.6)
    assert finding.code == UNSUPPORTED
    assert "sentence 0" in finding.message
    assert "25%" in finding.message  # chunk is found; encrypt, quantum, key are not
    assert "quantum" in finding.message
    assert finding.score == pytest.approx(0.75)


def test_threshold_decides() -> None:
    cited = span(CONTEXT, "Each chunk is embedded with a small English model.")
    answer = sentence("Each chunk is embedded with a large model.", cited)  # chunk, embed, model / larg
    assert check_grounding([answer], CONTEXTS, 0.75) == []
    assert [f.code for f in check_grounding([answer], CONTEXTS, 0.8)] == [UNSUPPORTED]


def test_negation_must_be_supported() -> None:
    phrase = "The index is not replicated across regions."
    cited = span(CONTEXT, "replicated across regions")
    assert [f.code for f in check_grounding([sentence(phrase, cited)], CONTEXTS, 1.0)] == [UNSUPPORTED]
    assert "not" in content_words("It isn't replicated")


def test_support_is_the_union_of_a_sentences_spans() -> None:
    text = "Each chunk is embedded and the index is not replicated."
    one = span(CONTEXT, "Each chunk is embedded")
    two = span(CONTEXT, "The index is not replicated")
    assert check_grounding([sentence(text, one)], CONTEXTS, 1.0) != []
    assert check_grounding([sentence(text, one, two)], CONTEXTS, 1.0) == []


def test_unknown_citation_is_reported_even_when_another_span_supports() -> None:
    phrase = "Refunds take five business days."
    good = span(OTHER, phrase)
    bad = CitedSpan(chunk_id="gone", document_id="d9", start=0, end=5)
    findings = check_grounding([sentence(phrase, good, bad)], CONTEXTS, 0.6)
    assert [f.code for f in findings] == [UNKNOWN_CITATION]


def test_sentence_without_content_words_passes_when_cited() -> None:
    assert check_grounding([sentence("And so it is.", span(OTHER, "Refunds"))], CONTEXTS, 1.0) == []


def test_no_sentences_no_findings() -> None:
    assert check_grounding([], CONTEXTS, 0.6) == []


@pytest.mark.parametrize("threshold", [-0.1, 1.01])
def test_threshold_outside_unit_interval_is_invalid(threshold: float) -> None:
    with pytest.raises(InvalidArgument, match="threshold"):
        check_grounding([], CONTEXTS, threshold)


def test_content_words_drop_stop_words_and_stem() -> None:
    assert content_words("The indexes were rebuilt by the operators") == {"index", "rebuilt", "oper"}


# ------------------------------------------------------------------------- contradictions: negation

REFUND = Context(
    chunk_id="c3",
    document_id="d3",
    text=(
        "Refunds are processed within five business days after the returned item arrives. "
        "Backups are not encrypted. Documents are encrypted at rest with 256-bit keys. "
        "Uploads larger than 1,000 MB are refused, and 5% of the quota is kept in reserve."
    ),
    start=40,
)
WHOLE = CitedSpan(chunk_id="c3", document_id="d3", start=REFUND.start, end=REFUND.start + len(REFUND.text))


def check(text: str, *spans: CitedSpan, threshold: float = 0.6) -> list[tuple[str, str]]:
    findings = check_grounding([sentence(text, *(spans or (WHOLE,)))], (*CONTEXTS, REFUND), threshold)
    return [(f.code, f.message) for f in findings]


@pytest.mark.parametrize("threshold", [0.0, 0.6, 1.0])
def test_answer_negating_what_the_source_affirms_is_a_negation_mismatch(threshold: float) -> None:
    text = "Refunds are not processed within five business days after the returned item arrives."
    assert content_words(text) <= content_words(REFUND.text)  # word overlap alone passes it
    [(code, message)] = check(text, threshold=threshold)
    assert code == NEGATION_MISMATCH
    assert "sentence 0" in message and "'processed'" in message and "'not'" in message


@pytest.mark.parametrize(
    ("text", "word", "cue"),
    [
        ("The index is replicated across regions.", "'replicated'", "'not'"),  # the source negates it
        ("The index is never replicated across regions.", None, None),  # both negate: fine
        ("The index isn't replicated across regions.", None, None),
    ],
)
def test_affirming_what_the_source_negates_is_a_negation_mismatch(
    text: str, word: str | None, cue: str | None
) -> None:
    cited = span(CONTEXT, "The index is not replicated across regions.")
    findings = check_grounding([sentence(text, cited)], CONTEXTS, 0.6)
    if word is None:
        assert findings == []
    else:
        [finding] = findings
        assert finding.code == NEGATION_MISMATCH
        assert word in finding.message and cue in finding.message and "cited text" in finding.message


@pytest.mark.parametrize(
    "text",
    [
        "No refunds are processed within five business days.",
        "Refunds are processed without the returned item arriving.",  # "without" scopes over "returned"
        "Refunds are never processed within five business days.",
        "Documents are not encrypted at rest.",
    ],
)
def test_every_negation_cue_counts(text: str) -> None:
    assert [code for code, _ in check(text)] == [NEGATION_MISMATCH]


def test_polarity_is_compared_with_the_best_matching_cited_sentence() -> None:
    # "encrypted" is negated in one cited sentence and affirmed in another: the sentence about the same
    # things (backups / documents) decides
    assert [code for code, _ in check("Backups are encrypted.")] == [NEGATION_MISMATCH]
    assert check("Backups are not encrypted.") == []
    assert check("Documents are encrypted at rest.") == []
    assert [code for code, _ in check("Documents are not encrypted at rest.")] == [NEGATION_MISMATCH]


def test_not_only_is_no_negation_and_negation_ends_at_the_clause() -> None:
    source = Context(chunk_id="c4", document_id="d4", text="Refunds are fast and free.", start=0)
    cited = CitedSpan(chunk_id="c4", document_id="d4", start=0, end=len(source.text))
    answer = sentence("Refunds are not only fast but also free.", cited)
    assert check_grounding([answer], (source,), 0.6) == []
    # the negation scopes over "encrypted" only, not over "refused" in the next clause
    assert check("Backups are not encrypted, and uploads larger than 1,000 MB are refused.") == []


# ---------------------------------------------------------------------------- contradictions: numbers


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Refunds are processed within fifty business days after the returned item arrives.", "'fifty'"),
        ("Refunds are processed within 50 business days after the returned item arrives.", "'50'"),
        ("Refunds are processed within twenty-one business days.", "'twenty-one'"),
        ("Uploads larger than 10,000 MB are refused.", "'10,000'"),
        ("50% of the quota is kept in reserve.", "'50%'"),
        ("5 percent of the quota is kept in reserve, and 2.5 MB more.", "'2.5'"),
        ("Uploads larger than 1,000 MB are refused for the 3rd time.", "'3rd'"),
    ],
)
def test_number_not_in_the_cited_text_is_a_number_mismatch(text: str, number: str) -> None:
    [(code, message)] = check(text)
    assert code == NUMBER_MISMATCH
    assert "sentence 0" in message and number in message


def test_number_mismatch_is_caught_even_when_every_word_is_supported() -> None:
    text = "Refunds take fifty business days."
    cited = span(OTHER, "Refunds take five business days.")
    assert content_words(text) <= content_words(OTHER.text)  # number words are stop words
    assert [f.code for f in check_grounding([sentence(text, cited)], CONTEXTS, 1.0)] == [NUMBER_MISMATCH]


@pytest.mark.parametrize(
    "text",
    [
        "Refunds are processed within 5 business days after the returned item arrives.",  # five = 5
        "Uploads larger than 1000 MB are refused.",  # 1,000 = 1000
        "Uploads larger than one thousand MB are refused.",
        "Uploads larger than 1,000.0 MB are refused.",
        "Five percent of the quota is kept in reserve.",  # 5% = five percent
        "5 per cent of the quota is kept in reserve.",
        "Documents are encrypted at rest with 256-bit keys.",
        "One of the rules: uploads larger than 1,000 MB are refused.",  # a lone "one" is no number
    ],
)
def test_numbers_written_differently_still_match(text: str) -> None:
    assert check(text) == []


def test_a_bare_number_matches_a_percentage_but_not_the_other_way_round() -> None:
    assert check("Of the quota, 5 parts are kept in reserve.") == []
    source = Context(chunk_id="c5", document_id="d5", text="Refunds take 5 business days.", start=0)
    cited = CitedSpan(chunk_id="c5", document_id="d5", start=0, end=len(source.text))
    findings = check_grounding([sentence("Refunds take 5% business days.", cited)], (source,), 0.6)
    assert [f.code for f in findings] == [NUMBER_MISMATCH]


D = Decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twenty-one days", [("twenty-one", D(21), False)]),
        ("Twenty one days", [("Twenty one", D(21), False)]),
        ("one hundred and five", [("one hundred and five", D(105), False)]),
        ("five and six", [("five", D(5), False), ("six", D(6), False)]),
        ("2 million users", [("2 million", D(2_000_000), False)]),
        ("1,250.50 EUR", [("1,250.50", D("1250.5"), False)]),
        ("50 % and 7 per cent", [("50 %", D(50), True), ("7 per cent", D(7), True)]),
        ("the 21st of May", [("21st", D(21), False)]),
        ("x86 and H2O", []),
        ("version 1.2.3", [("1.2.3", "1.2.3", False)]),  # not a plain number: compared as written
        ("one of them", []),
    ],
)
def test_numbers(text: str, expected: list[tuple[str, Decimal | str, bool]]) -> None:
    assert [(surface, value, percent) for surface, (value, percent) in numbers(text)] == expected


def test_contradiction_checks_only_add_to_supported_sentences() -> None:
    # an unsupported sentence gets the one finding that says so, not a pile of others
    text = "The quantum ledger is not replicated in 7 galaxies."
    assert [code for code, _ in check(text, threshold=0.9)] == [UNSUPPORTED]


# ------------------------------------------------------------------- real quoted text keeps passing

#: real prose with numbers and negations (from the Cranfield collection and the project's own docs)
REAL_TEXT = (
    "The boundary layer in simple shear flow past a flat plate is not affected by the leading edge "
    "beyond a distance of about 10 boundary-layer thicknesses. Experiments were made at Mach numbers "
    "of 1.5, 2.0 and 3.0, with a Reynolds number of 2.5 million per foot. No separation was observed "
    "for wedge angles below twenty degrees, but it did not disappear at 25 degrees either. "
    "The index isn't replicated across regions; backups run every 24 hours and are kept for 30 days. "
    "Refunds are never processed before the item arrives, and 95% of them take fewer than five days. "
    "Without a receipt, none of the 1,000 orders can be refunded."
)


def _quoted_sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in re.finditer(r"(?<=[.!?;])\s+", text):
        spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def _assert_quotes_pass(text: str) -> int:
    context = Context(chunk_id="real", document_id="real", text=text, start=7)
    whole = CitedSpan("real", "real", context.start, context.start + len(text))
    checked = 0
    for s, e in _quoted_sentences(text):
        own = CitedSpan("real", "real", context.start + s, context.start + e)
        for cited in (own, whole):  # the extractive generator cites the sentence, an LLM the chunk
            findings = check_grounding([sentence(text[s:e], cited)], (context,), 1.0)
            assert findings == [], (text[s:e], findings)
        checked += 1
    return checked


def test_quoted_sentences_with_numbers_and_negations_pass() -> None:
    assert _assert_quotes_pass(REAL_TEXT) == 7


def test_quoted_sentences_of_a_real_collection_pass() -> None:
    with shared_datasets("scifact", "corpus.jsonl", why="real abstracts to quote").open() as fh:
        docs = [json.loads(line)["text"] for line, _ in zip(fh, range(150), strict=False)]
    assert sum(_assert_quotes_pass(doc) for doc in docs if doc.strip()) > 1000


@pytest.mark.parametrize(
    ("source", "answer", "ok"),
    [
        ("Isthmus does not support Windows.", "Windows is not supported by Isthmus.", True),
        ("Windows is not supported by Isthmus.", "Isthmus does not support Windows.", True),
        ("Isthmus does not support Windows.", "Windows is supported by Isthmus.", False),
        ("Windows is supported by Isthmus.", "Isthmus does not support Windows.", False),
    ],
)
def test_a_negation_moving_with_the_word_order_is_no_mismatch(source: str, answer: str, ok: bool) -> None:
    context = Context(chunk_id="c6", document_id="d6", text=source, start=0)
    cited = CitedSpan(chunk_id="c6", document_id="d6", start=0, end=len(source))
    codes = [f.code for f in check_grounding([sentence(answer, cited)], (context,), 0.6)]
    assert codes == ([] if ok else [NEGATION_MISMATCH])


def test_a_sentence_joining_two_cited_sentences_compares_each_word_with_its_own() -> None:
    text = "Each chunk is embedded with a small model and the index is not replicated."
    assert check_grounding([sentence(text, span(CONTEXT, CONTEXT.text))], CONTEXTS, 0.6) == []
    flipped = "Each chunk is not embedded with a small model and the index is replicated."
    [finding] = check_grounding([sentence(flipped, span(CONTEXT, CONTEXT.text))], CONTEXTS, 0.6)
    assert finding.code == NEGATION_MISMATCH
    assert "'embedded' is negated ('not')" in finding.message
    assert "'replicated' is negated in the cited text ('not')" in finding.message


def test_word_analyses_of_a_text_seen_before_come_from_the_cache() -> None:
    from isthmus_guardrail.grounding import _polar_words, content_words

    text = "The wing does not stall below Mach 0.8 in the cached grounding test."
    first = (content_words(text), _polar_words(text))
    hits = (content_words.cache_info().hits, _polar_words.cache_info().hits)
    assert (content_words(text), _polar_words(text)) == first
    assert (content_words.cache_info().hits, _polar_words.cache_info().hits) == (hits[0] + 1, hits[1] + 1)
    assert isinstance(first[0], frozenset) and isinstance(first[1], tuple)  # nothing a caller can change
