"""Generator port: a question and retrieved contexts in, an answer with citations out.

Conformance: :mod:`isthmus_core.testing.generator_conformance`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

#: chunk metadata keys, written by ingestion and read into :class:`Context`: what a person recognises the
#: source by (file name without directories, document title, URI given at upload); absent when unknown
SOURCE_NAME_KEY = "source_name"
TITLE_KEY = "title"
URI_KEY = "uri"
#: chunk metadata key, "true" when the chunk's text starts inside a sentence that began before it (a
#: sentence longer than a chunk split between words, or a cut after "Dr."): its first sentence is not whole
CONTINUES_SENTENCE_KEY = "continues_sentence"
#: chunk metadata keys written by ingestion's ``parent-child`` chunking (isthmus_ingestion.chunking): the
#: section a small indexed chunk belongs to — its text and its character offsets in the document. The
#: orchestrator answers from the parent text (one context per parent) when they are present
PARENT_TEXT_KEY = "parent_text"
PARENT_START_KEY = "parent_start"
PARENT_END_KEY = "parent_end"
#: chunk metadata key written by the ``markdown`` and ``parent-child`` chunking: the headings above the
#: chunk, outermost first, joined by " > "
HEADING_PATH_KEY = "heading_path"
#: chunk metadata key written by retrieval when it indexes a chunk: the document version it belongs to
#: (provenance of answers); absent on chunks indexed before it was recorded
DOCUMENT_VERSION_KEY = "document_version"


@dataclass(frozen=True, slots=True)
class Context:
    """A retrieved chunk the generator may cite."""

    chunk_id: str
    document_id: str
    text: str
    start: int = 0  # character offset of ``text`` in the document
    score: float = 0.0
    #: the source, for people: file name, title and URI of the document ("" when unknown)
    source_name: str = ""
    title: str = ""
    uri: str = ""
    #: ``text`` starts inside a sentence that began before the chunk (its first sentence is cut)
    continues_sentence: bool = False
    #: for provenance: where the chunk ends in the document, the document version it belongs to (0 =
    #: unknown) and the embedding model of the search that found it ("" = unknown, or BM25 alone)
    end: int = 0
    document_version: int = 0
    embedding_model: str = ""

    def cite(self, start: int, end: int) -> CitedSpan:
        """A citation of ``[start, end)`` (document offsets) in this chunk, naming its source."""
        return CitedSpan(self.chunk_id, self.document_id, start, end, self.source_name, self.title, self.uri)


@dataclass(frozen=True, slots=True)
class CitedSpan:
    """Part of the answer and the context span supporting it (offsets are in the document)."""

    chunk_id: str
    document_id: str
    start: int
    end: int
    #: the cited document's file name, title and URI, copied from its :class:`Context` ("" when unknown)
    source_name: str = ""
    title: str = ""
    uri: str = ""


@dataclass(frozen=True, slots=True)
class AnswerSentence:
    text: str
    citations: tuple[CitedSpan, ...] = ()


@dataclass(frozen=True, slots=True)
class Generation:
    sentences: tuple[AnswerSentence, ...]
    generator: str
    #: ``True`` when the generator found nothing to say from the contexts
    abstained: bool = False
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)


@runtime_checkable
class Generator(Protocol):
    @property
    def name(self) -> str: ...

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation: ...

    def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        """Yield the answer sentence by sentence (each with its citations), in order."""
