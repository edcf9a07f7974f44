"""Bedrock Converse contract: recorded exchanges (tests/recordings/bedrock_*.json, written from the API
reference) replayed by a local HTTP server the real boto3 client talks to (``endpoint_url``), signed with
credentials from the standard chain (the environment); the request we send must be the recording's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from isthmus_agent_orchestrator.agents.providers.bedrock import BedrockChatModel, BedrockGenerator
from isthmus_agent_orchestrator.agents.providers.resilience import Resilience, ResilientChatModel
from isthmus_agent_orchestrator.agents.types import ChatMessage, ToolCall, ToolSpec, Usage
from isthmus_core.errors import FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.testing.generator_conformance import CONTEXTS, QUESTION

RECORDINGS = Path(__file__).parent / "recordings"
MODEL = "amazon.nova-lite-v1:0"


class Replayer:
    """A local Bedrock endpoint answering with one recording (or a canned error) and keeping what it got."""

    def __init__(self) -> None:
        self.recording: dict[str, Any] = {}
        self.received: list[tuple[str, dict[str, str], Any]] = []
        replayer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                replayer.received.append((self.path, dict(self.headers.items()), json.loads(body or b"{}")))
                response = replayer.recording["response"]
                payload = json.dumps(response["body"]).encode()
                self.send_response(response["status"])
                for name, value in response["headers"].items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def play(self, name: str) -> dict[str, Any]:
        self.recording = dict(json.loads((RECORDINGS / name).read_text()))
        return self.recording

    def check_request(self, index: int = -1) -> None:
        path, headers, body = self.received[index]
        expected = self.recording["request"]
        assert path == expected["path"]
        assert body == expected["body"], "the request differs from the recording"
        # SigV4 with the key of the standard credential chain (here: the environment)
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTKEY/")
        assert "/us-east-1/bedrock/aws4_request" in headers["Authorization"]


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Replayer]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    replayer = Replayer()
    thread = threading.Thread(target=replayer.server.serve_forever, daemon=True)
    thread.start()
    yield replayer
    replayer.server.shutdown()
    replayer.server.server_close()
    thread.join()


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


def chat(endpoint: Replayer) -> BedrockChatModel:
    return BedrockChatModel(MODEL, region="us-east-1", endpoint_url=endpoint.url, timeout_s=10.0)


async def test_tool_use_round_trip_matches_the_recording(endpoint: Replayer) -> None:
    endpoint.play("bedrock_tool_use.json")
    messages = [
        ChatMessage("system", "You are a research agent."),
        ChatMessage("user", "When is the index rebuilt?"),
        ChatMessage(
            "assistant",
            "Let me search.",
            tool_calls=(ToolCall("tooluse_A", "search", {"query": "index rebuild"}),),
        ),
        ChatMessage("tool", "[1] The index is rebuilt nightly.", tool_call_id="tooluse_A"),
    ]
    reply = await chat(endpoint).complete(messages, tools=[SEARCH], max_tokens=256)
    endpoint.check_request()
    assert reply.text == "I will narrow the search."
    assert reply.tool_calls == (ToolCall("tooluse_B", "search", {"query": "nightly index rebuild time"}),)
    assert reply.usage == Usage(MODEL, 402, 41, True)
    assert reply.provider == "bedrock"


async def test_structured_output_sends_output_config_and_returns_the_json(endpoint: Replayer) -> None:
    rec = endpoint.play("bedrock_structured.json")
    schema = json.loads(
        rec["request"]["body"]["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
    )
    reply = await chat(endpoint).complete(
        [
            ChatMessage("system", "Split the question into sub-questions."),
            ChatMessage("user", "What is RAG? Also, how do refunds work?"),
        ],
        schema=schema,
        max_tokens=128,
    )
    endpoint.check_request()
    assert json.loads(reply.text) == {"sub_questions": ["What is RAG?", "How do refunds work?"]}
    assert reply.usage == Usage(MODEL, 58, 17, True)


async def test_throttling_is_unavailable_and_retried_once_per_attempt(endpoint: Replayer) -> None:
    rec = endpoint.play("bedrock_throttled.json")
    schema = json.loads(
        rec["request"]["body"]["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"]
    )
    messages = [
        ChatMessage("system", "Split the question into sub-questions."),
        ChatMessage("user", "What is RAG? Also, how do refunds work?"),
    ]
    inner = chat(endpoint)
    with pytest.raises(Unavailable, match=r"bedrock: ThrottlingException \(HTTP 429\): Too many requests"):
        await inner.complete(messages, schema=schema, max_tokens=128)
    assert len(endpoint.received) == 1  # botocore's own retries are off
    endpoint.check_request()
    model = ResilientChatModel(inner, Resilience("bedrock", max_retries=1, backoff_s=0.0))
    with pytest.raises(Unavailable, match=r"bedrock: unavailable after 2 attempt\(s\)"):
        await model.complete(messages, schema=schema, max_tokens=128)
    assert len(endpoint.received) == 3


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "ValidationException", InvalidArgument),
        (403, "AccessDeniedException", FailedPrecondition),
        (404, "ResourceNotFoundException", FailedPrecondition),
        (503, "ServiceUnavailableException", Unavailable),
    ],
)
async def test_errors_are_translated(
    endpoint: Replayer, status: int, code: str, error: type[Exception]
) -> None:
    endpoint.recording = {
        "response": {
            "status": status,
            "headers": {"content-type": "application/json", "x-amzn-ErrorType": code},
            "body": {"message": "nope"},
        }
    }
    with pytest.raises(error, match=rf"bedrock: {code} \(HTTP {status}\): nope"):
        await chat(endpoint).complete([ChatMessage("user", "hi")])


async def test_missing_credentials_are_a_failed_precondition(
    endpoint: Replayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(FailedPrecondition, match=r"bedrock: .*credential"):
        await chat(endpoint).complete([ChatMessage("user", "hi")])
    assert endpoint.received == []


def whole(c: Context) -> CitedSpan:
    return c.cite(c.start, c.start + len(c.text))


EXPECTED = [
    AnswerSentence("The index is rebuilt every night at 02:00 UTC.", (whole(CONTEXTS[0]),)),
    AnswerSentence("Refunds are unrelated.", (whole(CONTEXTS[1]),)),
]


async def test_generator_generate_and_stream_cite_and_report_usage(endpoint: Replayer) -> None:
    endpoint.play("bedrock_generate.json")
    generator = BedrockGenerator(MODEL, endpoint_url=endpoint.url, timeout_s=10.0)
    seen: list[Usage] = []
    generation = await generator.generate(QUESTION, CONTEXTS, usage_sink=seen.append)
    endpoint.check_request()
    assert list(generation.sentences) == EXPECTED
    assert generation.generator == f"bedrock:{MODEL}"
    assert generation.usage == {"prompt_tokens": 190, "completion_tokens": 26}
    streamed = [s async for s in generator.stream(QUESTION, CONTEXTS, usage_sink=seen.append)]
    endpoint.check_request()
    assert streamed == EXPECTED
    assert seen == [Usage(MODEL, 190, 26, True)] * 2
