"""The answer prompt and citation parsing every LLM generator shares (OpenAI-compatible, Anthropic,
Bedrock): the contexts are numbered sources, the model cites them as ``[n]``, each reply sentence cites the
whole span of every context it names (markers removed from its text); markers naming no given context are
dropped, never invented.

Pure: no I/O library. :func:`stream_sentences` turns any stream of text deltas into cited sentences as
soon as each one is complete, so every provider streams the same way.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

from isthmus_agent_orchestrator.sentences import NO_ANSWER, split_sentences
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generation

#: the version of the prompt (SYSTEM_PROMPT and :func:`user_prompt`): bump it whenever either changes, so
#: an answer's provenance says which prompt made it
PROMPT_VERSION = "1"
#: a tenant's prompt version rendered for one question: (system message, user message); ``None`` = the
#: built-in :data:`SYSTEM_PROMPT` and :func:`user_prompt`
Prompt = tuple[str, str]
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given by the user. Do not use any other "
    "knowledge. After every sentence of your answer, cite the sources that support it with their numbers "
    "in square brackets, before the full stop, for example: 'Refunds take five business days [2].' "
    "Write at most a few short sentences. If the sources do not contain the answer, reply exactly: "
    f"{NO_ANSWER}"
)

#: one citation marker: ``[2]``, ``[1, 3]`` or ``[1; 3]``
_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_MARKER_WITH_SPACE = re.compile(r"\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
#: markers at the start of a sentence: they close the previous sentence ("… days. [2] Next …")
_LEADING_MARKERS = re.compile(r"(?:\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\])+")
_WORD = re.compile(r"[^\W_]")
#: a word followed by whitespace: the sentence after a boundary has really begun
_BEGUN = re.compile(r"\S\s")
_NORMAL = re.compile(r"[^a-z0-9]+")


def user_prompt(question: str, contexts: Sequence[Context]) -> str:
    """The user message: the contexts numbered from 1 (best first), then the question."""
    sources = "\n\n".join(f"[{i}] {c.text.strip()}" for i, c in enumerate(contexts, start=1))
    return f"Sources:\n\n{sources}\n\nQuestion: {question.strip()}"


def parse_answer(text: str, contexts: Sequence[Context]) -> list[AnswerSentence]:
    """Split a model reply into sentences and turn their ``[n]`` markers into citations of context n."""
    return [s for raw, _ in segments(text) if (s := cited(raw, contexts)) is not None]


def generation_of(
    text: str, contexts: Sequence[Context], generator: str, usage: Mapping[str, int] | None = None
) -> Generation:
    """A whole reply as a :class:`Generation`: an abstention when it says nothing or says it cannot."""
    sentences = parse_answer(text, contexts)
    if not sentences or all(is_no_answer(s.text) for s in sentences):
        return abstain(generator, usage)
    return Generation(sentences=tuple(sentences), generator=generator, usage=dict(usage or {}))


async def stream_sentences(
    tokens: AsyncIterable[str], contexts: Sequence[Context]
) -> AsyncIterator[AnswerSentence]:
    """Cited sentences of a stream of text deltas, each yielded once it is complete (the next sentence
    has really begun, so its boundary and trailing markers cannot move); :data:`NO_ANSWER` when the
    stream said nothing."""
    buffer = ""
    done = 0  # characters of ``buffer`` already yielded as sentences
    yielded = False
    async for token in tokens:
        buffer += token
        parts = segments(buffer[done:])
        if len(parts) < 2 or not _BEGUN.search(buffer, done + parts[-1][1]):
            # the last sentence has not really begun: the boundary before it may still move, and
            # markers closing the sentence before it may still arrive
            continue
        for raw, _ in parts[:-1]:
            if (sentence := cited(raw, contexts)) is not None:
                yielded = True
                yield sentence
        done += parts[-1][1]
    for raw, _ in segments(buffer[done:]):
        if (sentence := cited(raw, contexts)) is not None:
            yielded = True
            yield sentence
    if not yielded:
        yield AnswerSentence(NO_ANSWER)


def segments(text: str) -> list[tuple[str, int]]:
    """Sentences of ``text``, each with the citation markers that follow it.

    Markers that open a sentence ("… days. [2] Next …") close the previous one, so they move back to it.
    Each item is ``(sentence text with its markers, offset in text where the sentence's own words start)``.
    """
    items: list[tuple[str, int]] = []
    for start, end in split_sentences(text):
        lead = _LEADING_MARKERS.match(text, start, end)
        if lead is not None and items:
            items[-1] = (items[-1][0] + " " + lead.group().strip(), items[-1][1])
            piece = text[lead.end() : end]
            if not piece.strip():
                continue
            start = lead.end() + len(piece) - len(piece.lstrip())
        items.append((text[start:end], start))
    return items


def cited(raw: str, contexts: Sequence[Context]) -> AnswerSentence | None:
    """One sentence with its markers turned into citations; ``None`` for markers or punctuation only."""
    numbers = [int(n) for m in _MARKER.finditer(raw) for n in re.split(r"[,;]", m.group(1))]
    text = _MARKER_WITH_SPACE.sub("", raw).strip()
    if not _WORD.search(text):
        return None  # markers or punctuation only
    if is_no_answer(text):
        return AnswerSentence(NO_ANSWER)
    citations: list[CitedSpan] = []
    for n in dict.fromkeys(numbers):
        if 1 <= n <= len(contexts):
            c = contexts[n - 1]
            citations.append(c.cite(c.start, c.start + len(c.text)))
    return AnswerSentence(text, tuple(citations))


def is_no_answer(text: str) -> bool:
    return _NORMAL.sub(" ", text.lower()).strip() == _NORMAL.sub(" ", NO_ANSWER.lower()).strip()


def abstain(generator: str, usage: Mapping[str, int] | None = None) -> Generation:
    return Generation(
        sentences=(AnswerSentence(NO_ANSWER),), generator=generator, abstained=True, usage=dict(usage or {})
    )


def estimate_tokens(text: str) -> int:
    """A rough token count (~4 characters a token) for servers that report none."""
    return (len(text) + 3) // 4 if text else 0


def messages_of(question: str, contexts: Sequence[Context], prompt: Prompt | None) -> Prompt:
    """The (system, user) messages of an answer: the tenant's rendered prompt version, else the built-in."""
    return prompt if prompt is not None else (SYSTEM_PROMPT, user_prompt(question, contexts))


# ---- tenants' prompt versions (agents/prompts.py keeps them): rendering, pure -----------------------------

#: the line of a template that separates its system message from its user message
USER_SEPARATOR: Final = "\n=== user ===\n"
_Q: Final = "\x00question\x00"
_C: Final = "\x00contexts\x00"


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    system: str
    user: str


def escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@cache
def user_prompt_parts() -> tuple[str, str, str]:
    """openai_compat's user message around its two fields: (before the sources, between, after the
    question), learned by rendering it with sentinels (the prompt is imported, never copied)."""
    rendered = user_prompt(_Q, [Context(chunk_id="", document_id="", text=_C)])
    sources = rendered.index(_C)
    numbered = rendered.rfind("\n", 0, sources) + 1  # where the "[1] " of the first source begins
    before = rendered[:numbered]
    question = rendered.index(_Q)
    return before, rendered[sources + len(_C) : question], rendered[question + len(_Q) :]


def contexts_block(contexts: Sequence[Context]) -> str:
    """The ``{contexts}`` of ``synthesize``: the contexts numbered as openai_compat's prompt numbers them."""
    before, between, after = user_prompt_parts()
    rendered = user_prompt(_Q, contexts)
    return rendered[len(before) : len(rendered) - len(between) - len(_Q) - len(after)]


def render(template: str, **values: object) -> RenderedPrompt:
    """``template`` with its fields filled, split into system and user messages at :data:`USER_SEPARATOR`."""
    text = template.format(**values)
    system, sep, user = text.partition(USER_SEPARATOR)
    return RenderedPrompt(system, user) if sep else RenderedPrompt("", text)


def answer_prompt(template: str, question: str, contexts: Sequence[Context]) -> Prompt:
    """A ``synthesize`` template rendered for one question: its (system, user) messages."""
    rendered = render(template, question=question, contexts=contexts_block(contexts))
    return rendered.system, rendered.user
