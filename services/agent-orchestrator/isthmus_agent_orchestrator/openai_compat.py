"""A generator over any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp, Ollama…).

The model sees the contexts as numbered sources and is told to cite them as ``[n]``; each reply sentence
cites the whole span of every context it names (``start=context.start``, ``end=context.start + len(text)``),
with the markers removed from its text. Markers that name no given context are dropped, never invented.

Transport: ``httpx.AsyncClient``. Connect errors, timeouts, HTTP 429 and 5xx are retried with exponential
backoff (tenacity), honouring a small ``Retry-After``; when the retries run out the call raises
:class:`~isthmus_core.errors.Unavailable` naming the last cause. Other 4xx answers are permanent:
401/403/404 raise :class:`~isthmus_core.errors.FailedPrecondition` (wrong key, URL or model), the rest
:class:`~isthmus_core.errors.InvalidArgument`, both with the server's own error message. ``stream()``
retries only while opening the stream; once text has arrived, a failure raises ``Unavailable``.

The prompt and the citation parsing are shared with the other LLM generators
(:mod:`isthmus_agent_orchestrator.agents.providers.answers`). Usage: ``generate``/``stream`` take an
optional ``usage_sink`` receiving the call's tokens — the server's count (``stream`` asks for it with
``stream_options.include_usage``), or an estimate (``reported=False``) from servers that send none
(llama-cpp-python's streams).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from isthmus_agent_orchestrator.agents.providers.answers import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    Prompt,
    abstain,
    estimate_tokens,
    generation_of,
    messages_of,
    parse_answer,
    stream_sentences,
    user_prompt,
)
from isthmus_agent_orchestrator.agents.types import Usage
from isthmus_agent_orchestrator.sentences import NO_ANSWER
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.ports.generator import AnswerSentence, Context, Generation

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")

__all__ = [
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "OpenAICompatibleGenerator",
    "UsageSink",
    "parse_answer",
    "user_prompt",
]

#: where a generator reports the tokens of one call (the server's count, or an estimate: ``reported``)
UsageSink = Callable[[Usage], None]
_ERROR_TEXT_LIMIT = 500


class _Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's Retry-After in seconds, if any."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.retry_after = retry_after


class OpenAICompatibleGenerator:
    """Chat-completions client that turns ``[n]`` markers into citations of context ``n``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        temperature: float = 0.0,
        max_tokens: int = 512,
        client: httpx.AsyncClient | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_retry_after_s: float = 10.0,
        stream: bool = True,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}"
            )
        if not model.strip():
            raise ConfigurationError("model is empty: name the model the endpoint serves")
        if timeout_s <= 0:
            raise ConfigurationError(f"timeout_s must be positive, got {timeout_s}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {max_retries}")
        if max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be at least 1, got {max_tokens}")
        if not 0.0 <= temperature <= 2.0:
            raise ConfigurationError(f"temperature must be between 0 and 2, got {temperature}")
        if backoff_s < 0 or max_backoff_s < 0 or max_retry_after_s < 0:
            raise ConfigurationError("backoff_s, max_backoff_s and max_retry_after_s must not be negative")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout_s)
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._temperature = temperature
        self._max_tokens = max_tokens
        #: False: ``stream`` asks for the whole answer at once and yields its sentences — for servers that
        #: send no usage in streams (llama.cpp's Python server), whose tokens are then counted exactly
        self._streams = stream
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)
        self._max_retry_after_s = max_retry_after_s

    @property
    def name(self) -> str:
        return f"openai-compatible:{self._model}"

    async def aclose(self) -> None:
        """Close the HTTP client (only when this generator created it)."""
        if self._owns_client:
            await self._client.aclose()

    # ---- Generator port

    async def generate(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> Generation:
        payload = self._payload(question, contexts, stream=False, prompt=prompt)
        if not contexts:
            return abstain(self.name)
        data = await self._retrying(lambda: self._complete(payload))
        content, usage = _parse_completion(data, self._url)
        if usage_sink is not None:
            usage_sink(_usage_of(self._model, usage, payload, content))
        return generation_of(content, contexts, self.name, usage)

    async def stream(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> AsyncIterator[AnswerSentence]:
        payload = self._payload(question, contexts, stream=True, prompt=prompt)
        if not contexts:
            yield AnswerSentence(NO_ANSWER)
            return
        if not self._streams:
            answer = await self.generate(question, contexts, usage_sink=usage_sink, prompt=prompt)
            for sentence in answer.sentences or (AnswerSentence(NO_ANSWER),):
                yield sentence
            return
        response = await self._retrying(lambda: self._open_stream(payload))
        received: list[str] = []
        usage: dict[str, int] = {}
        try:
            tokens = _sse_tokens(response, self._url, usage.update)
            async for sentence in stream_sentences(_recorded(tokens, received), contexts):
                yield sentence
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"{self._url}: the answer stream broke off after {sum(map(len, received))} characters: "
                f"{_describe(exc)}"
            ) from exc
        finally:
            await response.aclose()
            if usage_sink is not None:  # also when the caller stops early: the tokens were spent
                usage_sink(_usage_of(self._model, usage, payload, "".join(received)))

    # ---- request building

    def _payload(
        self, question: str, contexts: Sequence[Context], *, stream: bool, prompt: Prompt | None = None
    ) -> dict[str, Any]:
        if not question.strip():
            raise InvalidArgument("question is empty")
        system, user = messages_of(question, contexts, prompt)
        return {
            "model": self._model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
            "stream": stream,
            # the last event carries the usage (servers that do not count send none: it is estimated)
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }

    # ---- transport

    async def _retrying(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    return await attempt()
        except _Transient as exc:
            raise Unavailable(
                f"{self._url} is unavailable after {self._max_retries + 1} attempt(s); last error: {exc}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns, raises or retries")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            if exc.retry_after <= self._max_retry_after_s:
                return exc.retry_after
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        _log.warning("generator_retry", url=self._url, attempt=state.attempt_number, error=str(exc))

    async def _complete(self, payload: dict[str, Any]) -> Any:
        try:
            response = await self._client.post(
                self._url, json=payload, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._timeout_s) from exc
        _raise_for_status(response, self._url, response.text)
        try:
            return response.json()
        except ValueError as exc:
            raise FailedPrecondition(
                f"{self._url} did not answer with JSON; is base_url an OpenAI-compatible endpoint? "
                f"Body starts: {response.text[:200]!r}"
            ) from exc

    async def _open_stream(self, payload: dict[str, Any]) -> httpx.Response:
        request = self._client.build_request(
            "POST", self._url, json=payload, headers=self._headers, timeout=self._timeout
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._timeout_s) from exc
        if response.is_success:
            return response
        try:
            body = (await response.aread()).decode("utf-8", "replace")
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self._timeout_s) from exc
        finally:
            await response.aclose()
        _raise_for_status(response, self._url, body)
        raise AssertionError("unreachable: a non-success status always raises")


# ---- helpers


async def _recorded(tokens: AsyncIterator[str], into: list[str]) -> AsyncIterator[str]:
    async for token in tokens:
        into.append(token)
        yield token


def _usage_of(model: str, usage: dict[str, int], payload: dict[str, Any], reply: str) -> Usage:
    """The server's count when it sent one (``reported``), else an estimate from the texts."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return Usage(model, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), True)
    prompt = sum(estimate_tokens(str(m.get("content", ""))) for m in payload.get("messages", ()))
    return Usage(model, prompt, estimate_tokens(reply), False)


def _parse_completion(data: Any, url: str) -> tuple[str, dict[str, int]]:
    try:
        message = data["choices"][0]["message"]
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not a string")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise FailedPrecondition(
            f"{url} did not return an OpenAI chat completion (no choices[0].message.content): "
            f"{json.dumps(data)[:200]}"
        ) from exc
    raw_usage = data.get("usage") if isinstance(data, dict) else None
    return content, _int_fields(raw_usage) if isinstance(raw_usage, dict) else {}


def _int_fields(raw: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


async def _sse_tokens(
    response: httpx.Response, url: str, on_usage: Callable[[dict[str, int]], None] | None = None
) -> AsyncIterator[str]:
    """The content deltas of a chat-completions event stream, up to ``data: [DONE]``; the ``usage``
    object of an event (``stream_options.include_usage``: the last one) goes to ``on_usage``."""
    async for line in response.aiter_lines():
        line = line.strip()
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, event:/id:/retry: fields
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise FailedPrecondition(f"{url} sent a stream event that is not JSON: {data[:200]!r}") from exc
        if not isinstance(event, dict):
            continue
        if "error" in event:
            raise Unavailable(f"{url} reported an error mid-stream: {_message_of(event)}")
        if on_usage is not None and isinstance(event.get("usage"), dict):
            on_usage(_int_fields(event["usage"]))
        for choice in event.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                yield content


def _raise_for_status(response: httpx.Response, url: str, body: str) -> None:
    status = response.status_code
    if response.is_success:
        return
    message = _error_message(body)
    if status == 429 or status >= 500:
        raise _Transient(f"HTTP {status}: {message}", _retry_after(response.headers.get("retry-after")))
    if status in (401, 403):
        raise FailedPrecondition(
            f"{url} refused the credentials (HTTP {status}): {message}; check the API key"
        )
    if status == 404:
        raise FailedPrecondition(f"{url} answered HTTP 404: {message}; check base_url and the model name")
    if 400 <= status < 500:
        raise InvalidArgument(f"{url} rejected the request (HTTP {status}): {message}")
    raise FailedPrecondition(f"{url} answered HTTP {status}: {message}; check base_url")


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:_ERROR_TEXT_LIMIT] or "(empty body)"
    return _message_of(data)[:_ERROR_TEXT_LIMIT]


def _message_of(data: Any) -> str:
    """The human message inside the usual error bodies (OpenAI, FastAPI, plain)."""
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
            if isinstance(value, str) and value:
                return value
            if value:
                return json.dumps(value)
    return json.dumps(data)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _transport_error(exc: httpx.HTTPError, timeout_s: float) -> Exception:
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        return _Transient(_describe(exc, timeout_s))
    return Unavailable(_describe(exc, timeout_s))


def _describe(exc: httpx.HTTPError, timeout_s: float | None = None) -> str:
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and timeout_s is not None:
        return f"{name} (no answer within {timeout_s:g}s)"
    return f"{name}: {exc}" if str(exc) else name
