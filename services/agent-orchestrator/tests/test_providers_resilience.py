"""Resilience of LLM providers: retries of transient failures, the circuit breaker, fallback chains."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from purgatory.domain import model as purgatory_model

from isthmus_agent_orchestrator.agents.providers.resilience import (
    FallbackChatModel,
    FallbackGenerator,
    Resilience,
    ResilientChatModel,
    ResilientGenerator,
)
from isthmus_agent_orchestrator.agents.types import ChatMessage, ChatReply, ToolSpec, Usage
from isthmus_core.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.ports.generator import AnswerSentence, Context, Generation

MESSAGES = [ChatMessage("user", "hello")]


class Flaky:
    """A chat model failing with the scripted errors, then answering."""

    def __init__(self, name: str, failures: Sequence[Exception] = (), *, hang: bool = False) -> None:
        self._name = name
        self.failures = list(failures)
        self.calls = 0
        self.hang = hang

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return f"{self._name}-model"

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        self.calls += 1
        if self.hang:
            import asyncio

            await asyncio.Event().wait()
        if self.failures:
            raise self.failures.pop(0)
        return ChatReply(f"{self._name} says hi", usage=Usage(self.model, 3, 4, True))


def policy(name: str = "p", **kw: Any) -> Resilience:
    args: dict[str, Any] = {
        "max_retries": 2,
        "breaker_failures": 3,
        "breaker_reset_s": 30.0,
        "backoff_s": 0.0,
    }
    return Resilience(name, **(args | kw))


async def test_transient_failures_are_retried_then_succeed() -> None:
    inner = Flaky("p", [Unavailable("HTTP 503"), DeadlineExceeded("slow")])
    reply = await ResilientChatModel(inner, policy()).complete(MESSAGES)
    assert reply.text == "p says hi"
    assert reply.provider == "p"
    assert inner.calls == 3


async def test_permanent_errors_are_not_retried_and_name_the_provider() -> None:
    inner = Flaky("anthropic", [InvalidArgument("prompt too long")])
    with pytest.raises(InvalidArgument, match=r"^anthropic: prompt too long"):
        await ResilientChatModel(inner, policy("anthropic")).complete(MESSAGES)
    assert inner.calls == 1


async def test_exhausted_retries_raise_unavailable_naming_provider_and_attempts() -> None:
    inner = Flaky("bedrock", [Unavailable("throttled")] * 5)
    with pytest.raises(
        Unavailable, match=r"^bedrock: unavailable after 3 attempt\(s\); last error: throttled"
    ):
        await ResilientChatModel(inner, policy("bedrock", breaker_failures=10)).complete(MESSAGES)
    assert inner.calls == 3


async def test_untranslated_exceptions_become_unavailable() -> None:
    inner = Flaky("p", [RuntimeError("boom")])
    reply = await ResilientChatModel(inner, policy()).complete(MESSAGES)
    assert reply.text == "p says hi"
    inner = Flaky("p", [RuntimeError("boom")])
    with pytest.raises(Unavailable, match="p: RuntimeError: boom"):
        await ResilientChatModel(inner, policy(max_retries=0)).complete(MESSAGES)


async def test_a_call_past_the_timeout_is_deadline_exceeded() -> None:
    inner = Flaky("p", hang=True)
    with pytest.raises(DeadlineExceeded, match=r"p: no reply within 0\.05s"):
        await ResilientChatModel(inner, policy(timeout_s=0.05, max_retries=0)).complete(MESSAGES)


async def test_breaker_opens_after_consecutive_failures_refuses_fast_then_half_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inner = Flaky("p", [Unavailable("down")] * 3)
    model = ResilientChatModel(inner, policy(max_retries=0, breaker_failures=3, breaker_reset_s=30.0))
    for _ in range(3):
        with pytest.raises(Unavailable, match="down"):
            await model.complete(MESSAGES)
    assert await model.policy.state() == "opened"
    with pytest.raises(Unavailable, match="circuit open after 3 consecutive failures"):
        await model.complete(MESSAGES)
    assert inner.calls == 3  # refused without calling the provider
    # after breaker_reset_s one call goes through (half-open) and its success closes the circuit
    now = purgatory_model.time.time()
    monkeypatch.setattr(purgatory_model.time, "time", lambda: now + 31.0)
    reply = await model.complete(MESSAGES)
    assert reply.text == "p says hi"
    assert await model.policy.state() == "closed"


async def test_permanent_errors_do_not_open_the_breaker() -> None:
    inner = Flaky("p", [FailedPrecondition("bad key")] * 4)
    model = ResilientChatModel(inner, policy(max_retries=0, breaker_failures=2))
    for _ in range(4):
        with pytest.raises(FailedPrecondition):
            await model.complete(MESSAGES)
    assert await model.policy.state() == "closed"
    assert (await model.complete(MESSAGES)).text == "p says hi"


async def test_fallback_answers_from_the_second_provider_and_records_it() -> None:
    first = ResilientChatModel(Flaky("openai", [Unavailable("down")] * 9), policy("openai", max_retries=1))
    second = ResilientChatModel(Flaky("anthropic"), policy("anthropic"))
    reply = await FallbackChatModel([first, second]).complete(MESSAGES)
    assert reply.text == "anthropic says hi"
    assert reply.provider == "anthropic"


async def test_fallback_with_every_provider_down_names_each() -> None:
    chain = FallbackChatModel(
        [Flaky("openai", [Unavailable("down")]), Flaky("bedrock", [DeadlineExceeded("slow")])]
    )
    with pytest.raises(Unavailable, match="every provider failed: openai: down; bedrock: slow"):
        await chain.complete(MESSAGES)


# ---- generators

CONTEXTS = [Context("c1", "d1", "The index is rebuilt nightly.")]


class Gen:
    def __init__(self, name: str, failures: Sequence[Exception] = ()) -> None:
        self._name = name
        self.failures = list(failures)
        self.usage: list[Usage] = []

    @property
    def name(self) -> str:
        return self._name

    async def generate(
        self, question: str, contexts: Sequence[Context], *, usage_sink: Any = None
    ) -> Generation:
        if self.failures:
            raise self.failures.pop(0)
        if usage_sink is not None:
            usage_sink(Usage(self._name, 1, 2, True))
        return Generation((AnswerSentence(f"{self._name} answer."),), self._name)

    async def stream(
        self, question: str, contexts: Sequence[Context], *, usage_sink: Any = None
    ) -> AsyncIterator[AnswerSentence]:
        if self.failures:
            raise self.failures.pop(0)
        yield AnswerSentence(f"{self._name} one.")
        yield AnswerSentence(f"{self._name} two.")


async def test_resilient_generator_retries_and_passes_the_usage_sink() -> None:
    seen: list[Usage] = []
    generator = ResilientGenerator(Gen("g", [Unavailable("503")]), policy("g"))
    generation = await generator.generate("q", CONTEXTS, usage_sink=seen.append)
    assert generation.text == "g answer."
    assert seen == [Usage("g", 1, 2, True)]


async def test_resilient_stream_retries_opening() -> None:
    generator = ResilientGenerator(Gen("g", [Unavailable("503")]), policy("g"))
    assert [s.text async for s in generator.stream("q", CONTEXTS)] == ["g one.", "g two."]


async def test_fallback_generator_uses_the_next_one_for_generate_and_stream() -> None:
    chain = FallbackGenerator([Gen("a", [Unavailable("down"), Unavailable("down")]), Gen("b")])
    assert (await chain.generate("q", CONTEXTS)).generator == "b"
    assert [s.text async for s in chain.stream("q", CONTEXTS)] == ["b one.", "b two."]


class Tracked(Gen):
    """A generator whose streams record when they are closed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.closed = 0

    async def stream(
        self, question: str, contexts: Sequence[Context], *, usage_sink: Any = None
    ) -> AsyncIterator[AnswerSentence]:
        try:
            yield AnswerSentence(f"{self._name} one.")
            yield AnswerSentence(f"{self._name} two.")
        finally:
            self.closed += 1


@pytest.mark.parametrize("wrap", ["resilient", "fallback"])
async def test_a_stream_left_early_closes_the_providers_stream(wrap: str) -> None:
    inner = Tracked("g")
    outer = ResilientGenerator(inner, policy("g")) if wrap == "resilient" else FallbackGenerator([inner])
    stream = aiter(outer.stream("q", CONTEXTS))
    assert (await anext(stream)).text == "g one."
    await stream.aclose()  # type: ignore[attr-defined]
    assert inner.closed == 1


async def test_a_cancelled_call_is_neither_retried_nor_counted_by_the_breaker() -> None:
    import asyncio

    inner = Flaky("p", [asyncio.CancelledError(), asyncio.CancelledError()])
    model = ResilientChatModel(inner, policy(max_retries=3, breaker_failures=1))
    with pytest.raises(asyncio.CancelledError):
        await model.complete(MESSAGES)
    assert inner.calls == 1
    assert await model.policy.state() == "closed"
