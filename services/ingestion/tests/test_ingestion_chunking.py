from __future__ import annotations

import itertools
import random
import re
import textwrap
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from isthmus_core.errors import ConfigurationError
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_ingestion.chunking import Chunker, TextChunk, continues_sentence

MAX_TOKENS = 64
OVERLAP_TOKENS = 16
WORDS = "café naïve — Ζεύς 🙂 river bank quick brown fox jumps over lazy dog vector retrieval".split()


@pytest.fixture(scope="module")
def tokenizer_file() -> Path:
    path: Path = bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json"
    return path


@pytest.fixture(scope="module")
def chunker(tokenizer_file: Path) -> Chunker:
    return Chunker(tokenizer_file, max_tokens=MAX_TOKENS, overlap_tokens=OVERLAP_TOKENS)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_file: Path) -> Tokenizer:
    """An independent instance of the same tokenizer, to check the chunker's counts."""
    loaded = Tokenizer.from_file(str(tokenizer_file))
    loaded.no_truncation()
    return loaded


def _document(seed: int, paragraphs: int = 12) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))).capitalize() + "."
            for _ in range(rng.randint(2, 8))
        ]
        out.append(" ".join(sentences))
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def document() -> str:
    return _document(seed=7)


@pytest.fixture(scope="module")
def chunks(chunker: Chunker, document: str) -> list[TextChunk]:
    return chunker.split(document)


def test_offsets_are_character_offsets_into_the_document(document: str, chunks: list[TextChunk]) -> None:
    assert any(ord(char) > 0xFFFF for char in document)  # astral characters differ in every unit
    assert len(chunks) > 3
    for chunk in chunks:
        assert document[chunk.start : chunk.end] == chunk.text
        assert chunk.end - chunk.start == len(chunk.text)


def test_indices_are_sequential_and_chunks_in_document_order(chunks: list[TextChunk]) -> None:
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert all(a.start < b.start and a.end < b.end for a, b in itertools.pairwise(chunks))


def test_every_chunk_fits_max_tokens_including_special_tokens(
    chunks: list[TextChunk], tokenizer: Tokenizer, chunker: Chunker
) -> None:
    counts = [len(tokenizer.encode(chunk.text).ids) for chunk in chunks]
    assert max(counts) <= MAX_TOKENS
    assert counts == [chunker.count_tokens(chunk.text) for chunk in chunks]
    # the budget is actually used: chunks are not needlessly tiny
    assert max(counts) > MAX_TOKENS // 2


def test_chunks_cover_the_whole_text(document: str, chunks: list[TextChunk]) -> None:
    covered = [False] * len(document)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    uncovered = [i for i, char in enumerate(document) if not char.isspace() and not covered[i]]
    assert uncovered == []


def test_consecutive_chunks_overlap_within_the_budget(
    chunks: list[TextChunk], document: str, tokenizer: Tokenizer
) -> None:
    overlapping = [(a, b) for a, b in itertools.pairwise(chunks) if b.start < a.end]
    assert len(overlapping) >= 1
    for a, b in overlapping:
        shared = document[b.start : a.end]
        assert len(tokenizer.encode(shared, add_special_tokens=False).ids) <= OVERLAP_TOKENS


def test_without_overlap_chunks_are_disjoint(tokenizer_file: Path, document: str) -> None:
    chunks = Chunker(tokenizer_file, max_tokens=MAX_TOKENS, overlap_tokens=0).split(document)
    assert len(chunks) > 1
    assert all(b.start >= a.end for a, b in itertools.pairwise(chunks))


def test_non_ascii_text_round_trips(chunker: Chunker) -> None:
    text = "  café naïve — \u0396 🙂 " * 60  # Greek capital zeta
    chunks = chunker.split(text)
    assert len(chunks) > 1
    assert all(text[c.start : c.end] == c.text and c.text == c.text.strip() for c in chunks)


def test_short_text_is_one_trimmed_chunk(chunker: Chunker) -> None:
    text = "\n  A short note about Isthmus.  \n"
    assert chunker.split(text) == [TextChunk(index=0, text=text.strip(), start=3, end=3 + len(text.strip()))]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_empty_or_whitespace_text_has_no_chunks(chunker: Chunker, text: str) -> None:
    assert chunker.split(text) == []


def test_properties(chunker: Chunker) -> None:
    assert (chunker.max_tokens, chunker.overlap_tokens) == (MAX_TOKENS, OVERLAP_TOKENS)


def test_missing_tokenizer_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(ConfigurationError, match="does not exist"):
        Chunker(missing)


def test_malformed_tokenizer_file(tmp_path: Path) -> None:
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigurationError, match="could not be loaded"):
        Chunker(broken)


@pytest.mark.parametrize(
    ("max_tokens", "overlap_tokens", "message"),
    [
        (32, 32, "must be smaller than max_tokens"),
        (16, 40, "must be smaller than max_tokens"),
        (0, 0, "at least 1"),
        (32, -1, "must not be negative"),
        (4, 2, "special tokens"),
    ],
)
def test_invalid_sizes(tokenizer_file: Path, max_tokens: int, overlap_tokens: int, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Chunker(tokenizer_file, max_tokens=max_tokens, overlap_tokens=overlap_tokens)


def test_a_line_break_that_wraps_a_sentence_is_not_a_chunk_boundary(chunker: Chunker) -> None:
    """Plain text and PDF text keep the source's line wrapping: chunks must not end at a wrap."""
    prose = " ".join(
        f"Rule {n} says that the plants on floor {n} are watered by the team on duty every morning."
        for n in range(1, 25)
    )
    text = textwrap.fill(prose, width=60)  # as a .txt file or a PDF page holds it
    wraps = {m.start() for m in re.finditer(r"(?<=[a-z0-9,])\n(?=[a-z])", text)}
    assert len(wraps) > 10
    chunks = chunker.split(text)
    assert len(chunks) > 3
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.end not in wraps, f"chunk {chunk.index} ends mid-sentence: {chunk.text[-30:]!r}"
        assert chunk.start - 1 not in wraps, f"chunk {chunk.index} starts mid-sentence: {chunk.text[:30]!r}"


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        ("Alpha beta. Gamma delta.", 0, False),  # the start of the text
        ("Alpha beta. Gamma delta.", 12, False),  # after a full stop
        ('He said "Stop." Then he left.', 16, False),  # after a closing quote that ends a sentence
        ("Alpha beta\nGamma delta.", 11, False),  # a new line
        ("Hamburg first, then Antwerp, then Rotterdam.", 34, True),  # between two words of a sentence
        ("Hamburg first, then Antwerp, then Rotterdam.", 15, True),  # after a comma
        ("Ask Dr. Smith first.", 8, True),  # after an abbreviation
        ("Made in the U.S. Army depots.", 17, True),  # after a dotted acronym
        ("Ask J. Smith first.", 7, True),  # after an initial
        ("We met Tom. He smiled.", 12, False),  # after a name that ends a sentence
    ],
)
def test_continues_sentence(text: str, start: int, expected: bool) -> None:
    assert continues_sentence(text, start) is expected


def test_chunks_of_a_sentence_longer_than_a_chunk_say_they_continue_it(chunker: Chunker) -> None:
    long_sentence = ", ".join(f"the {w} river bank" for w in WORDS * 3) + "."
    text = f"Short opening sentence. {long_sentence.capitalize()} Closing words here."
    chunks = chunker.split(text)
    inside = [c for c in chunks if text.index("The") < c.start < text.index("Closing")]
    assert inside, "the long sentence is split between words"
    assert all(c.continues_sentence for c in inside)
    assert not chunks[0].continues_sentence
    assert [c.continues_sentence for c in chunks] == [continues_sentence(text, c.start) for c in chunks]
