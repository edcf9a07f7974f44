"""How many LLM tokens an answer used, for the tenant's daily token budget (``llm_tokens_per_day``).

The pipeline streams the answer (:meth:`Generator.stream`), which reports no usage (only ``generate``'s
:class:`Generation` carries the server's ``usage``), so the tokens are estimated the way OpenAI
documents for English text: about four characters a token, counted over what the generator reads (the
question and the retrieved contexts) and what it writes (every sentence it streamed, shown or not). The
estimate does not depend on the model, so budgets behave the same with every generator. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from isthmus_core.ports.generator import AnswerSentence, Context

#: characters per token of English text (OpenAI's rule of thumb)
CHARS_PER_TOKEN: Final = 4


def estimate_tokens(text: str) -> int:
    """Tokens of ``text``: its characters over :data:`CHARS_PER_TOKEN`, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


class TokenMeter:
    """The tokens of one generation: the prompt's (question and contexts) and each streamed sentence's."""

    def __init__(self, question: str, contexts: Sequence[Context]) -> None:
        self.prompt = estimate_tokens(question) + sum(estimate_tokens(c.text) for c in contexts)
        self.completion = 0

    def add(self, sentence: AnswerSentence) -> None:
        self.completion += estimate_tokens(sentence.text)

    @property
    def tokens(self) -> int:
        return self.prompt + self.completion
