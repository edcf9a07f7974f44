"""LLM planner, condenser and critic: schema-constrained JSON replies, and the deterministic fallback on a
failed call or a reply that is not the JSON asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pydantic import SecretStr

from isthmus_agent_orchestrator.agents.providers import build_chat_model, build_generator
from isthmus_agent_orchestrator.agents.providers.llm_agents import (
    CONDENSE_SCHEMA,
    CRITIC_SCHEMA,
    LlmCondenser,
    LlmCritic,
    LlmPlanner,
    plan_schema,
)
from isthmus_agent_orchestrator.agents.providers.resilience import (
    FallbackChatModel,
    FallbackGenerator,
    ResilientChatModel,
    ResilientGenerator,
)
from isthmus_agent_orchestrator.agents.types import (
    ChatMessage,
    ChatReply,
    Critique,
    Draft,
    ToolSpec,
    Turn,
    Usage,
)
from isthmus_agent_orchestrator.settings import OrchestratorSettings
from isthmus_core.errors import Unavailable
from isthmus_core.ports.generator import AnswerSentence, Context


class Scripted:
    """A chat model replying with the scripted texts (or raising the scripted errors), recording calls."""

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[list[ChatMessage], Mapping[str, Any] | None]] = []

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def model(self) -> str:
        return "scripted-1"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        self.calls.append((list(messages), schema))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return ChatReply(reply, usage=Usage("scripted-1", 10, 5, True), provider="scripted")


class FixedPlanner:
    def __init__(self) -> None:
        self.calls = 0

    async def plan(self, question: str, *, max_sub_questions: int = 4) -> list[str]:
        self.calls += 1
        return ["heuristic: " + question]


class FixedCondenser:
    async def condense(self, history: Sequence[Turn], question: str) -> str:
        return "heuristic: " + question


class FixedCritic:
    async def critique(self, question: str, draft: Draft) -> Critique:
        return Critique(True, "heuristic")


QUESTION = "What is RAG? Also, how do refunds work?"


async def test_planner_uses_the_models_sub_questions_with_the_schema_and_reports_usage() -> None:
    model = Scripted('{"sub_questions": ["What is RAG?", "How do refunds work?", "What is RAG?"]}')
    seen: list[Usage] = []
    planner = LlmPlanner(model, FixedPlanner())
    subs = await planner.plan(QUESTION, max_sub_questions=3, usage_sink=seen.append)
    assert subs == ["What is RAG?", "How do refunds work?"]  # duplicates dropped
    messages, schema = model.calls[0]
    assert schema == plan_schema(3)
    assert QUESTION in messages[-1].content
    assert seen == [Usage("scripted-1", 10, 5, True)]


async def test_planner_caps_the_sub_questions_and_reads_json_wrapped_in_prose() -> None:
    model = Scripted('Sure! ```json\n{"sub_questions": ["a?", "b?", "c?"]}\n```')
    assert await LlmPlanner(model, FixedPlanner()).plan(QUESTION, max_sub_questions=2) == ["a?", "b?"]


@pytest.mark.parametrize(
    "reply",
    [
        "not json at all",
        '{"sub_questions": []}',
        '{"sub_questions": "What is RAG?"}',
        '{"steps": ["x"]}',
        '{"sub_questions": ["  "]}',
        Unavailable("scripted: down"),
        RuntimeError("a bug in a provider"),
    ],
)
async def test_planner_falls_back_on_bad_json_or_failure(reply: str | Exception) -> None:
    fallback = FixedPlanner()
    subs = await LlmPlanner(Scripted(reply), fallback).plan(QUESTION)
    assert subs == ["heuristic: " + QUESTION]
    assert fallback.calls == 1


async def test_condenser_rewrites_with_the_history_and_skips_the_model_without_one() -> None:
    model = Scripted('{"standalone": "How long do refunds take for Isthmus Pro?"}')
    condenser = LlmCondenser(model, FixedCondenser())
    assert await condenser.condense([], "And for Pro?") == "And for Pro?"
    assert model.calls == []
    history = [Turn("How long do refunds take?", "Five business days [1].")]
    assert await condenser.condense(history, "And for Pro?") == "How long do refunds take for Isthmus Pro?"
    messages, schema = model.calls[0]
    assert schema == CONDENSE_SCHEMA
    assert "User: How long do refunds take?" in messages[-1].content
    assert "Assistant: Five business days." in messages[-1].content  # citation markers removed
    assert "Follow-up: And for Pro?" in messages[-1].content


async def test_condenser_falls_back_on_bad_json() -> None:
    history = [Turn("How long do refunds take?", "Five days.")]
    condenser = LlmCondenser(Scripted('{"standalone": ""}'), FixedCondenser())
    assert await condenser.condense(history, "And for Pro?") == "heuristic: And for Pro?"


CONTEXTS = (
    Context("c1", "d1", "Refunds take five business days."),
    Context("c2", "d2", "Pro refunds are instant."),
)
DRAFT = Draft((AnswerSentence("Refunds take five days.", (CONTEXTS[0].cite(0, 10),)),), CONTEXTS)


async def test_critic_returns_the_models_critique_and_sees_numbered_sources() -> None:
    model = Scripted('{"grounded": false, "reason": "Pro is not covered", "retry_query": "Pro refund time"}')
    critique = await LlmCritic(model, FixedCritic()).critique("How fast are Pro refunds?", DRAFT)
    assert critique == Critique(False, "Pro is not covered", "Pro refund time")
    messages, schema = model.calls[0]
    assert schema == CRITIC_SCHEMA
    assert "[2] Pro refunds are instant." in messages[-1].content
    assert "Refunds take five days. [1]" in messages[-1].content


async def test_critic_drops_a_retry_query_when_grounded_and_falls_back_on_failure() -> None:
    model = Scripted('{"grounded": true, "reason": "ok", "retry_query": "x"}', '{"grounded": "maybe"}')
    critic = LlmCritic(model, FixedCritic())
    assert await critic.critique("q", DRAFT) == Critique(True, "ok", "")
    assert await critic.critique("q", DRAFT) == Critique(True, "heuristic")


# ---- factories


def settings(**kw: Any) -> OrchestratorSettings:
    base: dict[str, Any] = {
        "openai_model": "m",
        "anthropic_model": "claude-test",
        "anthropic_api_key": SecretStr("k"),
        "bedrock_model": "amazon.nova-lite-v1:0",
    }
    return OrchestratorSettings.model_validate(base | kw)


async def test_build_chat_model_none_single_and_fallback_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert build_chat_model(settings()) is None
    stops: list[Any] = []
    single = build_chat_model(settings(chat_provider="openai"), stops)
    assert isinstance(single, ResilientChatModel) and single.name == "openai"
    assert len(stops) == 1
    chain = build_chat_model(
        settings(chat_provider="anthropic", chat_fallback=["openai", "anthropic", "bedrock"])
    )
    assert isinstance(chain, FallbackChatModel)
    assert [m.name for m in chain.models] == ["anthropic", "openai", "bedrock"]
    for stop in stops:
        await stop()


async def test_build_generator_shares_the_circuit_of_the_chat_model() -> None:
    assert build_generator(settings()) is None
    policies: dict[str, Any] = {}
    stops: list[Any] = []
    chat = build_chat_model(settings(chat_provider="anthropic", generator="anthropic"), stops, policies)
    generator = build_generator(settings(chat_provider="anthropic", generator="anthropic"), stops, policies)
    assert isinstance(chat, ResilientChatModel) and isinstance(generator, ResilientGenerator)
    assert generator.name == "anthropic:claude-test"
    assert list(policies) == ["anthropic"]
    chain = build_generator(settings(generator="anthropic", chat_fallback=["openai"]), stops)
    assert isinstance(chain, FallbackGenerator)
    for stop in stops:
        await stop()
