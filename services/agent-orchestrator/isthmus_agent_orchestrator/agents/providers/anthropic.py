"""Anthropic Messages API (the official ``anthropic`` SDK, ``AsyncAnthropic``): a chat model for the
agents and a :class:`~isthmus_core.ports.generator.Generator` for answers.

Chat messages map to the Messages format: system messages join the top-level ``system``; an assistant's
tool calls become ``tool_use`` blocks; tool messages become ``tool_result`` blocks of a user turn
(consecutive results share one turn, as the API wants). Structured output: ``output_config: {format:
{type: json_schema, schema}}``. Usage: ``usage.input_tokens``/``output_tokens`` (reported). No sampling
parameters are sent (the SDK's ``messages.create`` takes none: the model's defaults apply).

The SDK's own retries are off (``max_retries=0``): :mod:`.resilience` retries, breaks circuits and falls
back. SDK errors are translated: time-outs → ``DeadlineExceeded``, connection errors, 429, 5xx and
overloaded (529) → ``Unavailable``, 401/403/404 → ``FailedPrecondition``, other 4xx → ``InvalidArgument``,
each naming ``anthropic``. The generator reuses the OpenAI-compatible one's prompt and citation parsing
(:mod:`.answers`), so its answers cite the same way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anthropic
import httpx2

from isthmus_agent_orchestrator.agents.providers.answers import (
    Prompt,
    abstain,
    generation_of,
    messages_of,
    stream_sentences,
)
from isthmus_agent_orchestrator.agents.types import ChatMessage, ChatReply, ToolCall, ToolSpec, Usage
from isthmus_agent_orchestrator.sentences import NO_ANSWER
from isthmus_core.errors import (
    ConfigurationError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    IsthmusError,
    Unavailable,
)
from isthmus_core.ports.generator import AnswerSentence, Context, Generation

PROVIDER = "anthropic"
UsageSink = Callable[[Usage], None]


def _client(
    base_url: str, api_key: str, timeout_s: float, http_client: httpx2.AsyncClient | None
) -> anthropic.AsyncAnthropic:
    if not base_url.startswith(("http://", "https://")):
        raise ConfigurationError(f"anthropic: base_url must be an http(s) URL, got {base_url!r}")
    if timeout_s <= 0:
        raise ConfigurationError(f"anthropic: timeout_s must be positive, got {timeout_s}")
    return anthropic.AsyncAnthropic(
        api_key=api_key or "unset",
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
        http_client=http_client,
    )


def translate(exc: Exception) -> IsthmusError:
    """An SDK error as the error vocabulary, naming the provider."""
    if isinstance(exc, IsthmusError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return DeadlineExceeded(f"{PROVIDER}: the request timed out", provider=PROVIDER)
    if isinstance(exc, anthropic.APIConnectionError):
        return Unavailable(f"{PROVIDER}: cannot connect: {exc}", provider=PROVIDER)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        message = _message_of(exc)
        if status == 429 or status >= 500:
            return Unavailable(f"{PROVIDER}: HTTP {status}: {message}", provider=PROVIDER)
        if status in (401, 403):
            return FailedPrecondition(
                f"{PROVIDER}: the credentials were refused (HTTP {status}): {message}; check the API key"
            )
        if status == 404:
            return FailedPrecondition(
                f"{PROVIDER}: HTTP 404: {message}; check anthropic_base_url and anthropic_model"
            )
        return InvalidArgument(f"{PROVIDER}: the request was rejected (HTTP {status}): {message}")
    if isinstance(exc, anthropic.AnthropicError):
        return Unavailable(f"{PROVIDER}: {type(exc).__name__}: {exc}", provider=PROVIDER)
    return Unavailable(f"{PROVIDER}: {type(exc).__name__}: {exc}", provider=PROVIDER)


def _message_of(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
    return str(exc.message)[:500]


class AnthropicChatModel:
    """The agents' chat model over the Messages API."""

    def __init__(
        self,
        model: str,
        api_key: str = "",
        *,
        base_url: str = "https://api.anthropic.com",
        timeout_s: float = 30.0,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not model.strip():
            raise ConfigurationError("anthropic: model is empty (anthropic_model)")
        self._model = model
        self._client = _client(base_url, api_key, timeout_s, http_client)

    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def model(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.close()

    def request(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> dict[str, Any]:
        """The ``messages.create`` arguments (the request body) for these messages."""
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": max_tokens,
            "messages": to_anthropic_messages(messages),
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in tools
            ]
        if schema is not None:
            body["output_config"] = {"format": {"type": "json_schema", "schema": dict(schema)}}
        return body

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        body = self.request(messages, tools=tools, schema=schema, max_tokens=max_tokens)
        try:
            message = await self._client.messages.create(**body)
        except Exception as exc:
            raise translate(exc) from exc
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                arguments = block.input if isinstance(block.input, dict) else {}
                calls.append(ToolCall(block.id, block.name, arguments))
        usage = Usage(self._model, message.usage.input_tokens, message.usage.output_tokens, True)
        return ChatReply("".join(texts), tuple(calls), usage, PROVIDER)


def to_anthropic_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Chat messages (system ones excluded: they go to ``system``) as Messages API turns."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            if turns and turns[-1]["role"] == "user" and isinstance(turns[-1]["content"], list):
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": "user", "content": [block]})
            continue
        if m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            blocks += [
                {"type": "tool_use", "id": c.call_id, "name": c.name, "input": dict(c.arguments)}
                for c in m.tool_calls
            ]
            turns.append({"role": "assistant", "content": blocks})
            continue
        turns.append({"role": m.role, "content": m.content})
    return turns


class AnthropicGenerator:
    """Answers with ``[n]`` citations over the Messages API (the OpenAI-compatible generator's prompt)."""

    def __init__(
        self,
        model: str,
        api_key: str = "",
        *,
        base_url: str = "https://api.anthropic.com",
        timeout_s: float = 30.0,
        max_tokens: int = 512,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        if not model.strip():
            raise ConfigurationError("anthropic: model is empty (anthropic_model)")
        if max_tokens < 1:
            raise ConfigurationError(f"anthropic: max_tokens must be at least 1, got {max_tokens}")
        self._model = model
        self._max_tokens = max_tokens
        self._client = _client(base_url, api_key, timeout_s, http_client)

    @property
    def name(self) -> str:
        return f"{PROVIDER}:{self._model}"

    async def aclose(self) -> None:
        await self._client.close()

    def request(
        self, question: str, contexts: Sequence[Context], prompt: Prompt | None = None
    ) -> dict[str, Any]:
        if not question.strip():
            raise InvalidArgument("question is empty")
        system, user = messages_of(question, contexts, prompt)
        return {
            "model": self._model,
            "max_tokens": self._max_tokens,
            "system": system,
            "messages": [{"role": "user", "content": user}],
        }

    async def generate(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> Generation:
        body = self.request(question, contexts, prompt)
        if not contexts:
            return abstain(self.name)
        try:
            message = await self._client.messages.create(**body)
        except Exception as exc:
            raise translate(exc) from exc
        text = "".join(b.text for b in message.content if b.type == "text")
        usage = Usage(self._model, message.usage.input_tokens, message.usage.output_tokens, True)
        if usage_sink is not None:
            usage_sink(usage)
        return generation_of(text, contexts, self.name, _usage_dict(usage))

    async def stream(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> AsyncIterator[AnswerSentence]:
        body = self.request(question, contexts, prompt)
        if not contexts:
            yield AnswerSentence(NO_ANSWER)
            return
        try:
            events = await self._client.messages.create(**body, stream=True)
        except Exception as exc:
            raise translate(exc) from exc
        usage = Usage(self._model, reported=True)
        try:
            async for sentence in stream_sentences(_text_deltas(events, usage), contexts):
                yield sentence
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise Unavailable(f"{PROVIDER}: the answer stream broke off: {translate(exc).reason}") from exc
        finally:
            await events.close()
            if usage_sink is not None:
                usage_sink(usage)


async def _text_deltas(events: Any, usage: Usage) -> AsyncIterator[str]:
    """Text of a Messages event stream; the usage of ``message_start``/``message_delta`` into ``usage``."""
    async for event in events:
        if event.type == "message_start":
            usage.prompt_tokens = event.message.usage.input_tokens
            usage.completion_tokens = event.message.usage.output_tokens
        elif event.type == "message_delta":
            usage.completion_tokens = event.usage.output_tokens
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            yield event.delta.text
        elif event.type == "error":  # pragma: no cover - the SDK raises on error events
            raise Unavailable(f"{PROVIDER}: error event mid-stream: {json.dumps(event.error)}")


def _usage_dict(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
