from __future__ import annotations

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_guardrail.grounding import (
    UNCITED,
    UNKNOWN_CITATION,
    UNSUPPORTED,
    check_grounding,
    content_words,
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
