"""What the LLM judge asks and how it reads the answers (pure: prompts in, verdicts out).

One question per item, answered with one word (two worked examples before it show the format: small
models then answer with the word instead of a sentence):

* entailment — "Does the premise support the claim?" ``yes`` / ``partly`` / ``no``, read as class
  probabilities: ``yes`` → (entailment 1, neutral 0, contradiction 0); ``partly`` → (0.5, 0.5, 0);
  ``no`` → (0, 0.5, 0.5). A one-word "no" does not tell an unsupported claim from a contradicted one, so
  it is split evenly between the two: its P(entailment) is 0 either way, which is what faithfulness
  counts, and ``label`` reads it as "neutral" (the first of the tied classes).
* relevance — "Is the passage relevant to the query?" ``yes`` → 1.0, ``partly`` → 0.5, ``no`` → 0.0.

Reading a reply: markup and punctuation around words are ignored and case too; the answer is the
reply's first word, or the word after a leading "answer:" ("Answer: Yes."). ``partially``/``partial``
count as ``partly``. Anything else is :class:`~isthmus_core.ports.judge.JudgeFailed`
(``unparseable``, with an excerpt of the reply): a reply is never guessed into a score.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from isthmus_core.ports.judge import Entailment, JudgeFailed

Answer = Literal["yes", "partly", "no"]

SYSTEM_PROMPT: Final = (
    "You are a strict evaluator. Answer every question with exactly one word: yes, no or partly."
)
#: the longest reply excerpt kept in an "unparseable" failure
EXCERPT_CHARS: Final = 120

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ANSWERS: Final[dict[str, Answer]] = {
    "yes": "yes",
    "no": "no",
    "partly": "partly",
    "partially": "partly",
    "partial": "partly",
}
ENTAILMENT: Final[dict[Answer, Entailment]] = {
    "yes": Entailment(1.0, 0.0, 0.0),
    "partly": Entailment(0.5, 0.5, 0.0),
    "no": Entailment(0.0, 0.5, 0.5),
}
RELEVANCE: Final[dict[Answer, float]] = {"yes": 1.0, "partly": 0.5, "no": 0.0}


def entail_prompt(premise: str, hypothesis: str) -> str:
    return (
        f"Premise:\n{premise}\n\nClaim:\n{hypothesis}\n\n"
        "Does the premise support the claim? Answer with one word: yes, no or partly."
    )


def relevance_prompt(query: str, passage: str) -> str:
    return (
        f"Query:\n{query}\n\nPassage:\n{passage}\n\n"
        "Is the passage relevant to the query? Answer with one word: yes, no or partly."
    )


def _example_messages() -> list[dict[str, str]]:
    return [
        {
            "role": "user",
            "content": relevance_prompt("boiling point of water", "Water boils at 100 °C at sea level."),
        },
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": entail_prompt("The shop opens at nine.", "The shop opens at noon.")},
        {"role": "assistant", "content": "no"},
    ]


def messages(prompt: str) -> list[dict[str, str]]:
    """The chat messages of one question: the instruction, the worked examples, the question."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        *_example_messages(),
        {"role": "user", "content": prompt},
    ]


def parse_answer(reply: str) -> Answer:
    """The one-word answer of ``reply`` (see the module docstring); JudgeFailed("unparseable") if none."""
    words = [w.casefold() for w in _WORD.findall(reply)]
    if words[:1] == ["answer"]:
        words = words[1:]
    answer = _ANSWERS.get(words[0]) if words else None
    if answer is None:
        excerpt = " ".join(reply.split())[:EXCERPT_CHARS]
        raise JudgeFailed("unparseable", f"the judge answered {excerpt!r}, not yes, no or partly")
    return answer


def entailment_of(reply: str) -> Entailment:
    return ENTAILMENT[parse_answer(reply)]


def relevance_of(reply: str) -> float:
    return RELEVANCE[parse_answer(reply)]
