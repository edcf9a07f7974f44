"""Conformance suite for the Generator port (:mod:`isthmus_core.ports.generator`).

Usage, in an adapter's tests::

    class TestMyGenerator(GeneratorConformance):
        supports_citations = True   # False: the adapter may answer without citing (still never mis-cites)

        @pytest.fixture
        def generator(self) -> MyGenerator:
            return MyGenerator(...)

The suite pins what the orchestrator relies on: an answerable question gets a non-empty answer named after
the generator; every citation names a context it was given and lies inside that context's span (document
offsets: ``context.start`` to ``context.start + len(context.text)``); ``stream()`` yields what
``generate()`` returns; with no contexts the generator abstains or answers without citations and never
raises; a blank question is rejected with :class:`~isthmus_core.errors.InvalidArgument`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, Context, Generation, Generator

#: two chunks of different documents; the first starts at document offset 120 so that span arithmetic
#: (chunk offsets vs document offsets) is exercised
CONTEXTS = (
    Context(
        chunk_id="chunk-a",
        document_id="doc-1",
        text="Isthmus stores embeddings in a vector index. The index is rebuilt every night at 02:00 UTC.",
        start=120,
        score=0.9,
    ),
    Context(
        chunk_id="chunk-b",
        document_id="doc-2",
        text="Refunds are processed within five business days after the returned item arrives.",
        start=0,
        score=0.7,
    ),
)
#: answered by the second sentence of the first context
QUESTION = "When is the vector index rebuilt?"
#: answered by the second context
SECOND_QUESTION = "How many business days does it take to process refunds?"


async def collect(generator: Generator, question: str, contexts: Sequence[Context]) -> list[AnswerSentence]:
    return [s async for s in generator.stream(question, contexts)]


def assert_citations_within(sentences: Sequence[AnswerSentence], contexts: Sequence[Context]) -> None:
    """Every citation names one of ``contexts`` and lies within its span (document offsets)."""
    by_chunk = {(c.chunk_id, c.document_id): c for c in contexts}
    for sentence in sentences:
        for span in sentence.citations:
            context = by_chunk.get((span.chunk_id, span.document_id))
            assert context is not None, f"{span} cites a context that was not given: {sentence.text!r}"
            assert context.start <= span.start < span.end <= context.start + len(context.text), (
                f"{span} lies outside its context's span "
                f"[{context.start}, {context.start + len(context.text)}): {sentence.text!r}"
            )


class GeneratorConformance:
    """Mixin: subclasses provide a ``generator`` fixture and may override the flag. A generator must give
    the same output for the same input (the OpenAI-compatible adapter is run against a scripted server):
    the suite compares two runs, and ``stream()`` with ``generate()``."""

    #: the generator cites its sources (the suite then expects citations on an answerable question)
    supports_citations: bool = True

    @pytest.fixture
    def generator(self) -> Generator:
        raise NotImplementedError("subclasses of GeneratorConformance provide a 'generator' fixture")

    # ---- protocol

    def test_is_a_generator_with_a_name(self, generator: Generator) -> None:
        assert isinstance(generator, Generator)
        assert isinstance(generator.name, str) and generator.name.strip()

    # ---- generate

    @pytest.mark.parametrize("question", [QUESTION, SECOND_QUESTION])
    async def test_answerable_question_gets_an_answer(self, generator: Generator, question: str) -> None:
        generation = await generator.generate(question, CONTEXTS)
        assert isinstance(generation, Generation)
        assert generation.generator == generator.name
        assert not generation.abstained, generation
        assert generation.sentences, generation
        assert all(isinstance(s, AnswerSentence) and s.text.strip() for s in generation.sentences)
        assert generation.text.strip()
        if self.supports_citations:
            assert any(s.citations for s in generation.sentences), generation

    @pytest.mark.parametrize("question", [QUESTION, SECOND_QUESTION])
    async def test_citations_refer_to_given_contexts_within_their_spans(
        self, generator: Generator, question: str
    ) -> None:
        generation = await generator.generate(question, CONTEXTS)
        assert_citations_within(generation.sentences, CONTEXTS)
        assert_citations_within(await collect(generator, question, CONTEXTS), CONTEXTS)

    async def test_citations_follow_the_contexts_given(self, generator: Generator) -> None:
        # the same texts under other ids and offsets: citations must use what this call was given
        moved = tuple(
            Context(f"moved-{c.chunk_id}", f"moved-{c.document_id}", c.text, c.start + 1000, c.score)
            for c in CONTEXTS
        )
        generation = await generator.generate(QUESTION, moved)
        assert_citations_within(generation.sentences, moved)
        if self.supports_citations:
            assert any(s.citations for s in generation.sentences), generation

    # ---- stream

    async def test_stream_yields_the_sentences_of_generate(self, generator: Generator) -> None:
        streamed = await collect(generator, QUESTION, CONTEXTS)
        assert streamed, "stream() yielded nothing for an answerable question"
        assert all(isinstance(s, AnswerSentence) for s in streamed)
        generation = await generator.generate(QUESTION, CONTEXTS)
        assert tuple(streamed) == generation.sentences

    async def test_is_deterministic(self, generator: Generator) -> None:
        first = await generator.generate(SECOND_QUESTION, CONTEXTS)
        second = await generator.generate(SECOND_QUESTION, CONTEXTS)
        assert first == second

    # ---- no contexts, bad input

    async def test_no_contexts_abstains_or_answers_without_citations(self, generator: Generator) -> None:
        generation = await generator.generate(QUESTION, [])
        assert isinstance(generation, Generation)
        assert generation.generator == generator.name
        assert all(not s.citations for s in generation.sentences), generation
        if not generation.abstained:
            assert generation.sentences, "a generator that does not abstain must say something"
        streamed = await collect(generator, QUESTION, [])
        assert all(not s.citations for s in streamed), streamed

    async def test_blank_question_is_invalid(self, generator: Generator) -> None:
        with pytest.raises(InvalidArgument, match="question"):
            await generator.generate("   ", CONTEXTS)
        with pytest.raises(InvalidArgument, match="question"):
            await collect(generator, "", CONTEXTS)
