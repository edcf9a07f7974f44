"""OpenAI-compatible chat model contract (recorded exchanges in tests/recordings/openai_*.json replayed
through ``httpx.MockTransport``; the request we send must be the recording's), and the usage the
OpenAI-compatible generator reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from isthmus_agent_orchestrator.agents.providers.openai_chat import OpenAIChatModel
from isthmus_agent_orchestrator.agents.types import ChatMessage, ToolCall, ToolSpec, Usage
from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator
from isthmus_core.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.testing.generator_conformance import CONTEXTS, QUESTION

RECORDINGS = Path(__file__).parent / "recordings"
BASE = "http://llm.test/v1"


class Replay:
    """Answers with the recordings in order, checking each request is the recorded one."""

    def __init__(self, *names: str) -> None:
        self.recordings = [json.loads((RECORDINGS / n).read_text()) for n in names]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        rec = self.recordings[len(self.requests)]
        self.requests.append(request)
        assert request.method == rec["request"]["method"]
        assert request.url.path == rec["request"]["path"]
        assert json.loads(request.content) == rec["request"]["body"], "the request differs from the recording"
        return httpx.Response(rec["response"]["status"], json=rec["response"]["body"])

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


SEARCH = ToolSpec(
    "search",
    "Search the documents",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)
PLAN_MESSAGES = [
    ChatMessage("system", "Split the question into sub-questions."),
    ChatMessage("user", "What is RAG? Also, how do refunds work?"),
]


async def test_tool_calls_round_trip_matches_the_recording() -> None:
    replay = Replay("openai_tool_calls.json")
    model = OpenAIChatModel(BASE, "smol", tool_choice="required", client=replay.client())
    messages = [
        ChatMessage("system", "You are a research agent."),
        ChatMessage("user", "When is the index rebuilt?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_A", "search", {"query": "index rebuild"}),)),
        ChatMessage("tool", "[1] The index is rebuilt nightly.", tool_call_id="call_A"),
    ]
    reply = await model.complete(messages, tools=[SEARCH], max_tokens=64)
    assert reply.text == ""
    assert reply.tool_calls == (
        ToolCall(
            "call__0_search_cmpl-896b2834-4094-4ae5-b900-c5743799bc26",
            "search",
            {"query": "Find refunds policy, please."},
        ),
    )
    assert reply.usage == Usage("smol", 34, 13, True)
    assert reply.provider == "openai"


async def test_json_schema_refused_by_the_server_is_asked_again_as_json_object_and_remembered() -> None:
    rec = json.loads((RECORDINGS / "openai_json_object.json").read_text())
    schema = rec["request"]["body"]["response_format"]["schema"]
    replay = Replay("openai_json_schema_rejected.json", "openai_json_object.json", "openai_json_object.json")
    model = OpenAIChatModel(BASE, "smol", client=replay.client())
    reply = await model.complete(PLAN_MESSAGES, schema=schema, max_tokens=80)
    assert json.loads(reply.text) == {"sub_questions": ["RAG", "How does refunds work?"]}
    assert reply.usage == Usage("smol", 39, 20, True)
    await model.complete(PLAN_MESSAGES, schema=schema, max_tokens=80)  # straight to json_object
    assert len(replay.requests) == 3


async def test_json_schema_mode_does_not_switch_spelling() -> None:
    rec = json.loads((RECORDINGS / "openai_json_object.json").read_text())
    schema = rec["request"]["body"]["response_format"]["schema"]
    replay = Replay("openai_json_schema_rejected.json")
    model = OpenAIChatModel(BASE, "smol", structured="json_schema", client=replay.client())
    with pytest.raises(Unavailable, match=r"(?s)openai: .*HTTP 500.*json_object"):
        await model.complete(PLAN_MESSAGES, schema=schema, max_tokens=80)
    assert len(replay.requests) == 1


@pytest.mark.parametrize(
    ("response", "error", "match"),
    [
        (httpx.Response(400, json={"error": {"message": "too long"}}), InvalidArgument, "openai: .*too long"),
        (
            httpx.Response(401, json={"error": {"message": "bad key"}}),
            FailedPrecondition,
            "openai: .*API key",
        ),
        (httpx.Response(503, text="loading"), Unavailable, "openai: .*HTTP 503: loading"),
        (
            httpx.Response(200, json={"nope": 1}),
            FailedPrecondition,
            "openai .*did not return a chat completion",
        ),
    ],
)
async def test_errors_are_translated_and_name_the_provider(
    response: httpx.Response, error: type[Exception], match: str
) -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: response))
    with pytest.raises(error, match=match):
        await OpenAIChatModel(BASE, "m", client=client).complete([ChatMessage("user", "hi")])


async def test_transport_errors_are_unavailable_or_deadline_exceeded() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    slow = OpenAIChatModel(BASE, "m", client=httpx.AsyncClient(transport=httpx.MockTransport(timeout)))
    with pytest.raises(DeadlineExceeded, match="openai: no answer"):
        await slow.complete([ChatMessage("user", "hi")])
    down = OpenAIChatModel(BASE, "m", client=httpx.AsyncClient(transport=httpx.MockTransport(refused)))
    with pytest.raises(Unavailable, match=r"openai: .*ConnectError"):
        await down.complete([ChatMessage("user", "hi")])


async def test_missing_usage_is_estimated_and_not_reported() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "abcdefgh"}}]}
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)))
    reply = await OpenAIChatModel(BASE, "m", client=client).complete([ChatMessage("user", "12345678")])
    assert reply.usage == Usage("m", 2, 2, False)


# ---- the generator's usage


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


SSE = {"content-type": "text/event-stream"}


def mock(server: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(server))


CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant"}}]},
    {"choices": [{"index": 0, "delta": {"content": "The index is rebuilt "}}]},
    {"choices": [{"index": 0, "delta": {"content": "nightly [1]."}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]


async def test_generator_stream_asks_for_and_reports_the_servers_usage() -> None:
    # OpenAI's include_usage: a last chunk with no choices and the usage
    bodies: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        usage = {"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 9, "total_tokens": 89}}
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse([*CHUNKS, usage])
        )

    generator = OpenAICompatibleGenerator(
        BASE, "m", client=httpx.AsyncClient(transport=httpx.MockTransport(server))
    )
    seen: list[Usage] = []
    streamed = [s.text async for s in generator.stream(QUESTION, CONTEXTS, usage_sink=seen.append)]
    assert streamed == ["The index is rebuilt nightly."]
    assert bodies[0]["stream_options"] == {"include_usage": True}
    assert seen == [Usage("m", 80, 9, True)]


async def test_generator_stream_without_server_usage_reports_an_estimate() -> None:
    # llama-cpp-python 0.3.36 sends no usage chunk even when asked
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(CHUNKS))

    generator = OpenAICompatibleGenerator(
        BASE, "m", client=httpx.AsyncClient(transport=httpx.MockTransport(server))
    )
    seen: list[Usage] = []
    _ = [s async for s in generator.stream(QUESTION, CONTEXTS, usage_sink=seen.append)]
    assert len(seen) == 1
    assert not seen[0].reported
    assert seen[0].prompt_tokens > 0
    assert seen[0].completion_tokens == len("The index is rebuilt nightly [1].") // 4 + 1


async def test_generator_generate_reports_the_servers_usage() -> None:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Nightly [1]."}}],
        "usage": {"prompt_tokens": 70, "completion_tokens": 4},
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)))
    seen: list[Usage] = []
    generation = await OpenAICompatibleGenerator(BASE, "m", client=client).generate(
        QUESTION, CONTEXTS, usage_sink=seen.append
    )
    assert generation.usage == {"prompt_tokens": 70, "completion_tokens": 4}
    assert seen == [Usage("m", 70, 4, True)]


RAW_ARGUMENTS = '{ "query": "refunds}\n\nThe answer" }'


async def test_tool_arguments_with_raw_control_characters_still_parse() -> None:
    # SmolLM2 under llama.cpp's grammar wrote a raw newline inside the query string (seen for real)
    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {
                                "name": "search",
                                "arguments": '{ "query": "refunds}\n\nThe answer" }',
                            },
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5},
    }
    reply = await OpenAIChatModel(
        BASE, "m", client=mock(lambda request: httpx.Response(200, json=body))
    ).complete([ChatMessage("user", "hi")], tools=[SEARCH])
    assert reply.tool_calls == (ToolCall("c1", "search", {"query": "refunds}\n\nThe answer"}),)
