"""The LLM judge (an OpenAI-compatible chat API): against a real llama.cpp server running SmolLM2-135M
(transport and reading: a model that small judges poorly, so every result must be a valid verdict or a
JudgeFailed with its code, not a good verdict), and its HTTP failures mapped to the failure codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest
import respx

from isthmus_core.clients.judge import GrpcJudge
from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.judge import MAX_JUDGE_TEXT_CHARS, Entailment, JudgeFailed
from isthmus_core.testing.infra import free_port_run
from isthmus_core.testing.judge_conformance import (
    CONTRADICTED,
    ENTAILED,
    OFF_TOPIC,
    PREMISE,
    QUERY,
    RELEVANT,
    TENANT,
    UNRELATED,
    JudgeOutageConformance,
    assert_probabilities,
)
from isthmus_core.testing.llama_server import LlamaServer, llama_server
from isthmus_evaluation.judges import build_judge, close_judge
from isthmus_evaluation.judges.llm import LlmJudge
from isthmus_evaluation.settings import EvaluationSettings

BASE = "http://judge.test/v1"
URL = BASE + "/chat/completions"
#: what a judge may fail with on a real server
CODES = {"timeout", "unavailable", "invalid", "unparseable", "too_long", "error"}


def _completion(content: str) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def judge() -> AsyncIterator[LlmJudge]:
    j = LlmJudge(BASE, "tiny", timeout_s=30.0, max_retries=2, backoff_s=0.0)
    yield j
    await j.aclose()


# ------------------------------------------------------------------------------- HTTP, recorded answers


async def test_one_question_per_item_in_order_low_temperature_few_tokens(
    mock: respx.MockRouter, judge: LlmJudge
) -> None:
    answers = {ENTAILED: "Yes.", CONTRADICTED: "no", UNRELATED: "partly"}

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["model"] == "tiny" and body["temperature"] == 0.0 and body["max_tokens"] <= 8
        question = body["messages"][-1]["content"]
        return _completion(next(a for claim, a in answers.items() if claim in question))

    route = mock.post(URL).mock(side_effect=reply)
    results = await judge.entail(TENANT, [(PREMISE, c) for c in answers])
    assert [r.label for r in results] == ["entailment", "neutral", "entailment"]
    assert results == [Entailment(1.0, 0.0, 0.0), Entailment(0.0, 0.5, 0.5), Entailment(0.5, 0.5, 0.0)]
    assert route.call_count == 3
    assert judge.name == "llm:tiny"


@pytest.mark.parametrize(
    ("responses", "failure", "calls"),
    [
        ([httpx.Response(503, text="loading")] * 3, "unavailable", 3),  # retried, then given up
        ([httpx.Response(429), _completion("yes")], None, 2),  # retried, then answered
        ([httpx.ConnectError("refused")] * 3, "unavailable", 3),
        ([httpx.ReadTimeout("slow")], "timeout", 1),
        ([httpx.Response(400, json={"error": {"message": "context window exceeded"}})], "invalid", 1),
        ([httpx.Response(404, json={"detail": "no model tiny"})], "error", 1),
        ([httpx.Response(200, text="<html>not json</html>")], "unparseable", 1),
        ([httpx.Response(200, json={"choices": []})], "unparseable", 1),
        ([_completion("The passage is not relevant")], "unparseable", 1),
    ],
)
async def test_http_outcomes_become_failure_codes(
    mock: respx.MockRouter,
    judge: LlmJudge,
    responses: list[httpx.Response | Exception],
    failure: str | None,
    calls: int,
) -> None:
    route = mock.post(URL).mock(side_effect=responses)
    if failure is None:
        assert await judge.relevance(TENANT, QUERY, [RELEVANT]) == [1.0]
    else:
        with pytest.raises(JudgeFailed) as caught:
            await judge.relevance(TENANT, QUERY, [RELEVANT])
        assert caught.value.failure == failure
    assert route.call_count == calls


async def test_the_call_fails_as_timeout_past_its_time(mock: respx.MockRouter) -> None:
    never = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    mock.post(URL).mock(side_effect=hang)
    judge = LlmJudge(BASE, "tiny", timeout_s=0.05)
    with pytest.raises(JudgeFailed) as caught:
        await judge.entail(TENANT, [(PREMISE, ENTAILED), (PREMISE, UNRELATED)])
    assert caught.value.failure == "timeout" and "2 question(s)" in str(caught.value)
    await judge.aclose()


async def test_what_cannot_be_asked_fails_before_any_request(mock: respx.MockRouter, judge: LlmJudge) -> None:
    route = mock.post(URL).mock(return_value=_completion("yes"))
    cases = [
        (judge.entail(TENANT, [(PREMISE, " ")]), "invalid"),
        (judge.entail(TENANT, [(PREMISE, "x" * (MAX_JUDGE_TEXT_CHARS + 1))]), "too_long"),
        (judge.relevance(TENANT, "", [RELEVANT]), "invalid"),
        (judge.relevance(TENANT, QUERY, ["p" * (MAX_JUDGE_TEXT_CHARS + 1)]), "too_long"),
    ]
    for call, failure in cases:
        with pytest.raises(JudgeFailed) as caught:
            await call
        assert caught.value.failure == failure
    assert await judge.entail(TENANT, []) == [] and await judge.relevance(TENANT, QUERY, []) == []
    assert route.call_count == 0


# ------------------------------------------------------------------------------------------ build_judge


async def test_build_judge_by_name() -> None:
    settings = EvaluationSettings.model_validate(
        {"judge_llm_url": "http://127.0.0.1:8080/v1", "judge_llm_model": "smol"}
    )
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        offline = build_judge("offline", settings, channel)
        assert isinstance(offline, GrpcJudge) and offline.name.startswith("offline:")
        llm = build_judge("llm", settings, channel)
        assert isinstance(llm, LlmJudge) and llm.name == "llm:smol"
        await close_judge(llm)
        await close_judge(offline)
        with pytest.raises(ConfigurationError) as missing:
            build_judge("llm", EvaluationSettings.model_validate({"judge_llm_model": "smol"}), channel)
        assert str(missing.value).startswith("the llm judge needs evaluation.judge_llm_url (")
        with pytest.raises(ConfigurationError) as both:
            build_judge("llm", EvaluationSettings.model_validate({}), channel)
        assert "evaluation.judge_llm_url and evaluation.judge_llm_model" in str(both.value)
        with pytest.raises(InvalidArgument, match="'ragas'"):
            build_judge("ragas", settings, channel)
    with pytest.raises(ConfigurationError, match="http"):
        LlmJudge("127.0.0.1:8080", "smol")


# -------------------------------------------------------------------------------- the real llama server


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with llama_server(tmp_path_factory.mktemp("llama")) as server:
        yield server


@pytest.fixture
async def real_judge(llama: LlamaServer) -> AsyncIterator[LlmJudge]:
    if (why := llama.died()) is not None:
        pytest.fail(why, pytrace=False)
    j = LlmJudge(llama.base_url, llama.model, timeout_s=120.0, max_retries=1)
    yield j
    await j.aclose()
    if (why := llama.died()) is not None:
        pytest.fail(why, pytrace=False)


@pytest.mark.slow
async def test_real_replies_are_verdicts_or_coded_failures(real_judge: LlmJudge) -> None:
    pairs = [(PREMISE, ENTAILED), (PREMISE, CONTRADICTED), (PREMISE, UNRELATED)]
    for pair in pairs:  # one by one: a failed item fails its whole call
        try:
            [e] = await real_judge.entail(TENANT, [pair])
        except JudgeFailed as exc:
            assert exc.failure in CODES and str(exc)
        else:
            assert_probabilities(e)
    for passage in (RELEVANT, OFF_TOPIC):
        try:
            [score] = await real_judge.relevance(TENANT, QUERY, [passage])
        except JudgeFailed as exc:
            assert exc.failure in CODES and str(exc)
        else:
            assert score in (0.0, 0.5, 1.0)


@pytest.mark.slow
async def test_real_failures_have_their_codes(llama: LlamaServer, real_judge: LlmJudge) -> None:
    # a question far past the model's 2,048-token context: the server refuses it
    with pytest.raises(JudgeFailed) as caught:
        await real_judge.entail(TENANT, [(PREMISE + " The shop is open." * 1500, ENTAILED)])
    assert caught.value.failure == "invalid", caught.value
    hasty = LlmJudge(llama.base_url, llama.model, timeout_s=0.001, max_retries=0)
    with pytest.raises(JudgeFailed) as late:
        await hasty.relevance(TENANT, QUERY, [RELEVANT])
    assert late.value.failure == "timeout"
    await hasty.aclose()


class TestUnreachableLlm(JudgeOutageConformance):
    @pytest.fixture
    async def unreachable_judge(self) -> AsyncIterator[LlmJudge]:
        j = LlmJudge(f"http://127.0.0.1:{free_port_run(1)}/v1", "smol", max_retries=1, backoff_s=0.0)
        yield j
        await j.aclose()
