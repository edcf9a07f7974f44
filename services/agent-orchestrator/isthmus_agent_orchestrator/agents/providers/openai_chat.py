"""A :class:`~isthmus_agent_orchestrator.agents.types.ChatModel` over any OpenAI-compatible
``/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp, Ollama…): tool calling (``tools`` as function
specs, ``tool_calls`` parsed) and structured output.

Structured output: ``response_format: {type: json_schema, json_schema: {name, schema, strict}}`` (OpenAI,
vLLM, llama.cpp's ``llama-server``). llama-cpp-python's server accepts only ``{type: json_object,
schema}`` (the same grammar constraint, its own spelling): with ``structured="auto"`` a server that rejects
``json_schema`` is asked again the other way, and that way is kept for the model's later calls.

One attempt per call: retries, the circuit breaker and fallbacks are
:mod:`~isthmus_agent_orchestrator.agents.providers.resilience`'s. Transient failures (connect errors,
HTTP 429/5xx) raise :class:`~isthmus_core.errors.Unavailable`, a time-out ``DeadlineExceeded``, a
request the server refuses (4xx) ``InvalidArgument``/``FailedPrecondition`` — each naming the provider.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx

from isthmus_agent_orchestrator.agents.providers.answers import estimate_tokens
from isthmus_agent_orchestrator.agents.types import ChatMessage, ChatReply, ToolCall, ToolSpec, Usage
from isthmus_agent_orchestrator.openai_compat import _error_message, _raise_for_status, _Transient
from isthmus_core.errors import (
    ConfigurationError,
    DeadlineExceeded,
    FailedPrecondition,
    IsthmusError,
    Unavailable,
)

Structured = Literal["auto", "json_schema", "json_object"]
ToolChoice = Literal["auto", "required"]


class OpenAIChatModel:
    """Chat completions with tools and JSON-schema replies over ``httpx``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        temperature: float = 0.0,
        structured: Structured = "auto",
        tool_choice: ToolChoice = "auto",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"openai: base_url must be an http(s) URL, got {base_url!r}")
        if not model.strip():
            raise ConfigurationError("openai: model is empty: name the model the endpoint serves")
        if timeout_s <= 0:
            raise ConfigurationError(f"openai: timeout_s must be positive, got {timeout_s}")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._temperature = temperature
        self._structured: Structured = structured
        self._tool_choice: ToolChoice = tool_choice
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    @property
    def name(self) -> str:
        return "openai"

    @property
    def model(self) -> str:
        return self._model

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        payload = self.payload(messages, tools=tools, schema=schema, max_tokens=max_tokens)
        try:
            data = await self._post(payload)
        except _Rejected as exc:
            if schema is None or self._structured != "auto" or not exc.about_response_format:
                raise exc.error from None
            # llama-cpp-python: only {type: json_object, schema}; keep that spelling from now on
            self._structured = "json_object"
            payload = self.payload(messages, tools=tools, schema=schema, max_tokens=max_tokens)
            try:
                data = await self._post(payload)
            except _Rejected as again:
                raise again.error from None
        return self.reply_of(data, payload)

    # ---- wire format (public for the contract tests)

    def payload(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [_message(m) for m in messages],
            "temperature": self._temperature,
            "max_tokens": max_tokens,
        }
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in tools
            ]
            if self._tool_choice == "required":
                # a named function is what every server (llama.cpp included) constrains to
                named = {"type": "function", "function": {"name": tools[0].name}}
                body["tool_choice"] = named if len(tools) == 1 else "required"
        if schema is not None:
            if self._structured == "json_object":
                body["response_format"] = {"type": "json_object", "schema": dict(schema)}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "reply", "schema": dict(schema), "strict": True},
                }
        return body

    def reply_of(self, data: Any, payload: Mapping[str, Any]) -> ChatReply:
        try:
            message = data["choices"][0]["message"]
            text = message.get("content") or ""
            raw_calls = message.get("tool_calls") or []
            if not isinstance(text, str) or not isinstance(raw_calls, list):
                raise TypeError("content is not a string or tool_calls not a list")
            calls = tuple(_tool_call(c, i) for i, c in enumerate(raw_calls))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise FailedPrecondition(
                f"openai ({self._url}) did not return a chat completion: {json.dumps(data)[:200]}"
            ) from exc
        raw = data.get("usage") if isinstance(data, dict) else None
        if isinstance(raw, dict) and isinstance(raw.get("prompt_tokens"), int):
            usage = Usage(self._model, raw["prompt_tokens"], int(raw.get("completion_tokens") or 0), True)
        else:
            prompt = sum(estimate_tokens(str(m.get("content") or "")) for m in payload.get("messages", ()))
            usage = Usage(self._model, prompt, estimate_tokens(text), False)
        return ChatReply(text=text, tool_calls=calls, usage=usage, provider=self.name)

    # ---- transport

    async def _post(self, payload: dict[str, Any]) -> Any:
        try:
            response = await self._client.post(self._url, json=payload, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"openai: no answer from {self._url} within {self._timeout_s:g}s") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"openai: {self._url}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise _Rejected(response, self._url)
        try:
            return response.json()
        except ValueError as exc:
            raise FailedPrecondition(
                f"openai: {self._url} did not answer with JSON: {response.text[:200]!r}"
            ) from exc


class _Rejected(Exception):
    """A non-success answer: ``error`` is what the caller sees."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        message = _error_message(response.text)
        super().__init__(message)
        self.about_response_format = response.status_code in (400, 422, 500) and (
            "response_format" in message or "json_schema" in message
        )
        error: IsthmusError
        try:
            _raise_for_status(response, url, response.text)
            error = FailedPrecondition(f"openai: {url} answered HTTP {response.status_code}")
        except _Transient as exc:
            error = Unavailable(f"openai: {url}: {exc}")
        except IsthmusError as exc:
            error = type(exc)(f"openai: {exc.reason}")
        self.error = error


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            "content": m.content or None,
            "tool_calls": [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))},
                }
                for c in m.tool_calls
            ],
        }
    return {"role": m.role, "content": m.content}


def _tool_call(raw: Any, index: int) -> ToolCall:
    function = raw["function"]
    arguments = function.get("arguments") or "{}"
    if isinstance(arguments, str):
        try:
            # strict=False: raw control characters inside strings (small models under a grammar emit them)
            arguments = json.loads(arguments, strict=False)
        except ValueError:
            arguments = {}  # the tool's argument validation says what is missing
    return ToolCall(
        call_id=str(raw.get("id") or f"call_{index}"),
        name=str(function["name"]),
        arguments=arguments if isinstance(arguments, dict) else {},
    )
