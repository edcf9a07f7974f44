from __future__ import annotations

import pytest

from isthmus_agent_orchestrator.sentences import split_sentences

TEXTS = (
    "Dr. Smith earned $3.50 per hour in the U.S. last year. He was happy! Was he? Yes.",
    "  The value is 3.14.  Mr. Jones, e.g. the CEO, agreed.\n\nNew paragraph without a full stop",
    'He said "Stop." Then he left... And came back.',
    "Version 2.0 is out. See www.example.com for details. Call 555-1234 before 5 p.m. today.",
    "Items:\n- first item\n- second item\n",
    "One sentence only",
    "\n\n   Indented after blank lines.   \n",
)


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_blank_text_has_no_sentences(text: str) -> None:
    assert split_sentences(text) == []


@pytest.mark.parametrize("text", TEXTS)
def test_spans_are_ordered_stripped_and_cover_every_visible_character(text: str) -> None:
    spans = split_sentences(text)
    assert spans
    previous_end = 0
    covered = [False] * len(text)
    for start, end in spans:
        assert previous_end <= start < end <= len(text)
        assert text[start:end] == text[start:end].strip()
        covered[start:end] = [True] * (end - start)
        previous_end = end
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    text = "Dr. Smith earned $3.50 per hour in the U.S. last year. He was happy! Was he? Yes."
    assert _sentences(text) == [
        "Dr. Smith earned $3.50 per hour in the U.S. last year.",
        "He was happy!",
        "Was he?",
        "Yes.",
    ]


def test_offsets_point_into_the_original_text() -> None:
    text = "  The value is 3.14.  Mr. Jones, e.g. the CEO, agreed.\n\nNew paragraph without a full stop"
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "The value is 3.14.",
        "Mr. Jones, e.g. the CEO, agreed.",
        "New paragraph without a full stop",
    ]
    assert spans[0][0] == 2  # leading whitespace is skipped, not removed


def test_repeated_sentences_get_their_own_spans() -> None:
    text = "It works. It works. It works."
    spans = split_sentences(text)
    assert len(spans) == 3
    assert len(set(spans)) == 3
    assert all(text[s:e] == "It works." for s, e in spans)


def test_ellipsis_and_quotes() -> None:
    assert _sentences('He said "Stop." Then he left... And came back.') == [
        'He said "Stop."',
        "Then he left...",
        "And came back.",
    ]


def test_a_wrapped_line_is_not_a_sentence_boundary() -> None:
    text = (
        "Employees book flights through the Skyport portal at least\n"
        "fourteen days before departure. Hotels are paid.\nItems:\nfirst item\nSecond item"
    )
    assert _sentences(text) == [
        "Employees book flights through the Skyport portal at least\nfourteen days before departure.",
        "Hotels are paid.",
        "Items:",
        "first item",  # after a colon, a new line is a new item
        "Second item",  # an upper-case line is a new line: lists and headings stay apart
    ]


def test_spans_of_a_text_seen_before_come_from_the_cache_and_stay_the_callers() -> None:
    from isthmus_agent_orchestrator.sentences import spans_cache_info

    text = "A text segmented twice. It has two sentences, cached once."
    first = split_sentences(text)
    hits, misses, _, _ = spans_cache_info()
    first.append((0, 1))  # a caller's list is its own: changing it changes nothing cached
    again = split_sentences(text)
    assert again == [(0, 23), (24, len(text))]
    assert spans_cache_info()[:2] == (hits + 1, misses)
