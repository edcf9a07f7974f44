from __future__ import annotations

import pytest

from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_agent_orchestrator.sentences import NO_ANSWER, split_sentences
from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.generator import Context, Generation, Generator
from isthmus_core.testing.generator_conformance import CONTEXTS, GeneratorConformance

HANDBOOK = (
    Context(
        "c0",
        "handbook",
        "Welcome to the company. New employees receive 25 vacation days per year. "
        "Vacation requests go through the HR portal.",
        start=400,
    ),
    Context(
        "c1",
        "policy",
        "Unused vacation days expire at the end of March. The office is closed on public holidays.",
        start=0,
    ),
    Context("c2", "faq", "Parking is free for all staff. The cafeteria opens at 8 am.", start=50),
)


class TestExtractiveConformance(GeneratorConformance):
    @pytest.fixture
    def generator(self) -> Generator:
        return ExtractiveGenerator()


def _assert_verbatim(generation: Generation, contexts: tuple[Context, ...]) -> None:
    by_chunk = {c.chunk_id: c for c in contexts}
    for sentence in generation.sentences:
        assert len(sentence.citations) == 1
        span = sentence.citations[0]
        context = by_chunk[span.chunk_id]
        assert span.document_id == context.document_id
        assert context.text[span.start - context.start : span.end - context.start] == sentence.text


async def test_answers_with_verbatim_sentences_citing_their_document_span() -> None:
    generation = await ExtractiveGenerator().generate(
        "How many vacation days do new employees get?", HANDBOOK
    )
    assert generation.generator == "extractive"
    assert not generation.abstained
    texts = [s.text for s in generation.sentences]
    assert "New employees receive 25 vacation days per year." in texts
    assert "Parking is free for all staff." not in texts
    _assert_verbatim(generation, HANDBOOK)
    first = generation.sentences[0].citations[0]
    # the chunk starts at document offset 400; the sentence at chunk offset 24
    assert (first.start, first.end) == (400 + 24, 400 + 24 + len(generation.sentences[0].text))


async def test_sentences_come_in_context_rank_then_position_order() -> None:
    contexts = (
        Context("a", "d1", "Alpha beta gamma. Filler text here. Delta epsilon zeta alpha."),
        Context("b", "d2", "Gamma alpha beta again."),
    )
    generation = await ExtractiveGenerator(max_sentences=3).generate("alpha beta gamma delta", contexts)
    assert [s.text for s in generation.sentences] == [
        "Alpha beta gamma.",
        "Delta epsilon zeta alpha.",
        "Gamma alpha beta again.",
    ]


async def test_max_sentences_keeps_the_best_scoring_ones() -> None:
    contexts = (Context("a", "d1", "Alpha only here. Alpha and beta here. Alpha beta gamma all here."),)
    generation = await ExtractiveGenerator(max_sentences=2).generate("alpha beta gamma", contexts)
    assert [s.text for s in generation.sentences] == ["Alpha and beta here.", "Alpha beta gamma all here."]


async def test_unrelated_question_abstains_without_citations() -> None:
    generation = await ExtractiveGenerator().generate("What is the boiling point of mercury?", HANDBOOK)
    assert generation.abstained
    assert [s.text for s in generation.sentences] == [NO_ANSWER]
    assert all(not s.citations for s in generation.sentences)


async def test_stopword_only_question_abstains() -> None:
    generation = await ExtractiveGenerator().generate("What is it that you do?", HANDBOOK)
    assert generation.abstained


async def test_min_overlap_is_the_fraction_of_question_weight_a_sentence_must_cover() -> None:
    question = "vacation days parking fees"
    lenient = await ExtractiveGenerator(min_overlap=0.2).generate(question, HANDBOOK)
    strict = await ExtractiveGenerator(min_overlap=0.9).generate(question, HANDBOOK)
    assert not lenient.abstained
    assert strict.abstained  # no sentence covers both topics


async def test_word_forms_match_through_stemming() -> None:
    contexts = (Context("a", "d", "Refunds are processed within five business days."),)
    generation = await ExtractiveGenerator().generate("refund processing", contexts)
    assert [s.text for s in generation.sentences] == ["Refunds are processed within five business days."]


async def test_rare_question_words_weigh_more_than_common_ones() -> None:
    contexts = (
        Context(
            "a", "d1", "The policy applies to all staff. The policy was revised in May. Policy owners sign."
        ),
        Context("b", "d2", "Parental leave lasts sixteen weeks."),
    )
    generation = await ExtractiveGenerator(max_sentences=1).generate("parental policy", contexts)
    # each sentence matches one of the two words; "parental" is rarer, so it outweighs the rank boost
    assert [s.text for s in generation.sentences] == ["Parental leave lasts sixteen weeks."]


async def test_higher_ranked_context_wins_a_tie() -> None:
    same = "The cafeteria opens at 8 am."
    contexts = (
        Context("top", "d1", f"Other words. {same}"),
        Context("low", "d2", "The cafeteria opens at 9 am on Sundays."),
    )
    generation = await ExtractiveGenerator(max_sentences=1).generate("when does the cafeteria open", contexts)
    assert [s.citations[0].chunk_id for s in generation.sentences] == ["top"]


async def test_sentences_repeated_in_overlapping_chunks_are_quoted_once() -> None:
    shared = "The index is rebuilt every night at 02:00 UTC."
    contexts = (
        Context("first", "doc", f"Isthmus stores embeddings. {shared}", start=0),
        Context("second", "doc", f"{shared} Backups are kept for a week.", start=27),
    )
    generation = await ExtractiveGenerator().generate("When is the index rebuilt?", contexts)
    assert [s.text for s in generation.sentences] == [shared]
    assert generation.sentences[0].citations[0].chunk_id == "first"


async def test_stream_yields_the_generated_sentences_one_by_one() -> None:
    generator = ExtractiveGenerator()
    question = "How many vacation days do new employees get and when do they expire?"
    streamed = [s async for s in generator.stream(question, HANDBOOK)]
    assert len(streamed) > 1
    assert tuple(streamed) == (await generator.generate(question, HANDBOOK)).sentences


async def test_contexts_with_empty_text_are_ignored() -> None:
    contexts = (Context("empty", "d", ""), *CONTEXTS)
    generation = await ExtractiveGenerator().generate("When is the vector index rebuilt?", contexts)
    assert not generation.abstained
    assert all(s.citations[0].chunk_id != "empty" for s in generation.sentences)


async def test_blank_question_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="question is empty"):
        await ExtractiveGenerator().generate(" \n", HANDBOOK)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_sentences": 0}, "max_sentences"),
        ({"min_overlap": 1.5}, "min_overlap"),
        ({"min_overlap": -0.1}, "min_overlap"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ExtractiveGenerator(**kwargs)  # type: ignore[arg-type]


# a document as ingestion chunks it: sentences, and chunk windows that cut some of them
TRAVEL = (
    "Employees book flights through the Skyport portal at least fourteen days before departure. "
    "Hotels are reimbursed up to 120 euros per night in Germany and at 140 euros per night abroad. "
    "Train travel is preferred for trips under four hours. Dr. Smith approves exceptions for conferences."
)


def _sentences_of_travel() -> set[str]:
    return {TRAVEL[s:e] for s, e in split_sentences(TRAVEL)}


@pytest.mark.parametrize(
    ("question", "start_at", "end_at"),
    [
        # the window ends inside the hotel sentence, or starts inside it (the cut of issue 11)
        ("How much are hotels reimbursed per night abroad?", None, "140 euros"),
        ("How much are hotels reimbursed per night abroad?", "140 euros", None),
        ("How many days before departure are flights booked?", "fourteen", None),
        # "Dr." ends in a full stop but is no sentence: pySBD carries it on into "Smith approves"
        ("Does Dr. Smith prefer train travel?", "Train travel", "Smith approves"),
    ],
)
async def test_a_sentence_cut_by_a_chunk_window_is_never_quoted(
    question: str, start_at: str | None, end_at: str | None
) -> None:
    start = TRAVEL.index(start_at) if start_at else 0
    end = TRAVEL.index(end_at) if end_at else len(TRAVEL)
    contexts = (Context("c", "travel", TRAVEL[start:end].strip(), start=start),)
    generation = await ExtractiveGenerator(max_sentences=5, min_overlap=0.0001).generate(question, contexts)
    whole = _sentences_of_travel()
    for sentence in generation.sentences:
        if generation.abstained:  # better no answer than a fragment
            assert sentence.text == NO_ANSWER and not sentence.citations
            continue
        assert sentence.text in whole, f"fragment quoted: {sentence.text!r}"
        [span] = sentence.citations
        assert TRAVEL[span.start : span.end] == sentence.text


async def test_a_sentence_whole_in_one_window_is_quoted_from_it() -> None:
    cut = TRAVEL.index("140 euros")
    hotels = TRAVEL.index("Hotels")
    contexts = (
        Context("head", "travel", TRAVEL[:cut].strip(), start=0),
        Context("overlap", "travel", TRAVEL[hotels:], start=hotels),
    )
    generation = await ExtractiveGenerator().generate("How much are hotels reimbursed per night?", contexts)
    [sentence] = [s for s in generation.sentences if "Hotels" in s.text]
    assert sentence.text.endswith("per night abroad.")
    assert sentence.citations[0].chunk_id == "overlap"


async def test_a_chunk_that_continues_a_sentence_is_not_quoted_from_its_start() -> None:
    """Ingestion marks a chunk that starts between two words of a sentence longer than a chunk."""
    context = Context(
        "c2",
        "route",
        "Rotterdam, with one night in each port. The tour bus leaves Hamburg at seven.",
        start=80,
        continues_sentence=True,
    )
    generation = await ExtractiveGenerator(max_sentences=3, min_overlap=0.0001).generate(
        "How many nights in each port, Rotterdam?", [context]
    )
    assert "Rotterdam, with one night in each port." not in [s.text for s in generation.sentences]


def test_a_sentence_quoted_again_is_read_from_the_cache_with_the_same_answer() -> None:
    gen = ExtractiveGenerator()
    contexts = [Context("c1", "d1", "Gliders soar in rising air. Thermals form over fields.", 0, 1.0)]
    first = gen._answer("How do gliders soar?", contexts)
    hits, misses, _, _ = gen.cache_info()
    assert misses >= 1
    assert gen._answer("How do gliders soar?", contexts) == first
    assert gen.cache_info()[:2] == (hits + misses, misses)  # every sentence came from the cache
