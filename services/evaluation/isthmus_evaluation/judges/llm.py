"""The LLM judge: :class:`LlmJudge` implements :class:`~isthmus_core.ports.judge.Judge` over any
OpenAI-compatible ``/chat/completions`` endpoint (llama.cpp, vLLM, Ollama, OpenAI…).

One chat request per pair or passage (the questions and the reading of the one-word answers:
:mod:`.replies`), temperature 0 and a few tokens. The items of a call are asked in order, at most
``concurrency`` at a time; the call fails as a whole (:class:`JudgeFailed`) on its first failed item:

==========================================================  ===============
what happened                                               failure code
==========================================================  ===============
the call took longer than ``timeout_s`` (all its requests)  ``timeout``
no connection, or HTTP 429/5xx after ``max_retries``        ``unavailable``
HTTP 400/413/422 (e.g. a prompt past the model's context)   ``invalid``
a reply that is not yes / no / partly                       ``unparseable``
a text past the port's limits (checked before asking)       ``too_long``
a blank hypothesis or query                                 ``invalid``
any other answer (401/403/404: key, URL or model)           ``error``
==========================================================  ===============

Connection failures, 429 and 5xx are retried with exponential backoff (tenacity) within the call's time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from isthmus_core.errors import ConfigurationError
from isthmus_core.ports.judge import (
    MAX_JUDGE_QUERY_CHARS,
    MAX_JUDGE_TEXT_CHARS,
    Entailment,
    JudgeFailed,
)
from isthmus_evaluation.judges.replies import (
    entail_prompt,
    entailment_of,
    messages,
    relevance_of,
    relevance_prompt,
)

_T = TypeVar("_T")
DEFAULT_TIMEOUT_S: Final = 60.0
#: tokens of a reply: one word and its punctuation
DEFAULT_MAX_TOKENS: Final = 5
_ERROR_TEXT_LIMIT: Final = 300


class _Transient(Exception):
    """Worth retrying: ``failure`` is the code if the retries run out."""

    def __init__(self, failure: str, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


class LlmJudge:
    """:class:`~isthmus_core.ports.judge.Judge` asking an OpenAI-compatible chat model (``aclose`` it)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        api_key: str = "",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        concurrency: int = 1,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"evaluation.judge_llm_url must be an http(s) URL such as http://127.0.0.1:8080/v1, "
                f"got {base_url!r}"
            )
        if not model.strip():
            raise ConfigurationError("evaluation.judge_llm_model is empty: name the model to ask")
        if timeout_s <= 0 or max_tokens < 1 or max_retries < 0 or backoff_s < 0 or concurrency < 1:
            raise ConfigurationError(
                "LLM judge: timeout_s > 0, max_tokens >= 1, max_retries >= 0, backoff_s >= 0 and "
                "concurrency >= 1 are required"
            )
        self._url = str(base_url).rstrip("/") + "/chat/completions"
        self._model = model
        self._timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._max_tokens = max_tokens
        self._max_retries = max_retries
        self._backoff = wait_exponential_jitter(
            multiplier=backoff_s, max=max(backoff_s, 5.0), jitter=backoff_s
        )
        self._concurrency = concurrency
        self._client = client if client is not None else httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    @property
    def name(self) -> str:
        return f"llm:{self._model}"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def entail(self, tenant_id: str, pairs: Sequence[tuple[str, str]]) -> list[Entailment]:
        for i, (premise, hypothesis) in enumerate(pairs):
            _too_long(f"pairs[{i}].premise", premise, MAX_JUDGE_TEXT_CHARS)
            _too_long(f"pairs[{i}].hypothesis", hypothesis, MAX_JUDGE_TEXT_CHARS)
            if not hypothesis.strip():
                raise JudgeFailed("invalid", f"pairs[{i}].hypothesis is blank: there is no claim to judge")
        replies = await self._ask_all([entail_prompt(p, h) for p, h in pairs])
        return [entailment_of(r) for r in replies]

    async def relevance(self, tenant_id: str, query: str, passages: Sequence[str]) -> list[float]:
        _too_long("query", query, MAX_JUDGE_QUERY_CHARS)
        if not query.strip():
            raise JudgeFailed("invalid", "query is blank: relevance needs a query")
        for i, passage in enumerate(passages):
            _too_long(f"passages[{i}]", passage, MAX_JUDGE_TEXT_CHARS)
        replies = await self._ask_all([relevance_prompt(query, p) for p in passages])
        return [relevance_of(r) for r in replies]

    async def _ask_all(self, prompts: Sequence[str]) -> list[str]:
        """The replies to ``prompts``, in order, within the call's time (``timeout``), each read as it
        comes (the first unparseable reply ends the call)."""
        if not prompts:
            return []
        gate = asyncio.Semaphore(self._concurrency)

        async def ask(prompt: str) -> str:
            async with gate:
                reply = await self._retrying(lambda: self._complete(prompt))
            return reply

        try:
            async with asyncio.timeout(self._timeout_s), asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(ask(p)) for p in prompts]
        except TimeoutError:
            raise JudgeFailed(
                "timeout",
                f"{self._url} did not answer {len(prompts)} question(s) within {self._timeout_s:g}s",
            ) from None
        except ExceptionGroup as group:  # the first failure ends the call (the other questions are cancelled)
            raise _first(group) from None
        return [t.result() for t in tasks]

    async def _retrying(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._backoff,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    return await attempt()
        except _Transient as exc:
            raise JudgeFailed(
                exc.failure, f"{self._url} after {self._max_retries + 1} attempt(s): {exc}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns, raises or retries")

    async def _complete(self, prompt: str) -> str:
        payload = {
            "model": self._model,
            "messages": messages(prompt),
            "temperature": 0.0,
            "max_tokens": self._max_tokens,
        }
        try:
            response = await self._client.post(self._url, json=payload, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise JudgeFailed("timeout", f"{self._url}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:  # connect errors, resets, protocol errors
            raise _Transient("unavailable", f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient("unavailable", f"HTTP {status}: {_error_message(response.text)}")
        if status in (400, 413, 422):
            raise JudgeFailed(
                "invalid",
                f"{self._url} rejected the question (HTTP {status}): {_error_message(response.text)}",
            )
        if not response.is_success:
            raise JudgeFailed(
                "error",
                f"{self._url} answered HTTP {status}: {_error_message(response.text)}; "
                "check the URL, the model name and the key",
            )
        return _content(response.text, self._url)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _too_long(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise JudgeFailed("too_long", f"{what} is {len(text)} characters; the judge takes at most {limit}")


def _content(body: str, url: str) -> str:
    """``choices[0].message.content`` of a chat completion; a body without it is ``unparseable``."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise JudgeFailed(
            "unparseable", f"{url} did not answer a chat completion: {' '.join(body.split())[:120]!r}"
        ) from exc
    if not isinstance(content, str):
        raise JudgeFailed("unparseable", f"{url} answered a non-text message: {json.dumps(content)[:120]}")
    return content


def _error_message(body: str) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body.strip()[:_ERROR_TEXT_LIMIT] or "(empty body)"
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            value = data.get(key)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])[:_ERROR_TEXT_LIMIT]
            if value:
                return (value if isinstance(value, str) else json.dumps(value))[:_ERROR_TEXT_LIMIT]
    return json.dumps(data)[:_ERROR_TEXT_LIMIT]
