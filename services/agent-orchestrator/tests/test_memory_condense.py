"""HeuristicCondenser: follow-ups of realistic conversations become standalone questions; questions that
stand on their own (or come first) are returned unchanged."""

from __future__ import annotations

import pytest

from isthmus_agent_orchestrator.agents.memory.condense import (
    HeuristicCondenser,
    is_follow_up,
    key_terms,
    noun_phrase,
)
from isthmus_agent_orchestrator.agents.types import Turn


def said(*questions: str) -> list[Turn]:
    return [Turn(question=q, answer="…", standalone=q) for q in questions]


async def conversation(*questions: str) -> list[str]:
    """Each question condensed with the turns before it, as the pipeline would keep them."""
    condenser = HeuristicCondenser()
    turns: list[Turn] = []
    standalone: list[str] = []
    for q in questions:
        s = await condenser.condense(turns, q)
        standalone.append(s)
        turns.append(Turn(question=q, answer="…", standalone=s))
    return standalone


async def test_a_search_engine_conversation() -> None:
    assert await conversation(
        "What is BM25?",
        "How is it computed?",
        "What is its complexity?",
        "What about TF-IDF?",
        "And how is it stored?",
    ) == [
        "What is BM25?",
        "How is BM25 computed?",
        "What is BM25's complexity?",
        "What is TF-IDF?",
        "How is TF-IDF stored?",
    ]


async def test_a_geography_conversation_swaps_the_topic_into_the_noun_phrase() -> None:
    assert await conversation(
        "What is the capital of France?",
        "What about Germany?",
        "And the population?",
        "How big is it?",
        "What about Spain?",
    ) == [
        "What is the capital of France?",
        "What is the capital of Germany?",
        "What is the population of Germany?",
        "How big is the population of Germany?",
        "How big is the population of Spain?",
    ]


async def test_a_support_conversation_with_plural_pronouns() -> None:
    assert await conversation(
        "How do refunds work for annual plans?",
        "How long do they take?",
        "Why?",
    ) == [
        "How do refunds work for annual plans?",
        "How long do refunds take?",
        "Why (refunds)?",
    ]


async def test_verbs_end_the_noun_phrase() -> None:
    assert await conversation("How does BM25 rank documents?", "Why does it use IDF?") == [
        "How does BM25 rank documents?",
        "Why does BM25 use IDF?",
    ]
    assert await conversation("Who founded Acme Corp?", "When was it founded?") == [
        "Who founded Acme Corp?",
        "When was Acme Corp founded?",
    ]


@pytest.mark.parametrize(
    "question",
    [
        "What is dense retrieval?",
        "Is it true that dense retrieval beats BM25?",  # a dummy "it"
        "What is the model that ranks documents first?",  # "that" of a relative clause
        "How are refunds for monthly plans handled?",
    ],
)
async def test_standalone_questions_are_unchanged(question: str) -> None:
    assert not is_follow_up(question)
    assert await HeuristicCondenser().condense(said("What is BM25?"), question) == question


@pytest.mark.parametrize("question", ["How is it computed?", "Why?", "What about TF-IDF?"])
async def test_without_history_nothing_changes(question: str) -> None:
    assert is_follow_up(question)
    assert await HeuristicCondenser().condense([], question) == question


async def test_only_the_previous_turn_counts() -> None:
    history = said("What is BM25?", "What is the refund policy?")
    assert await HeuristicCondenser().condense(history, "Does it cover gift cards?") == (
        "Does the refund policy cover gift cards?"
    )


async def test_a_determiner_keeps_its_noun_and_gets_the_key_terms() -> None:
    history = said("What are vector databases?")
    assert await HeuristicCondenser().condense(history, "Which of these support hybrid search?") == (
        "Which of these support hybrid search (vector databases)?"
    )


async def test_a_previous_question_without_content_leaves_the_follow_up_alone() -> None:
    assert await HeuristicCondenser().condense(said("Why?"), "How so?") == "How so?"


def test_noun_phrases_and_key_terms() -> None:
    def np(q: str) -> str | None:
        span = noun_phrase(q)
        return q[span[0] : span[1]] if span else None

    assert np("What is BM25") == "BM25"
    assert np("What are the benefits of hybrid search") == "the benefits of hybrid search"
    assert np("How does BM25 rank documents") == "BM25"
    assert np("Why") is None
    assert key_terms("How does BM25 rank documents with BM25 weights") == [
        "BM25",
        "rank",
        "documents",
        "weights",
    ]


@pytest.mark.parametrize(
    ("previous", "follow_up", "standalone"),
    [
        # the last word after "does"/"do" is the verb, not part of the subject
        ("When does the hangar open?", "And when does it close?", "When does the hangar close?"),
        ("How do gliders soar?", "Why do they need thermals?", "Why do gliders need thermals?"),
        ("Where can visitors park?", "Do they pay for it?", "Do visitors pay for it?"),
    ],
)
async def test_the_verb_ending_a_question_is_not_the_subject(
    previous: str, follow_up: str, standalone: str
) -> None:
    history = [Turn(question=previous, answer="…")]
    assert await HeuristicCondenser().condense(history, follow_up) == standalone
