"""Anthropic Messages API contract: recorded exchanges (tests/recordings/anthropic_*.json, written from the
API reference) replayed through ``httpx2.MockTransport`` under the official SDK; the request we send must be
the recording's request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from isthmus_agent_orchestrator.agents.providers.anthropic import AnthropicChatModel, AnthropicGenerator
from isthmus_agent_orchestrator.agents.providers.resilience import Resilience, ResilientChatModel
from isthmus_agent_orchestrator.agents.types import ChatMessage, ToolCall, ToolSpec, Usage
from isthmus_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.testing.generator_conformance import CONTEXTS, QUESTION

RECORDINGS = Path(__file__).parent / "recordings"
BASE = "https://anthropic.test"


def recording(name: str) -> dict[str, Any]:
    return dict(json.loads((RECORDINGS / name).read_text()))


class Replay:
    """Answers every request with the recording's response, after checking it is the recorded request."""

    def __init__(self, rec: dict[str, Any], times: int = 1) -> None:
        self.rec = rec
        self.requests: list[httpx2.Request] = []
        self.times = times

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        expected = self.rec["request"]
        assert request.method == expected["method"]
        assert request.url.path == expected["path"]
        assert request.headers["anthropic-version"]  # the SDK pins the API version it speaks
        # the key: x-api-key (the documented header) or a bearer (how this SDK version sends it)
        key = request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
        assert "sk-ant-test" in key
        for header, value in expected["headers"].items():
            assert request.headers[header] == value, header
        assert json.loads(request.content) == expected["body"], "the request differs from the recording"
        response = self.rec["response"]
        if "events" in response:
            sse = "".join(
                f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n" for e in response["events"]
            )
            return httpx2.Response(response["status"], headers=response["headers"], content=sse.encode())
        return httpx2.Response(response["status"], headers=response["headers"], json=response["body"])


def client(replay: Replay) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(replay))


SEARCH = ToolSpec(
    "search",
    "Search the tenant's documents",
    {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
        "additionalProperties": False,
    },
)


async def test_tool_use_round_trip_matches_the_recording() -> None:
    replay = Replay(recording("anthropic_tool_use.json"))
    model = AnthropicChatModel("claude-test", "sk-ant-test", base_url=BASE, http_client=client(replay))
    messages = [
        ChatMessage("system", "You are a research agent."),
        ChatMessage("user", "When is the index rebuilt?"),
        ChatMessage(
            "assistant",
            "Let me search.",
            tool_calls=(ToolCall("toolu_01A", "search", {"query": "index rebuild"}),),
        ),
        ChatMessage("tool", "[1] The index is rebuilt nightly.", tool_call_id="toolu_01A"),
    ]
    reply = await model.complete(messages, tools=[SEARCH], max_tokens=256)
    assert len(replay.requests) == 1
    assert reply.text == "I will narrow the search."
    assert reply.tool_calls == (ToolCall("toolu_01B", "search", {"query": "nightly index rebuild time"}),)
    assert reply.usage == Usage("claude-test", 412, 57, True)
    assert reply.provider == "anthropic"


async def test_structured_output_uses_output_config_and_returns_the_json_text() -> None:
    rec = recording("anthropic_structured.json")
    schema = rec["request"]["body"]["output_config"]["format"]["schema"]
    model = AnthropicChatModel("claude-test", "sk-ant-test", base_url=BASE, http_client=client(Replay(rec)))
    reply = await model.complete(
        [
            ChatMessage("system", "Split the question into sub-questions."),
            ChatMessage("user", "What is RAG? Also, how do refunds work?"),
        ],
        schema=schema,
        max_tokens=128,
    )
    assert json.loads(reply.text) == {"sub_questions": ["What is RAG?", "How do refunds work?"]}
    assert reply.usage == Usage("claude-test", 61, 19, True)


async def test_overloaded_is_unavailable_and_retried_by_the_resilience_policy() -> None:
    rec = recording("anthropic_overloaded.json")
    replay = Replay(rec)
    schema = rec["request"]["body"]["output_config"]["format"]["schema"]
    inner = AnthropicChatModel("claude-test", "sk-ant-test", base_url=BASE, http_client=client(replay))
    messages = [
        ChatMessage("system", "Split the question into sub-questions."),
        ChatMessage("user", "What is RAG? Also, how do refunds work?"),
    ]
    with pytest.raises(Unavailable, match="anthropic: HTTP 529: Overloaded"):
        await inner.complete(messages, schema=schema, max_tokens=128)
    assert len(replay.requests) == 1  # the SDK's own retries are off
    model = ResilientChatModel(inner, Resilience("anthropic", max_retries=2, backoff_s=0.0))
    with pytest.raises(
        Unavailable, match=r"anthropic: unavailable after 3 attempt\(s\); last error: HTTP 529"
    ):
        await model.complete(messages, schema=schema, max_tokens=128)
    assert len(replay.requests) == 4


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, InvalidArgument), (401, FailedPrecondition), (404, FailedPrecondition), (500, Unavailable)],
)
async def test_status_errors_are_translated(status: int, error: type[Exception]) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json={"type": "error", "error": {"type": "x", "message": "nope"}})

    model = AnthropicChatModel(
        "claude-test",
        "k",
        base_url=BASE,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    with pytest.raises(error, match=r"anthropic: .*nope"):
        await model.complete([ChatMessage("user", "hi")])


def whole(c: Context) -> CitedSpan:
    return c.cite(c.start, c.start + len(c.text))


async def test_generator_generate_cites_and_reports_usage() -> None:
    replay = Replay(recording("anthropic_generate.json"))
    generator = AnthropicGenerator("claude-test", "sk-ant-test", base_url=BASE, http_client=client(replay))
    seen: list[Usage] = []
    generation = await generator.generate(QUESTION, CONTEXTS, usage_sink=seen.append)
    assert generation.sentences == (
        AnswerSentence("The index is rebuilt every night at 02:00 UTC.", (whole(CONTEXTS[0]),)),
        AnswerSentence("Refunds are unrelated.", (whole(CONTEXTS[1]),)),
    )
    assert generation.generator == "anthropic:claude-test"
    assert generation.usage == {"prompt_tokens": 188, "completion_tokens": 24}
    assert seen == [Usage("claude-test", 188, 24, True)]


async def test_generator_stream_yields_cited_sentences_and_reports_usage() -> None:
    replay = Replay(recording("anthropic_stream.json"))
    generator = AnthropicGenerator("claude-test", "sk-ant-test", base_url=BASE, http_client=client(replay))
    seen: list[Usage] = []
    streamed = [s async for s in generator.stream(QUESTION, CONTEXTS, usage_sink=seen.append)]
    assert streamed == [
        AnswerSentence("The index is rebuilt every night at 02:00 UTC.", (whole(CONTEXTS[0]),)),
        AnswerSentence("Refunds are unrelated.", (whole(CONTEXTS[1]),)),
    ]
    assert seen == [Usage("claude-test", 188, 24, True)]


async def test_generator_without_contexts_abstains_without_a_call() -> None:
    replay = Replay(recording("anthropic_generate.json"))
    generator = AnthropicGenerator("claude-test", "sk-ant-test", base_url=BASE, http_client=client(replay))
    assert (await generator.generate(QUESTION, [])).abstained
    assert replay.requests == []
