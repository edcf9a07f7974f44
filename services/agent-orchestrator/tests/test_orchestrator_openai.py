from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx

from isthmus_agent_orchestrator.agents.types import Usage
from isthmus_agent_orchestrator.openai_compat import SYSTEM_PROMPT, OpenAICompatibleGenerator, parse_answer
from isthmus_agent_orchestrator.sentences import NO_ANSWER
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generator
from isthmus_core.testing.generator_conformance import CONTEXTS, GeneratorConformance

BASE = "http://llm.test/v1"
URL = f"{BASE}/chat/completions"
QUESTION = "When is the index rebuilt?"


def whole(c: Context) -> CitedSpan:
    return CitedSpan(c.chunk_id, c.document_id, c.start, c.start + len(c.text))


def completion(content: str, usage: dict[str, int] | None = None) -> httpx.Response:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage or {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
    }
    return httpx.Response(200, json=body)


def sse_chunks(content: str, size: int = 3) -> list[bytes]:
    """``content`` as an OpenAI event stream, a few characters per event (role first, [DONE] last)."""
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    events += [
        {"choices": [{"index": 0, "delta": {"content": content[i : i + size]}}]}
        for i in range(0, len(content), size)
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events]
    return [b": keep-alive\n\n", *lines, b"data: [DONE]\n\n"]


def sse_response(chunks: list[bytes], sent: list[int] | None = None) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            if sent is not None:
                sent.append(len(chunk))
            yield chunk

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


def echo_reply(payload: dict[str, object]) -> str:
    """A deterministic 'model': quotes every numbered source and cites it, before the full stop."""
    messages = payload["messages"]
    assert isinstance(messages, list)
    user = messages[-1]["content"]
    sources = re.findall(r"^\[(\d+)\] (.+?)\.?$", user, flags=re.MULTILINE)
    return " ".join(f"{text} [{n}]." for n, text in sources)


def echo_server(request: httpx.Request) -> httpx.Response:
    payload = json.loads(request.content)
    reply = echo_reply(payload)
    return sse_response(sse_chunks(reply)) if payload["stream"] else completion(reply)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def gen() -> AsyncIterator[OpenAICompatibleGenerator]:
    generator = OpenAICompatibleGenerator(BASE, "tiny-model", "sk-test", max_retries=2, backoff_s=0.0)
    yield generator
    await generator.aclose()


class TestOpenAICompatibleConformance(GeneratorConformance):
    @pytest.fixture
    async def generator(self, mock: respx.MockRouter) -> AsyncIterator[Generator]:
        mock.post(URL).mock(side_effect=echo_server)
        generator = OpenAICompatibleGenerator(BASE, "echo", backoff_s=0.0)
        yield generator
        await generator.aclose()


class TestOpenAICompatibleWholeAnswersConformance(GeneratorConformance):
    """``stream=False``: answers asked for whole, yielded sentence by sentence — the same contract."""

    @pytest.fixture
    async def generator(self, mock: respx.MockRouter) -> AsyncIterator[Generator]:
        mock.post(URL).mock(side_effect=echo_server)
        generator = OpenAICompatibleGenerator(BASE, "echo", backoff_s=0.0, stream=False)
        yield generator
        await generator.aclose()


async def test_without_streaming_the_servers_usage_is_reported(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(side_effect=echo_server)
    generator = OpenAICompatibleGenerator(BASE, "echo", backoff_s=0.0, stream=False)
    usages: list[Usage] = []
    try:
        ctx = [Context("c1", "d1", "The index is rebuilt nightly.")]
        sentences = [s async for s in generator.stream(QUESTION, ctx, usage_sink=usages.append)]
    finally:
        await generator.aclose()
    assert json.loads(route.calls.last.request.content)["stream"] is False
    assert [s.text for s in sentences] == ["The index is rebuilt nightly."]
    assert [(u.prompt_tokens, u.completion_tokens, u.reported) for u in usages] == [(50, 12, True)]


# ---- request shape


async def test_request_carries_model_messages_settings_and_auth(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=completion("Nightly [1]."))
    generator = OpenAICompatibleGenerator(BASE + "/", "tiny-model", "sk-test", temperature=0.3, max_tokens=77)
    await generator.generate(QUESTION, CONTEXTS)
    await generator.aclose()
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "tiny-model"
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 77
    assert body["stream"] is False
    system, user = body["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert "[n]" in system["content"] or "square brackets" in system["content"]
    assert user["role"] == "user"
    assert f"[1] {CONTEXTS[0].text}" in user["content"]
    assert f"[2] {CONTEXTS[1].text}" in user["content"]
    assert user["content"].index("[1]") < user["content"].index("[2]") < user["content"].index(QUESTION)


async def test_no_api_key_sends_no_authorization_header(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=completion("Nightly [1]."))
    generator = OpenAICompatibleGenerator(BASE, "tiny-model")
    await generator.generate(QUESTION, CONTEXTS)
    await generator.aclose()
    assert "authorization" not in route.calls.last.request.headers


async def test_name_names_the_model() -> None:
    generator = OpenAICompatibleGenerator(BASE, "llama-3-8b")
    assert generator.name == "openai-compatible:llama-3-8b"
    await generator.aclose()


# ---- reply parsing


async def test_markers_become_whole_context_citations(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    reply = (
        "The index is rebuilt nightly at 02:00 UTC [1]. Refunds take five business days [2][1]. "
        "Embeddings live in a vector index [1, 2]. A claim citing nothing. A bad reference [7]."
    )
    mock.post(URL).mock(return_value=completion(reply, {"prompt_tokens": 90, "completion_tokens": 31}))
    generation = await gen.generate(QUESTION, CONTEXTS)
    a, b = CONTEXTS
    assert generation.sentences == (
        AnswerSentence("The index is rebuilt nightly at 02:00 UTC.", (whole(a),)),
        AnswerSentence("Refunds take five business days.", (whole(b), whole(a))),
        AnswerSentence("Embeddings live in a vector index.", (whole(a), whole(b))),
        AnswerSentence("A claim citing nothing."),
        AnswerSentence("A bad reference."),
    )
    assert generation.generator == "openai-compatible:tiny-model"
    assert not generation.abstained
    assert generation.usage == {"prompt_tokens": 90, "completion_tokens": 31}
    assert whole(a).start == 120 and whole(a).end == 120 + len(a.text)


def test_markers_after_the_full_stop_belong_to_the_sentence_before() -> None:
    reply = "The index is rebuilt nightly. [1] Refunds take five days. [2]\n[1]"
    sentences = parse_answer(reply, CONTEXTS)
    assert sentences == [
        AnswerSentence("The index is rebuilt nightly.", (whole(CONTEXTS[0]),)),
        AnswerSentence("Refunds take five days.", (whole(CONTEXTS[1]), whole(CONTEXTS[0]))),
    ]


def test_marker_opening_the_reply_stays_with_the_first_sentence() -> None:
    assert parse_answer("[2] Refunds take five days.", CONTEXTS) == [
        AnswerSentence("Refunds take five days.", (whole(CONTEXTS[1]),))
    ]


async def test_no_answer_reply_is_an_abstention(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    mock.post(URL).mock(return_value=completion("I could not find an answer in the indexed documents [1]"))
    generation = await gen.generate(QUESTION, CONTEXTS)
    assert generation.abstained
    assert generation.sentences == (AnswerSentence(NO_ANSWER),)


async def test_empty_reply_is_an_abstention(mock: respx.MockRouter, gen: OpenAICompatibleGenerator) -> None:
    mock.post(URL).mock(return_value=completion(""))
    generation = await gen.generate(QUESTION, CONTEXTS)
    assert generation.abstained
    assert all(not s.citations for s in generation.sentences)


async def test_no_contexts_abstains_without_calling_the_model(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    route = mock.post(URL).mock(return_value=completion("Something [1]."))
    generation = await gen.generate(QUESTION, [])
    streamed = [s async for s in gen.stream(QUESTION, [])]
    assert generation.abstained
    assert streamed == [AnswerSentence(NO_ANSWER)]
    assert route.call_count == 0


async def test_reply_that_is_not_a_completion_is_a_failed_precondition(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    mock.post(URL).mock(return_value=httpx.Response(200, json={"result": "hello"}))
    with pytest.raises(FailedPrecondition, match=r"choices\[0\]\.message\.content"):
        await gen.generate(QUESTION, CONTEXTS)


# ---- retries and errors


async def test_503_is_retried_then_succeeds(mock: respx.MockRouter, gen: OpenAICompatibleGenerator) -> None:
    route = mock.post(URL).mock(
        side_effect=[
            httpx.Response(503, json={"error": {"message": "loading model"}}),
            httpx.Response(502, text="bad gateway"),
            completion("Nightly [1]."),
        ]
    )
    generation = await gen.generate(QUESTION, CONTEXTS)
    assert route.call_count == 3
    assert generation.sentences == (AnswerSentence("Nightly.", (whole(CONTEXTS[0]),)),)


async def test_small_retry_after_is_honoured_instead_of_the_backoff(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}, json={}), completion("Nightly [1].")]
    )
    # a 60 s backoff would time the test out: only the server's Retry-After of 0 s lets it finish at once
    generator = OpenAICompatibleGenerator(BASE, "m", backoff_s=60.0, max_backoff_s=60.0)
    started = time.monotonic()
    generation = await generator.generate(QUESTION, CONTEXTS)
    await generator.aclose()
    assert time.monotonic() - started < 5.0
    assert route.call_count == 2
    assert generation.sentences[0].text == "Nightly."


async def test_large_retry_after_falls_back_to_the_backoff(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3600"}, json={}),
            completion("Nightly [1]."),
        ]
    )
    generator = OpenAICompatibleGenerator(BASE, "m", backoff_s=0.0, max_retry_after_s=10.0)
    started = time.monotonic()
    await generator.generate(QUESTION, CONTEXTS)
    await generator.aclose()
    assert time.monotonic() - started < 5.0
    assert route.call_count == 2


async def test_400_is_invalid_argument_with_the_servers_message(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    message = "This model's maximum context length is 2048 tokens."
    route = mock.post(URL).mock(
        return_value=httpx.Response(
            400, json={"error": {"message": message, "type": "invalid_request_error"}}
        )
    )
    with pytest.raises(InvalidArgument, match=re.escape(message)) as info:
        await gen.generate(QUESTION, CONTEXTS)
    assert "HTTP 400" in str(info.value)
    assert route.call_count == 1  # permanent: never retried


@pytest.mark.parametrize(("status", "hint"), [(401, "API key"), (403, "API key"), (404, "model name")])
async def test_auth_and_not_found_are_failed_preconditions(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator, status: int, hint: str
) -> None:
    route = mock.post(URL).mock(return_value=httpx.Response(status, json={"detail": "nope"}))
    with pytest.raises(FailedPrecondition, match=hint) as info:
        await gen.generate(QUESTION, CONTEXTS)
    assert "nope" in str(info.value)
    assert route.call_count == 1


async def test_timeouts_exhaust_the_retries_into_unavailable(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    route = mock.post(URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(Unavailable, match="ReadTimeout") as info:
        await gen.generate(QUESTION, CONTEXTS)
    assert route.call_count == 3  # max_retries=2: one try and two retries
    assert "3 attempt" in str(info.value)


async def test_connect_errors_exhaust_the_retries_into_unavailable(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    generator = OpenAICompatibleGenerator(BASE, "m", max_retries=0)
    with pytest.raises(Unavailable, match="connection refused"):
        await generator.generate(QUESTION, CONTEXTS)
    await generator.aclose()
    assert route.call_count == 1


async def test_persistent_500_reports_the_last_server_message(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    mock.post(URL).mock(return_value=httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(Unavailable, match="HTTP 500: CUDA out of memory"):
        await gen.generate(QUESTION, CONTEXTS)


# ---- streaming


async def test_stream_yields_sentences_in_order_as_they_complete(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    reply = (
        "The index is rebuilt nightly [1]. Refunds take five business days. [2] "
        "Both facts are documented [1][2]."
    )
    chunks = sse_chunks(reply, size=4)
    sent: list[int] = []
    route = mock.post(URL).mock(side_effect=lambda request: sse_response(chunks, sent))
    received: list[tuple[AnswerSentence, int]] = []
    async for sentence in gen.stream(QUESTION, CONTEXTS):
        received.append((sentence, len(sent)))
    a, b = CONTEXTS
    assert [s for s, _ in received] == [
        AnswerSentence("The index is rebuilt nightly.", (whole(a),)),
        AnswerSentence("Refunds take five business days.", (whole(b),)),
        AnswerSentence("Both facts are documented.", (whole(a), whole(b))),
    ]
    # the first sentence arrived while the server was still sending
    assert received[0][1] < len(chunks)
    body = json.loads(route.calls.last.request.content)
    assert body["stream"] is True


async def test_stream_and_generate_agree(mock: respx.MockRouter, gen: OpenAICompatibleGenerator) -> None:
    reply = "Dr. Smith rebuilt the index at 2.30 a.m. on Monday [1]. Refunds take 5.5 days [2]. Done."
    mock.post(URL).mock(
        side_effect=lambda request: (
            sse_response(sse_chunks(reply, size=2))
            if json.loads(request.content)["stream"]
            else completion(reply)
        )
    )
    streamed = [s async for s in gen.stream(QUESTION, CONTEXTS)]
    generated = await gen.generate(QUESTION, CONTEXTS)
    assert tuple(streamed) == generated.sentences
    assert len(streamed) == 3


async def test_stream_retries_opening_then_streams(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    route = mock.post(URL).mock(
        side_effect=[httpx.Response(503, text="warming up"), sse_response(sse_chunks("Nightly [1]."))]
    )
    streamed = [s async for s in gen.stream(QUESTION, CONTEXTS)]
    assert route.call_count == 2
    assert streamed == [AnswerSentence("Nightly.", (whole(CONTEXTS[0]),))]


async def test_stream_400_is_invalid_argument(mock: respx.MockRouter, gen: OpenAICompatibleGenerator) -> None:
    mock.post(URL).mock(return_value=httpx.Response(400, json={"error": {"message": "stream not supported"}}))
    with pytest.raises(InvalidArgument, match="stream not supported"):
        _ = [s async for s in gen.stream(QUESTION, CONTEXTS)]


async def test_error_event_mid_stream_is_unavailable(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    chunks = [*sse_chunks("Nightly [1]. More")[:-1], b'data: {"error": {"message": "worker crashed"}}\n\n']
    mock.post(URL).mock(return_value=sse_response(chunks))
    with pytest.raises(Unavailable, match="worker crashed"):
        _ = [s async for s in gen.stream(QUESTION, CONTEXTS)]


async def test_stream_of_no_answer_yields_one_uncited_sentence(
    mock: respx.MockRouter, gen: OpenAICompatibleGenerator
) -> None:
    mock.post(URL).mock(return_value=sse_response(sse_chunks(NO_ANSWER)))
    assert [s async for s in gen.stream(QUESTION, CONTEXTS)] == [AnswerSentence(NO_ANSWER)]


# ---- lifecycle and settings


async def test_aclose_closes_only_a_client_it_created() -> None:
    own = OpenAICompatibleGenerator(BASE, "m")
    await own.aclose()
    assert own._client.is_closed
    shared = httpx.AsyncClient()
    borrowed = OpenAICompatibleGenerator(BASE, "m", client=shared)
    await borrowed.aclose()
    assert not shared.is_closed
    await shared.aclose()


async def test_injected_client_is_used(mock: respx.MockRouter) -> None:
    route = mock.post(URL).mock(return_value=completion("Nightly [1]."))
    async with httpx.AsyncClient(headers={"x-tenant": "acme"}) as client:
        generator = OpenAICompatibleGenerator(BASE, "m", client=client)
        await generator.generate(QUESTION, CONTEXTS)
    assert route.calls.last.request.headers["x-tenant"] == "acme"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "llm.test/v1"}, "base_url"),
        ({"base_url": "ftp://llm.test/v1"}, "base_url"),
        ({"model": " "}, "model"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3.0}, "temperature"),
    ],
)
def test_bad_settings_are_configuration_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"base_url": BASE, "model": "m", **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        OpenAICompatibleGenerator(**args)  # type: ignore[arg-type]
