"""The LLM judge's reading of replies: recorded replies of SmolLM2-135M (llama.cpp, temperature 0) and of
larger chat models; a reply that is not yes / no / partly is ``unparseable``, never guessed."""

from __future__ import annotations

import pytest

from isthmus_core.ports.judge import Entailment, JudgeFailed
from isthmus_evaluation.judges.replies import (
    entail_prompt,
    entailment_of,
    messages,
    parse_answer,
    relevance_of,
    relevance_prompt,
)


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("yes", "yes"),  # SmolLM2-135M with the worked examples
        ("Yes, the premise supports", "yes"),  # SmolLM2-135M without them (max_tokens 5)
        ("Yes, the premise supports the claim.", "yes"),
        ("No.", "no"),
        ("**No**", "no"),
        ("  partly\n", "partly"),
        ("Partially.", "partly"),
        ("Answer: Yes", "yes"),
        ("answer: partial", "partly"),
        ("NO - the premise says nine.", "no"),
    ],
)
def test_a_reply_starting_with_the_answer_is_read(reply: str, answer: str) -> None:
    assert parse_answer(reply) == answer


@pytest.mark.parametrize(
    "reply",
    [
        "The passage is not relevant",  # SmolLM2-135M without the worked examples
        "The passage is not entirely relevant to the query. The answer should be a complete sentence",
        "",
        "   ",
        "Maybe",
        "I think yes",
        "Yesterday the shop opened.",  # a word starting with "yes" is not "yes"
        "Answer:",
    ],
)
def test_any_other_reply_is_unparseable_with_an_excerpt(reply: str) -> None:
    with pytest.raises(JudgeFailed) as caught:
        parse_answer(reply)
    assert caught.value.failure == "unparseable"
    assert " ".join(reply.split())[:40] in str(caught.value)


def test_answers_map_to_probabilities_and_scores() -> None:
    assert entailment_of("yes") == Entailment(1.0, 0.0, 0.0)
    assert entailment_of("partly") == Entailment(0.5, 0.5, 0.0)
    no = entailment_of("no")
    assert no.entailment == 0.0 and no.neutral + no.contradiction == 1.0 and no.label == "neutral"
    assert [relevance_of(r) for r in ("Yes.", "partly", "no")] == [1.0, 0.5, 0.0]


def test_a_question_names_both_texts_and_the_three_words_after_the_examples() -> None:
    question = entail_prompt("The shop opens at nine.", "It opens at 9.")
    assert "The shop opens at nine." in question and "It opens at 9." in question
    assert "yes, no or partly" in question
    assert "Query:\nice\n" in relevance_prompt("ice", "Glaciers.")
    chat = messages(question)
    assert chat[0]["role"] == "system" and chat[-1] == {"role": "user", "content": question}
    assert [m["role"] for m in chat[1:-1]] == ["user", "assistant", "user", "assistant"]
    assert {m["content"] for m in chat if m["role"] == "assistant"} == {"yes", "no"}
