"""Generator port: a question and retrieved contexts in, an answer with citations out.

Conformance: :mod:`isthmus_core.testing.generator_conformance`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Context:
    """A retrieved chunk the generator may cite."""

    chunk_id: str
    document_id: str
    text: str
    start: int = 0  # character offset of ``text`` in the document
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class CitedSpan:
    """Part of the answer and the context span supporting it (offsets are in the document)."""

    chunk_id: str
    document_id: str
    start: int
    end: int


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
