"""Chunking strategies and their selection per tenant or collection (pure: text in, chunks out).

Every strategy returns :class:`~isthmus_ingestion.chunking.TextChunk` values whose offsets hold for the
text given (``text[c.start:c.end] == c.text``) and that encode to at most ``max_tokens`` tokens, special
tokens included (what the embedder sees):

* ``token`` — :class:`~isthmus_ingestion.chunking.Chunker`: token windows cut at the highest semantic
  boundary that fits (paragraphs, lines, sentences, words), neighbours overlapping.
* ``sentence`` — whole sentences packed into chunks (a sentence longer than a chunk is cut as ``token``
  cuts it); neighbours share whole trailing sentences up to the overlap.
* ``markdown`` — heading-aware: the document is cut into sections at its headings, each section chunked
  on its own (a chunk never spans two sections); the headings above a chunk are in its metadata
  (:data:`HEADING_PATH_KEY`, outermost first, joined by ``" > "``). The parsed text carries no markup, so a
  heading is a line standing alone: a Markdown ATX line (``## Methods``, level = the ``#`` count), a
  numbered title (``2.1 Methods``, level = the number's parts) or a short paragraph of one line without
  closing punctuation followed by more text (the level of the last numbered or ATX heading + 1, else 1).
* ``semantic`` — sentences packed as ``sentence`` packs them, and also cut where the meaning shifts:
  between two neighbouring sentences whose embeddings' cosine distance is above the
  ``breakpoint_percentile`` of the document's distances. The embedder comes in through the core
  :class:`~isthmus_core.ports.embedder.Embedder` port (the bundled bge-small in the module).
* ``parent-child`` — parents are the ``markdown`` sections cut to at most ``parent_max_tokens``; each is
  cut into small children of ``child_max_tokens`` which are indexed. A child's metadata names its parent:
  :data:`PARENT_TEXT_KEY`, :data:`PARENT_START_KEY`, :data:`PARENT_END_KEY` (offsets in the document); the
  orchestrator answers from the parent's text.

:class:`ChunkingSelection` picks a strategy per document: ``chunking_overrides["<tenant>/<collection>"]``
(the collection from the upload's ``collection`` metadata), else ``chunking_overrides["<tenant>"]``, else
the default ``chunking``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal, Protocol, get_args

import numpy as np

from isthmus_core.contracts.ids import is_tenant_id
from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.embedder import Embedder
from isthmus_core.ports.generator import HEADING_PATH_KEY, PARENT_END_KEY, PARENT_START_KEY, PARENT_TEXT_KEY
from isthmus_core.text import unwrap_lines
from isthmus_ingestion.chunking import _ABBREVIATIONS, _CLOSERS, _INITIALS, _SENTENCE_END, Chunker, TextChunk

StrategyName = Literal["token", "sentence", "markdown", "semantic", "parent-child"]
STRATEGIES: Final[tuple[str, ...]] = get_args(StrategyName)
#: upload metadata key naming the collection a document belongs to (for ``chunking_overrides``)
COLLECTION_KEY: Final = "collection"
COLLECTION_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_COLLECTION: Final = re.compile(COLLECTION_PATTERN)
HEADING_SEPARATOR: Final = " > "


class Splitter(Protocol):
    """A chunking strategy: ``text`` in, its chunks in document order out (``[]`` for blank text)."""

    def split(self, text: str) -> list[TextChunk]: ...


def override_key_problem(key: str) -> str | None:
    """Why ``key`` is not a ``chunking_overrides`` key (``<tenant>`` or ``<tenant>/<collection>``)."""
    tenant, _, collection = key.partition("/")
    if not is_tenant_id(tenant):
        return (
            f"{key!r}: the tenant part must be a tenant id (lowercase letters, digits and '-', "
            "at most 63, not starting with '-')"
        )
    if "/" in key and not _COLLECTION.fullmatch(collection):
        return f"{key!r}: the collection part must be 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
    return None


@dataclass(frozen=True)
class ChunkingSelection:
    """Which strategy chunks a document: the most specific of ``overrides`` (``tenant/collection``, then
    ``tenant``), else ``default``; ``splitters`` holds one splitter per strategy in use."""

    default: str
    splitters: Mapping[str, Splitter]
    overrides: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        wanted = {self.default, *(self.overrides or {}).values()}
        missing = sorted(wanted - set(self.splitters))
        if missing:
            raise ConfigurationError(f"chunking strategies selected but not built: {missing}")

    @classmethod
    def single(cls, splitter: Splitter, name: str = "token") -> ChunkingSelection:
        return cls(name, {name: splitter})

    def name_for(self, tenant_id: str, collection: str | None = None) -> str:
        overrides = self.overrides or {}
        if collection:
            chosen = overrides.get(f"{tenant_id}/{collection}")
            if chosen is not None:
                return chosen
        return overrides.get(tenant_id, self.default)

    def select(self, tenant_id: str, collection: str | None = None) -> tuple[str, Splitter]:
        name = self.name_for(tenant_id, collection)
        return name, self.splitters[name]


def strategies_in_use(default: str, overrides: Mapping[str, str]) -> set[str]:
    return {default, *overrides.values()}


# -- sentences -----------------------------------------------------------------------------------------

_SENTENCE_GAP: Final = re.compile(r"\s+")


def _ends_sentence(text: str, end: int) -> bool:
    """``text[:end]`` (no trailing whitespace) ends a sentence: terminal punctuation (closing quotes and
    brackets aside) that does not close an abbreviation or an initial (``Dr.``, ``U.S.``, ``J.``)."""
    tail = text[max(0, end - 64) : end]
    if tail.rstrip(_CLOSERS)[-1:] not in _SENTENCE_END:
        return False
    words = tail.rsplit(None, 1)
    last_word = words[-1].lstrip("\"'(\u201c\u2018[").lower() if words else ""
    return not (last_word in _ABBREVIATIONS or _INITIALS.fullmatch(last_word) is not None)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` in order, whitespace excluded; every non-blank
    character is in exactly one span. A sentence ends at terminal punctuation followed by whitespace
    (not after an abbreviation or an initial) and at every line break that is not a wrapped line."""
    if not text.strip():
        return []
    unwrapped = unwrap_lines(text)
    spans: list[tuple[int, int]] = []
    start = len(unwrapped) - len(unwrapped.lstrip())
    for gap in _SENTENCE_GAP.finditer(unwrapped, start):
        if "\n" in gap.group() or _ends_sentence(unwrapped, gap.start()):
            spans.append((start, gap.start()))
            start = gap.end()
    end = len(unwrapped.rstrip())
    if start < end:
        spans.append((start, end))
    return spans


class _Packer:
    """Packs sentences into chunks of at most ``max_tokens`` (special tokens included)."""

    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker
        self._budget = chunker.max_tokens - chunker.special_tokens

    def pack(
        self,
        text: str,
        spans: Sequence[tuple[int, int]],
        breaks: frozenset[int] = frozenset(),
    ) -> list[tuple[int, int, bool]]:
        """``(start, end, continues_sentence)`` of chunks made of whole ``spans`` (sentences), a new chunk
        starting at each index in ``breaks``; trailing sentences of up to ``overlap_tokens`` are repeated
        at the start of the next chunk (not across a break). A sentence over the budget is cut by the
        token splitter."""
        if not spans:
            return []
        counts = self._chunker.content_tokens([text[s:e] for s, e in spans])
        out: list[tuple[int, int, bool]] = []
        current: list[int] = []  # indexes into spans
        used = 0
        overlap = self._chunker.overlap_tokens

        def flush(carry: bool) -> None:
            nonlocal current, used
            if not current:
                return
            out.append((spans[current[0]][0], spans[current[-1]][1], False))
            kept: list[int] = []
            if carry and overlap:
                total = 0
                for i in reversed(current[1:]):  # never the whole chunk again: the packing moves on
                    if total + counts[i] > overlap:
                        break
                    total += counts[i]
                    kept.insert(0, i)
            current, used = kept, sum(counts[i] for i in kept)

        for i, (s, e) in enumerate(spans):
            if i in breaks:
                flush(carry=False)
                current, used = [], 0
            if counts[i] > self._budget:  # one sentence longer than a chunk: cut between words
                flush(carry=False)
                current, used = [], 0
                for piece in self._chunker.split(text[s:e]):
                    out.append((s + piece.start, s + piece.end, piece.start > 0 or piece.continues_sentence))
                continue
            # neighbouring sentences are separated by whitespace, which a BERT tokenizer does not count
            if current and used + counts[i] > self._budget:
                flush(carry=True)
                while current and used + counts[i] > self._budget:
                    used -= counts[current.pop(0)]
            current.append(i)
            used += counts[i]
        flush(carry=False)
        return out


def _chunks(
    text: str, pieces: Iterable[tuple[int, int, bool]], chunker: Chunker, first_index: int = 0
) -> list[TextChunk]:
    """TextChunks of ``pieces`` (offsets in ``text``); a piece the real tokenizer counts over the limit
    (never expected: sentence counts add up) is cut again by the token splitter."""
    out: list[TextChunk] = []
    for start, end, continues in pieces:
        piece = text[start:end]
        if chunker.count_tokens(piece) <= chunker.max_tokens:
            out.append(TextChunk(first_index + len(out), piece, start, end, continues))
            continue
        for sub in chunker.split(piece):
            out.append(
                TextChunk(
                    first_index + len(out),
                    sub.text,
                    start + sub.start,
                    start + sub.end,
                    continues or sub.start > 0 or sub.continues_sentence,
                )
            )
    return out


class SentenceChunker:
    """The ``sentence`` strategy (see the module doc)."""

    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker
        self._packer = _Packer(chunker)

    def split(self, text: str) -> list[TextChunk]:
        return _chunks(text, self._packer.pack(text, sentence_spans(text)), self._chunker)


# -- sections (markdown) -------------------------------------------------------------------------------

_ATX: Final = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_NUMBERED: Final = re.compile(r"^(\d+(?:\.\d+){0,5})\.?\s+\S")
#: a heading paragraph: at most this many characters and words, not ending like a sentence or a clause
HEADING_MAX_CHARS: Final = 120
HEADING_MAX_WORDS: Final = 14
_NOT_HEADING_END: Final = frozenset(".!?,;:…")


@dataclass(frozen=True, slots=True)
class Section:
    """A part of the document under one heading: ``[start, end)`` (the heading line included) and the
    headings above it, outermost first (``()`` for text before the first heading)."""

    start: int
    end: int
    path: tuple[str, ...]


def _heading(lines: Sequence[tuple[int, str]], i: int) -> tuple[int | None, str] | None:
    """``(level or None, title)`` if line ``i`` (a paragraph of one line) is a heading."""
    _, line = lines[i]
    stripped = line.strip()
    atx = _ATX.match(stripped)
    if atx:
        return len(atx.group(1)), atx.group(2).strip()
    before_blank = i == 0 or not lines[i - 1][1].strip()
    after_blank = i + 1 < len(lines) and not lines[i + 1][1].strip()
    has_more = any(rest.strip() for _, rest in lines[i + 1 :])
    if not (before_blank and after_blank and has_more):
        return None
    if len(stripped) > HEADING_MAX_CHARS or len(stripped.split()) > HEADING_MAX_WORDS:
        return None
    if stripped[-1] in _NOT_HEADING_END and not stripped.endswith("..."):
        return None
    numbered = _NUMBERED.match(stripped)
    if numbered:
        return numbered.group(1).count(".") + 1, stripped
    return None, stripped


def sections(text: str) -> list[Section]:
    """The document cut at its headings (see the module doc): sections cover every non-blank character,
    in order, each starting at its heading. Headings with no text between them (a title right above a
    chapter heading) open one section, named by the innermost."""
    lines: list[tuple[int, str]] = []
    at = 0
    for line in text.split("\n"):
        lines.append((at, line))
        at += len(line) + 1
    out: list[Section] = []
    path: list[tuple[int, str, bool]] = []  # (level, title, the level was explicit: ATX or numbered)
    start = 0
    body = False  # the current section has text besides its headings
    for i, (offset, line) in enumerate(lines):
        if not line.strip():
            continue
        found = _heading(lines, i)
        if found is None:
            body = True
            continue
        level, title = found
        explicit = level is not None
        if level is None:  # an unnumbered heading: just below the last explicit one
            level = next((lv + 1 for lv, _, ex in reversed(path) if ex), 1)
        if body:
            out.append(Section(start, offset, tuple(t for _, t, _ in path)))
        if body or not path:
            start = offset
        body = False
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title, explicit))
    if text[start:].strip():
        out.append(Section(start, len(text), tuple(t for _, t, _ in path)))
    return out


def _within(chunker: Chunker, text: str, section: Section) -> list[TextChunk]:
    """The section's chunks by ``chunker``, offsets in ``text``."""
    body = text[section.start : section.end]
    return [
        TextChunk(0, c.text, section.start + c.start, section.start + c.end, c.continues_sentence)
        for c in chunker.split(body)
    ]


class MarkdownChunker:
    """The ``markdown`` strategy (see the module doc)."""

    def __init__(self, chunker: Chunker) -> None:
        self._chunker = chunker

    def split(self, text: str) -> list[TextChunk]:
        out: list[TextChunk] = []
        for section in sections(text):
            meta = ((HEADING_PATH_KEY, HEADING_SEPARATOR.join(section.path)),) if section.path else ()
            for c in _within(self._chunker, text, section):
                out.append(replace(c, index=len(out), metadata=meta))
        return out


# -- semantic ------------------------------------------------------------------------------------------


def semantic_breaks(vectors: np.ndarray, percentile: float) -> frozenset[int]:
    """Indexes of the sentences that start a new chunk: sentence ``i + 1`` when the cosine distance
    between sentences ``i`` and ``i + 1`` (rows L2-normalised) is above the ``percentile`` of the
    document's distances (none when every distance is the same)."""
    if len(vectors) < 3:
        return frozenset()
    distances = 1.0 - np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    threshold = float(np.percentile(distances, percentile))
    return frozenset(int(i) + 1 for i in np.flatnonzero(distances > threshold))


class SemanticChunker:
    """The ``semantic`` strategy (see the module doc)."""

    def __init__(self, chunker: Chunker, embedder: Embedder, breakpoint_percentile: float = 90.0) -> None:
        if not 0 < breakpoint_percentile < 100:
            raise ConfigurationError(
                f"the semantic breakpoint percentile must be between 0 and 100, got {breakpoint_percentile}"
            )
        self._chunker = chunker
        self._packer = _Packer(chunker)
        self._embedder = embedder
        self._percentile = breakpoint_percentile

    def split(self, text: str) -> list[TextChunk]:
        spans = sentence_spans(text)
        breaks: frozenset[int] = frozenset()
        if len(spans) >= 3:
            vectors = self._embedder.embed([text[s:e] for s, e in spans], "passage").vectors
            breaks = semantic_breaks(np.asarray(vectors, dtype=np.float32), self._percentile)
        return _chunks(text, self._packer.pack(text, spans, breaks), self._chunker)


# -- parent-child --------------------------------------------------------------------------------------


class ParentChildChunker:
    """The ``parent-child`` strategy (see the module doc): ``parents`` cuts sections into parents,
    ``children`` cuts parents into the indexed chunks."""

    def __init__(self, parents: Chunker, children: Chunker) -> None:
        if children.max_tokens >= parents.max_tokens:
            raise ConfigurationError(
                f"parent-child: children ({children.max_tokens} tokens) must be smaller than "
                f"parents ({parents.max_tokens} tokens)"
            )
        self._parents = parents
        self._children = children

    def parents(self, text: str) -> list[tuple[TextChunk, tuple[str, ...]]]:
        out: list[tuple[TextChunk, tuple[str, ...]]] = []
        for section in sections(text):
            out.extend((p, section.path) for p in _within(self._parents, text, section))
        return out

    def split(self, text: str) -> list[TextChunk]:
        out: list[TextChunk] = []
        for parent, path in self.parents(text):
            heading = ((HEADING_PATH_KEY, HEADING_SEPARATOR.join(path)),) if path else ()
            children = self._children.split(parent.text)
            for c in children:
                start, end = parent.start + c.start, parent.start + c.end
                whole = start == parent.start and end == parent.end
                meta = heading + (
                    ()
                    if whole  # the child is its parent: nothing more to answer from
                    else (
                        (PARENT_TEXT_KEY, parent.text),
                        (PARENT_START_KEY, str(parent.start)),
                        (PARENT_END_KEY, str(parent.end)),
                    )
                )
                continues = c.continues_sentence or (c.start == 0 and parent.continues_sentence)
                out.append(TextChunk(len(out), c.text, start, end, continues, meta))
        return out


# -- building ------------------------------------------------------------------------------------------


def build_selection(
    default: str,
    overrides: Mapping[str, str],
    make_chunker: Callable[[int, int], Chunker],
    *,
    max_tokens: int,
    overlap_tokens: int,
    child_max_tokens: int,
    parent_max_tokens: int,
    embedder: Callable[[], Embedder] | None = None,
    breakpoint_percentile: float = 90.0,
) -> ChunkingSelection:
    """One splitter per strategy in use; ``make_chunker(max_tokens, overlap_tokens)`` builds a token
    chunker over the embedder's tokenizer; ``embedder`` is called only when ``semantic`` is in use."""
    base = make_chunker(max_tokens, overlap_tokens)
    splitters: dict[str, Splitter] = {}
    for name in sorted(strategies_in_use(default, overrides)):
        if name == "token":
            splitters[name] = base
        elif name == "sentence":
            splitters[name] = SentenceChunker(base)
        elif name == "markdown":
            splitters[name] = MarkdownChunker(base)
        elif name == "semantic":
            if embedder is None:
                raise ConfigurationError("the semantic chunking strategy needs an embedder")
            splitters[name] = SemanticChunker(base, embedder(), breakpoint_percentile)
        elif name == "parent-child":
            child_overlap = min(overlap_tokens, child_max_tokens // 8)
            splitters[name] = ParentChildChunker(
                make_chunker(parent_max_tokens, 0), make_chunker(child_max_tokens, child_overlap)
            )
        else:
            raise ConfigurationError(f"unknown chunking strategy {name!r}; the strategies are {STRATEGIES}")
    return ChunkingSelection(default, splitters, dict(overrides))
