"""The agents' reasoning over a chat model: :class:`LlmPlanner` (sub-questions), :class:`LlmCondenser`
(standalone follow-ups) and :class:`LlmCritic` (is a draft grounded?), each asking for a reply constrained
to a JSON schema and validating it. A failed call, invalid JSON or a reply that does not fit falls back to
the deterministic implementation given (heuristic planner, condenser, critic): a model never crashes a run.

Usage: every method takes an optional kw-only ``usage_sink`` that receives the call's tokens (also when
the reply is then discarded: they were spent).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isthmus_agent_orchestrator.agents.types import (
    ChatMessage,
    ChatModel,
    Condenser,
    Critique,
    Draft,
    Planner,
    Turn,
    Usage,
)

_log = structlog.get_logger(__name__)
UsageSink = Callable[[Usage], None]
_M = TypeVar("_M", bound=BaseModel)

PLAN_PROMPT = (
    "You split a user's question into the separate questions a search engine should answer, one per "
    "distinct information need. A simple question stays one sub-question, word for word. Write each "
    "sub-question so it stands alone (no pronouns pointing at another). Reply with JSON only: "
    '{"sub_questions": ["...", "..."]}.'
)
CONDENSE_PROMPT = (
    "You rewrite the user's follow-up question into a standalone question that can be understood "
    "without the conversation: replace pronouns and ellipses with what they refer to. If it already "
    'stands alone, return it unchanged. Reply with JSON only: {"standalone": "..."}.'
)
CRITIC_PROMPT = (
    "You check a draft answer against the numbered sources it was written from. It is grounded when "
    "every claim is supported by the sources it cites. When it is not, say why briefly and give a better "
    "search query that would find the missing evidence. Reply with JSON only: "
    '{"grounded": true|false, "reason": "...", "retry_query": "..."}.'
)

_MARKERS = re.compile(r"\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")


class Critic(Protocol):
    """Judges a draft before anyone sees it (``reflect``) — the graphs' critic port."""

    async def critique(self, question: str, draft: Draft) -> Critique: ...


class _Plan(BaseModel):
    model_config = ConfigDict(extra="ignore")
    sub_questions: list[str] = Field(min_length=1)


class _Standalone(BaseModel):
    model_config = ConfigDict(extra="ignore")
    standalone: str = Field(min_length=1)


class _Critique(BaseModel):
    model_config = ConfigDict(extra="ignore")
    grounded: bool
    reason: str = ""
    retry_query: str = ""


def plan_schema(max_sub_questions: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "sub_questions": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "maxItems": max_sub_questions,
            }
        },
        "required": ["sub_questions"],
        "additionalProperties": False,
    }


CONDENSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"standalone": {"type": "string", "minLength": 1}},
    "required": ["standalone"],
    "additionalProperties": False,
}
CRITIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "grounded": {"type": "boolean"},
        "reason": {"type": "string"},
        "retry_query": {"type": "string"},
    },
    "required": ["grounded", "reason", "retry_query"],
    "additionalProperties": False,
}


def parse_json_reply(text: str, model: type[_M]) -> _M:
    """The reply as ``model``: the JSON object it is, or the first ``{…}`` in it (models that wrap JSON in
    prose or code fences). Raises ``ValueError`` when neither validates."""
    candidates = [text.strip()]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    error: Exception = ValueError("empty reply")
    for candidate in candidates:
        try:
            return model.model_validate(json.loads(candidate, strict=False))
        except (ValueError, ValidationError) as exc:
            error = exc
    raise ValueError(f"the reply is not the JSON asked for: {error}")


class _LlmAgent:
    def __init__(self, model: ChatModel, *, system_prompt: str, max_tokens: int) -> None:
        self._model = model
        self._system = system_prompt
        self._max_tokens = max_tokens

    async def _ask(
        self, user: str, schema: Mapping[str, Any], into: type[_M], usage_sink: UsageSink | None, what: str
    ) -> _M | None:
        """The validated reply, or ``None`` (logged) when the call or the reply failed."""
        messages = [ChatMessage("system", self._system), ChatMessage("user", user)]
        try:
            reply = await self._model.complete(messages, schema=schema, max_tokens=self._max_tokens)
        except Exception as exc:  # a model never crashes a run: the deterministic agent answers
            _log.warning("llm_agent_fallback", agent=what, provider=self._model.name, error=str(exc))
            return None
        if usage_sink is not None:
            usage_sink(reply.usage)
        try:
            return parse_json_reply(reply.text, into)
        except ValueError as exc:
            _log.warning("llm_agent_fallback", agent=what, provider=reply.provider, error=str(exc)[:300])
            return None


class LlmPlanner(_LlmAgent):
    """Sub-questions from the chat model; ``fallback`` when it fails or answers nothing usable."""

    name = "llm"

    def __init__(
        self,
        model: ChatModel,
        fallback: Planner,
        *,
        system_prompt: str = PLAN_PROMPT,
        max_tokens: int = 256,
    ) -> None:
        super().__init__(model, system_prompt=system_prompt, max_tokens=max_tokens)
        self._fallback = fallback

    async def plan(
        self, question: str, *, max_sub_questions: int = 4, usage_sink: UsageSink | None = None
    ) -> list[str]:
        user = f"Question: {question.strip()}\n\nAt most {max_sub_questions} sub-questions."
        got = await self._ask(user, plan_schema(max_sub_questions), _Plan, usage_sink, "planner")
        subs = list(dict.fromkeys(s.strip() for s in got.sub_questions if s.strip())) if got else []
        if not subs:
            return await self._fallback.plan(question, max_sub_questions=max_sub_questions)
        return subs[:max_sub_questions]


class LlmCondenser(_LlmAgent):
    """A standalone question from the chat model; no call without history; ``fallback`` on failure."""

    name = "llm"

    def __init__(
        self,
        model: ChatModel,
        fallback: Condenser,
        *,
        system_prompt: str = CONDENSE_PROMPT,
        max_tokens: int = 128,
    ) -> None:
        super().__init__(model, system_prompt=system_prompt, max_tokens=max_tokens)
        self._fallback = fallback

    async def condense(
        self, history: Sequence[Turn], question: str, *, usage_sink: UsageSink | None = None
    ) -> str:
        if not history:
            return question
        lines = []
        for turn in history:
            lines.append(f"User: {turn.standalone or turn.question}")
            lines.append(f"Assistant: {_MARKERS.sub('', turn.answer).strip()}")
        user = "Conversation:\n" + "\n".join(lines) + f"\n\nFollow-up: {question.strip()}"
        got = await self._ask(user, CONDENSE_SCHEMA, _Standalone, usage_sink, "condenser")
        if got is None or not got.standalone.strip():
            return await self._fallback.condense(history, question)
        return got.standalone.strip()


class LlmCritic(_LlmAgent):
    """A critique from the chat model; ``fallback`` on failure."""

    name = "llm"

    def __init__(
        self,
        model: ChatModel,
        fallback: Critic,
        *,
        system_prompt: str = CRITIC_PROMPT,
        max_tokens: int = 256,
    ) -> None:
        super().__init__(model, system_prompt=system_prompt, max_tokens=max_tokens)
        self._fallback = fallback

    async def critique(self, question: str, draft: Draft, *, usage_sink: UsageSink | None = None) -> Critique:
        numbers = {c.chunk_id: i for i, c in enumerate(draft.contexts, start=1)}
        sources = "\n\n".join(f"[{i}] {c.text.strip()}" for i, c in enumerate(draft.contexts, start=1))
        sentences = "\n".join(
            s.text + "".join(f" [{numbers[c.chunk_id]}]" for c in s.citations if c.chunk_id in numbers)
            for s in draft.sentences
        )
        user = f"Question: {question.strip()}\n\nSources:\n\n{sources}\n\nDraft answer:\n{sentences}"
        got = await self._ask(user, CRITIC_SCHEMA, _Critique, usage_sink, "critic")
        if got is None:
            return await self._fallback.critique(question, draft)
        retry = got.retry_query.strip() if not got.grounded else ""
        return Critique(
            grounded=got.grounded, reason=got.reason.strip() or "(no reason given)", retry_query=retry
        )
