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
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from isthmus_agent_orchestrator.sentences import NO_ANSWER, split_sentences
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument, Unavailable
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generation

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")

#: the version of the prompt (SYSTEM_PROMPT and :func:`user_prompt`): bump it whenever either changes, so
#: an answer's provenance says which prompt made it
PROMPT_VERSION = "1"
SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given by the user. Do not use any other "
    "knowledge. After every sentence of your answer, cite the sources that support it with their numbers "
    "in square brackets, before the full stop, for example: 'Refunds take five business days [2].' "
    "Write at most a few short sentences. If the sources do not contain the answer, reply exactly: "
    f"{NO_ANSWER}"
)

#: one citation marker: ``[2]``, ``[1, 3]`` or ``[1; 3]``
_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_MARKER_WITH_SPACE = re.compile(r"\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
#: markers at the start of a sentence: they close the previous sentence ("… days. [2] Next …")
_LEADING_MARKERS = re.compile(r"(?:\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\])+")
_WORD = re.compile(r"[^\W_]")
#: a word followed by whitespace: the sentence after a boundary has really begun
_BEGUN = re.compile(r"\S\s")
_NORMAL = re.compile(r"[^a-z0-9]+")
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

    async def generate(self, question: str, contexts: Sequence[Context]) -> Generation:
        payload = self._payload(question, contexts, stream=False)
        if not contexts:
            return _abstain(self.name)
        data = await self._retrying(lambda: self._complete(payload))
        content, usage = _parse_completion(data, self._url)
        sentences = parse_answer(content, contexts)
        if not sentences or all(_is_no_answer(s.text) for s in sentences):
            return _abstain(self.name, usage)
        return Generation(sentences=tuple(sentences), generator=self.name, usage=usage)

    async def stream(self, question: str, contexts: Sequence[Context]) -> AsyncIterator[AnswerSentence]:
        payload = self._payload(question, contexts, stream=True)
        if not contexts:
            yield AnswerSentence(NO_ANSWER)
            return
        response = await self._retrying(lambda: self._open_stream(payload))
        buffer = ""
        done = 0  # characters of ``buffer`` already yielded as sentences
        yielded = False
        try:
            async for token in _sse_tokens(response, self._url):
                buffer += token
                segments = _segments(buffer[done:])
                if len(segments) < 2 or not _BEGUN.search(buffer, done + segments[-1][1]):
                    # the last sentence has not really begun: the boundary before it may still move, and
                    # markers closing the sentence before it may still arrive
                    continue
                for raw, _ in segments[:-1]:
                    if (sentence := _cited(raw, contexts)) is not None:
                        yielded = True
                        yield sentence
                done += segments[-1][1]
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"{self._url}: the answer stream broke off after {len(buffer)} characters: {_describe(exc)}"
            ) from exc
        finally:
            await response.aclose()
        for raw, _ in _segments(buffer[done:]):
            if (sentence := _cited(raw, contexts)) is not None:
                yielded = True
                yield sentence
        if not yielded:
            yield AnswerSentence(NO_ANSWER)

    # ---- request building

    def _payload(self, question: str, contexts: Sequence[Context], *, stream: bool) -> dict[str, Any]:
        if not question.strip():
            raise InvalidArgument("question is empty")
        return {
            "model": self._model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt(question, contexts)},
            ],
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
            "stream": stream,
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


# ---- pure helpers


def user_prompt(question: str, contexts: Sequence[Context]) -> str:
    """The user message: the contexts numbered from 1 (best first), then the question."""
    sources = "\n\n".join(f"[{i}] {c.text.strip()}" for i, c in enumerate(contexts, start=1))
    return f"Sources:\n\n{sources}\n\nQuestion: {question.strip()}"


def parse_answer(text: str, contexts: Sequence[Context]) -> list[AnswerSentence]:
    """Split a model reply into sentences and turn their ``[n]`` markers into citations of context n."""
    return [s for raw, _ in _segments(text) if (s := _cited(raw, contexts)) is not None]


def _segments(text: str) -> list[tuple[str, int]]:
    """Sentences of ``text``, each with the citation markers that follow it.

    Markers that open a sentence ("… days. [2] Next …") close the previous one, so they move back to it.
    Each item is ``(sentence text with its markers, offset in text where the sentence's own words start)``.
    """
    items: list[tuple[str, int]] = []
    for start, end in split_sentences(text):
        lead = _LEADING_MARKERS.match(text, start, end)
        if lead is not None and items:
            items[-1] = (items[-1][0] + " " + lead.group().strip(), items[-1][1])
            piece = text[lead.end() : end]
            if not piece.strip():
                continue
            start = lead.end() + len(piece) - len(piece.lstrip())
        items.append((text[start:end], start))
    return items


def _cited(raw: str, contexts: Sequence[Context]) -> AnswerSentence | None:
    numbers = [int(n) for m in _MARKER.finditer(raw) for n in re.split(r"[,;]", m.group(1))]
    text = _MARKER_WITH_SPACE.sub("", raw).strip()
    if not _WORD.search(text):
        return None  # markers or punctuation only
    if _is_no_answer(text):
        return AnswerSentence(NO_ANSWER)
    citations: list[CitedSpan] = []
    for n in dict.fromkeys(numbers):
        if 1 <= n <= len(contexts):
            c = contexts[n - 1]
            citations.append(c.cite(c.start, c.start + len(c.text)))
    return AnswerSentence(text, tuple(citations))


def _is_no_answer(text: str) -> bool:
    return _NORMAL.sub(" ", text.lower()).strip() == _NORMAL.sub(" ", NO_ANSWER.lower()).strip()


def _abstain(generator: str, usage: dict[str, int] | None = None) -> Generation:
    return Generation(
        sentences=(AnswerSentence(NO_ANSWER),), generator=generator, abstained=True, usage=usage or {}
    )


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
    usage = (
        {k: v for k, v in raw_usage.items() if isinstance(v, int) and not isinstance(v, bool)}
        if isinstance(raw_usage, dict)
        else {}
    )
    return content, usage


async def _sse_tokens(response: httpx.Response, url: str) -> AsyncIterator[str]:
    """The content deltas of a chat-completions event stream, up to ``data: [DONE]``."""
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
