"""Chunking (pure: text in, chunks with character offsets out). This module: the ``token`` strategy,
token-aware recursive chunking with overlap; the other strategies (``sentence``, ``markdown``,
``semantic``, ``parent-child``) and their selection per tenant or collection are in
:mod:`isthmus_ingestion.chunking.strategies`.

Splitting is done by ``semantic-text-splitter``: it cuts at the highest semantic boundary that fits
(paragraphs, then lines, sentences, words, graphemes) and measures chunks with the embedder's own
Hugging Face tokenizer, so a chunk never exceeds what the embedding model will see.

A line break that only wraps a sentence (the line does not end with ``.``, ``!``, ``?``, ``:`` or ``;``
and the next line goes on in lower case, as in plain text and PDF text) is not a boundary: the splitter
sees a space there, so a chunk does not end in the middle of such a sentence. (Parsed Markdown and HTML
have no such breaks: their soft line breaks are spaces already.) The agent orchestrator's sentence
splitter reads the same breaks the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from semantic_text_splitter import TextSplitter
from tokenizers import Tokenizer

from isthmus_core.errors import ConfigurationError, IsthmusError
from isthmus_core.text import unwrap_lines

#: what ends a sentence, and what may close it after that (quotes, brackets)
_SENTENCE_END: Final = frozenset(".!?\u2026\u3002\uff01\uff1f")
_CLOSERS: Final = "\"'\u201d\u2019\u00bb)]"
#: words with a full stop after which a sentence goes on (a chunk the splitter starts there continues it)
_ABBREVIATIONS: Final = frozenset(
    "dr. mr. mrs. ms. prof. st. sr. jr. mt. no. nos. fig. figs. vol. vs. cf. e.g. i.e. etc. approx. ca. "
    "inc. ltd. co. corp. dept. est. jan. feb. mar. apr. jun. jul. aug. sep. sept. oct. nov. dec.".split()
)
#: initials and dotted acronyms: "j.", "u.s.", "a.m."
_INITIALS: Final = re.compile(r"(?:[^\W\d_]\.)+")


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A chunk of a document: ``document_text[start:end] == text`` (offsets in characters, not bytes)."""

    index: int
    text: str
    start: int
    end: int
    #: the chunk starts inside a sentence (one longer than a chunk split between words, or after "Dr.")
    continues_sentence: bool = False
    #: what the strategy adds to the chunk's metadata (heading path, parent section): ``(key, value)`` pairs
    metadata: tuple[tuple[str, str], ...] = field(default=())


def continues_sentence(text: str, start: int) -> bool:
    """Whether ``text[start:]`` starts inside a sentence: on the same line as text before it that does
    not end a sentence (no terminal punctuation, closing quotes and brackets aside, or a full stop that
    ends an abbreviation or an initial: ``Dr. | Smith``, ``U.S. | Army``, ``J. | Smith``)."""
    before = text[:start]
    kept = before.rstrip()
    if not kept or "\n" in before[len(kept) :]:
        return False  # the start of the text, of a paragraph or of a line
    if kept.rstrip(_CLOSERS)[-1:] not in _SENTENCE_END:
        return True
    last_word = kept.rsplit(None, 1)[-1].lstrip("\"'(\u201c\u2018[").lower()
    return last_word in _ABBREVIATIONS or _INITIALS.fullmatch(last_word) is not None


class Chunker:
    """Splits text into chunks of at most ``max_tokens`` tokens, neighbours sharing up to ``overlap_tokens``.

    ``max_tokens`` includes the tokenizer's special tokens (``[CLS]``/``[SEP]`` for bge): a chunk encodes to
    at most ``max_tokens`` ids, exactly what the embedder sees (so ``max_tokens=512`` fits bge without
    truncation). Chunks have leading and trailing whitespace trimmed.
    """

    def __init__(self, tokenizer_file: Path, max_tokens: int = 256, overlap_tokens: int = 32) -> None:
        if max_tokens < 1:
            raise ConfigurationError(f"chunk max_tokens must be at least 1, got {max_tokens}")
        if overlap_tokens < 0:
            raise ConfigurationError(f"chunk overlap_tokens must not be negative, got {overlap_tokens}")
        if overlap_tokens >= max_tokens:
            raise ConfigurationError(
                f"chunk overlap_tokens ({overlap_tokens}) must be smaller than max_tokens ({max_tokens})"
            )
        tokenizer_file = Path(tokenizer_file)
        if not tokenizer_file.is_file():
            raise ConfigurationError(f"tokenizer file {tokenizer_file} does not exist")
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # the tokenizers library raises a bare Exception on a malformed file
            raise ConfigurationError(f"tokenizer file {tokenizer_file} could not be loaded: {exc}") from exc
        # a truncating tokenizer would under-count long pieces; padding would over-count short ones
        tokenizer.no_truncation()
        tokenizer.no_padding()
        # the splitter counts a chunk's tokens without the special tokens the embedder adds around it
        special_tokens = tokenizer.num_special_tokens_to_add(False)
        content_tokens = max_tokens - special_tokens
        if content_tokens <= overlap_tokens:
            raise ConfigurationError(
                f"chunk max_tokens ({max_tokens}) must exceed overlap_tokens ({overlap_tokens}) plus the "
                f"{special_tokens} special tokens the tokenizer adds to every chunk"
            )
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._overlap_tokens = overlap_tokens
        self._splitter_capacity = content_tokens
        self._splitter = TextSplitter.from_huggingface_tokenizer(
            tokenizer, content_tokens, overlap=overlap_tokens, trim=True
        )

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def overlap_tokens(self) -> int:
        return self._overlap_tokens

    @property
    def special_tokens(self) -> int:
        """Tokens the tokenizer adds around every chunk (``[CLS]``/``[SEP]``): counted in ``max_tokens``."""
        return self._max_tokens - self._splitter_capacity

    def content_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text without the special tokens (what a chunk built of them adds up to)."""
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def count_tokens(self, text: str) -> int:
        """Tokens the embedder sees for ``text`` (special tokens included), the unit of ``max_tokens``."""
        return len(self._tokenizer.encode(text).ids)

    def split(self, text: str) -> list[TextChunk]:
        """Chunks of ``text`` in document order; ``[]`` for empty or whitespace-only text."""
        if not text.strip():
            return []
        # same length as ``text``: the offsets the splitter reports hold for ``text`` too
        unwrapped = unwrap_lines(text)
        chunks: list[TextChunk] = []
        for index, (start, piece) in enumerate(self._splitter.chunk_indices(unwrapped)):
            end = start + len(piece)
            # semantic-text-splitter (>= 0.12) reports character offsets, which is what we promise;
            # fail loudly should a future version change the unit
            if unwrapped[start:end] != piece:
                raise IsthmusError(
                    f"chunk {index} at offset {start} does not match the text: "
                    "the splitter's offset unit changed"
                )
            chunks.append(TextChunk(index, text[start:end], start, end, continues_sentence(unwrapped, start)))
        return chunks
