"""Resilience around LLM providers: a time-out per call, retries of transient failures with exponential
backoff and jitter (tenacity), a circuit breaker per provider (purgatory: ``breaker_failures`` consecutive
failures open it; an open circuit refuses calls at once for ``breaker_reset_s``, then lets calls
through again — half-open — and the first outcome closes it or re-opens it), and fallback chains that try
providers in order and record which one answered (``ChatReply.provider``; ``Generation.generator``).

Transient: :class:`~isthmus_core.errors.Unavailable` (``DeadlineExceeded`` included), a
``ResourceExhausted`` with a retry delay, and any exception a provider failed to translate. Permanent
errors (``InvalidArgument``, ``FailedPrecondition``…) are neither retried nor counted by the breaker.
What escapes is an :class:`~isthmus_core.errors.IsthmusError` naming the provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import structlog
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from isthmus_agent_orchestrator.agents.providers.answers import Prompt
from isthmus_agent_orchestrator.agents.types import ChatMessage, ChatModel, ChatReply, ToolSpec, Usage
from isthmus_core.errors import ConfigurationError, DeadlineExceeded, IsthmusError, Unavailable
from isthmus_core.ports.generator import AnswerSentence, Context, Generation, Generator

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")
UsageSink = Callable[[Usage], None]


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: not a permanent error, and not a cancellation (never retried)."""
    return isinstance(exc, Exception) and not (isinstance(exc, IsthmusError) and exc.permanent)


def _named(provider: str, exc: BaseException) -> IsthmusError:
    """``exc`` as an IsthmusError whose reason names the provider."""
    if isinstance(exc, IsthmusError):
        if exc.reason.startswith(f"{provider}:") or exc.reason.startswith(f"{provider} "):
            return exc
        return _with_reason(exc, f"{provider}: {exc.reason}")
    return Unavailable(f"{provider}: {type(exc).__name__}: {exc}", provider=provider)


def _with_reason(exc: IsthmusError, reason: str) -> IsthmusError:
    """A copy of ``exc`` (same class and attributes) saying ``reason``."""
    copy = type(exc).__new__(type(exc))
    IsthmusError.__init__(copy, reason, **exc.details)
    copy.__dict__.update({k: v for k, v in exc.__dict__.items() if k not in ("reason", "details")})
    return copy


class Resilience:
    """The time-out, retries and circuit breaker of one provider (shared by its chat model and its
    generator, so both see the same circuit)."""

    def __init__(
        self,
        provider: str,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        breakers: AsyncCircuitBreakerFactory | None = None,
    ) -> None:
        if timeout_s <= 0 or max_retries < 0 or breaker_failures < 1 or breaker_reset_s <= 0:
            raise ConfigurationError(
                f"{provider}: timeout_s and breaker_reset_s must be positive, max_retries 0 or more, "
                "breaker_failures at least 1"
            )
        self.provider = provider
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.breaker_reset_s = breaker_reset_s
        self._breakers = breakers or AsyncCircuitBreakerFactory(
            default_threshold=breaker_failures,
            default_ttl=breaker_reset_s,
            # permanent errors and cancellations say nothing about the provider's health
            exclude=[(IsthmusError, lambda exc: bool(exc.permanent)), asyncio.CancelledError],
        )
        self._threshold = breaker_failures
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)

    async def state(self) -> str:
        """The circuit's state: ``closed``, ``opened`` or ``half-opened``."""
        breaker = await self._breakers.get_breaker(self.provider, threshold=self._threshold)
        return str(breaker.context.state)

    async def call(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()`` under the time-out, the breaker and the retries."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._backoff,
            retry=retry_if_exception(lambda e: _transient(e) and not isinstance(e, _CircuitOpen)),
            before_sleep=self._log_retry,
            reraise=True,
        )
        tries = 0
        try:
            async for try_ in retrying:
                with try_:
                    tries += 1
                    return await self.once(attempt)
        except _CircuitOpen as exc:
            raise Unavailable(str(exc), provider=self.provider) from None
        except Exception as exc:
            error = _named(self.provider, exc)
            if _transient(error) and tries > 1:
                last = error.reason.removeprefix(f"{self.provider}: ")
                error = _with_reason(
                    error, f"{self.provider}: unavailable after {tries} attempt(s); last error: {last}"
                )
            raise error from exc
        raise AssertionError("unreachable: tenacity either returns, raises or retries")

    async def once(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """One attempt under the breaker and the time-out (no retry)."""
        breaker = await self._breakers.get_breaker(self.provider, threshold=self._threshold)
        try:
            async with breaker:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        return await attempt()
                except TimeoutError as exc:
                    raise DeadlineExceeded(
                        f"{self.provider}: no reply within {self.timeout_s:g}s", provider=self.provider
                    ) from exc
        except Exception as exc:
            if isinstance(exc, OpenedState):  # purgatory's open-circuit signal
                raise _CircuitOpen(
                    f"{self.provider}: circuit open after {self._threshold} consecutive failures; "
                    f"calls refused for {self.breaker_reset_s:g}s"
                ) from None
            raise

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        _log.warning("provider_retry", provider=self.provider, attempt=state.attempt_number, error=str(exc))


class _CircuitOpen(Exception):
    pass


class ResilientChatModel:
    """A chat model behind a :class:`Resilience` policy."""

    def __init__(self, inner: ChatModel, policy: Resilience) -> None:
        self._inner = inner
        self._policy = policy

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def policy(self) -> Resilience:
        return self._policy

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        reply = await self._policy.call(
            lambda: self._inner.complete(messages, tools=tools, schema=schema, max_tokens=max_tokens)
        )
        return reply if reply.provider else dataclasses.replace(reply, provider=self._inner.name)


class ResilientGenerator:
    """A generator behind a :class:`Resilience` policy. ``stream`` retries until its first sentence
    (after that a failure surfaces: a sentence shown cannot be taken back); the time-out applies to each
    sentence's wait."""

    def __init__(self, inner: Generator, policy: Resilience) -> None:
        self._inner = inner
        self._policy = policy

    @property
    def name(self) -> str:
        return self._inner.name

    async def generate(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> Generation:
        kw = _kw(usage_sink, prompt)
        return await self._policy.call(lambda: self._inner.generate(question, contexts, **kw))

    async def stream(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> AsyncIterator[AnswerSentence]:
        kw = _kw(usage_sink, prompt)
        opened: list[AsyncIterator[AnswerSentence]] = []

        async def first() -> AnswerSentence | None:
            iterator = aiter(self._inner.stream(question, contexts, **kw))
            opened.append(iterator)
            try:
                return await anext(iterator)
            except StopAsyncIteration:
                return None
            except BaseException:
                await _aclose(iterator)  # a failed attempt's stream (its HTTP response) is let go
                raise

        head = await self._policy.call(first)
        if head is None:
            return
        iterator = opened[-1]
        try:
            yield head
            while True:
                try:
                    async with asyncio.timeout(self._policy.timeout_s):
                        sentence = await anext(iterator)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise DeadlineExceeded(
                        f"{self._policy.provider}: the answer stream stalled for {self._policy.timeout_s:g}s"
                    ) from exc
                except Exception as exc:
                    raise _named(self._policy.provider, exc) from exc
                yield sentence
        finally:
            await _aclose(iterator)


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception as exc:  # closing a broken stream: nothing more to learn from it
            _log.debug("stream_close_failed", error=str(exc))


def _chain_error(failures: list[tuple[str, IsthmusError]]) -> IsthmusError:
    if len(failures) == 1:
        return failures[0][1]
    said = "; ".join(e.reason for _, e in failures)
    return Unavailable(f"every provider failed: {said}", providers=",".join(p for p, _ in failures))


class FallbackChatModel:
    """Chat models tried in order; the first that answers wins (its name in ``ChatReply.provider``)."""

    def __init__(self, models: Sequence[ChatModel]) -> None:
        if not models:
            raise ConfigurationError("a fallback chain needs at least one chat model")
        self._models = tuple(models)

    @property
    def name(self) -> str:
        return self._models[0].name

    @property
    def model(self) -> str:
        return self._models[0].model

    @property
    def models(self) -> tuple[ChatModel, ...]:
        return self._models

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        failures: list[tuple[str, IsthmusError]] = []
        for model in self._models:
            try:
                reply = await model.complete(messages, tools=tools, schema=schema, max_tokens=max_tokens)
            except Exception as exc:
                failures.append((model.name, _named(model.name, exc)))
                _log.warning("provider_fallback", provider=model.name, error=str(exc))
                continue
            return dataclasses.replace(reply, provider=model.name)
        raise _chain_error(failures)


class FallbackGenerator:
    """Generators tried in order; ``Generation.generator`` says which answered. A stream falls back only
    before its first sentence."""

    def __init__(self, generators: Sequence[Generator]) -> None:
        if not generators:
            raise ConfigurationError("a fallback chain needs at least one generator")
        self._generators = tuple(generators)

    @property
    def name(self) -> str:
        return self._generators[0].name

    async def generate(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> Generation:
        kw = _kw(usage_sink, prompt)
        failures: list[tuple[str, IsthmusError]] = []
        for generator in self._generators:
            try:
                return await generator.generate(question, contexts, **kw)
            except Exception as exc:
                failures.append((generator.name, _named(generator.name, exc)))
                _log.warning("generator_fallback", generator=generator.name, error=str(exc))
        raise _chain_error(failures)

    async def stream(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> AsyncIterator[AnswerSentence]:
        kw = _kw(usage_sink, prompt)
        failures: list[tuple[str, IsthmusError]] = []
        for generator in self._generators:
            iterator = aiter(generator.stream(question, contexts, **kw))
            try:
                head = await anext(iterator)
            except StopAsyncIteration:
                return
            except Exception as exc:
                await _aclose(iterator)
                failures.append((generator.name, _named(generator.name, exc)))
                _log.warning("generator_fallback", generator=generator.name, error=str(exc))
                continue
            try:
                yield head
                async for sentence in iterator:
                    yield sentence
            finally:
                await _aclose(iterator)
            return
        raise _chain_error(failures)


def _kw(usage_sink: UsageSink | None, prompt: Prompt | None) -> dict[str, Any]:
    """The optional keyword arguments of a generator call, passed on only when given."""
    kw: dict[str, Any] = {}
    if usage_sink is not None:
        kw["usage_sink"] = usage_sink
    if prompt is not None:
        kw["prompt"] = prompt
    return kw
