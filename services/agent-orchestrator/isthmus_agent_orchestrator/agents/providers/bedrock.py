"""AWS Bedrock Converse (boto3 ``bedrock-runtime`` ``converse``): a chat model for the agents and a
:class:`~isthmus_core.ports.generator.Generator` for answers.

boto3 is blocking, so every call runs in a worker thread (``asyncio.to_thread``). Credentials come from
the standard AWS chain (environment, shared files, container/instance roles); ``endpoint_url`` points the
client elsewhere (a VPC endpoint, a local replay). botocore's own retries are off (one attempt):
:mod:`.resilience` retries, breaks circuits and falls back.

Mapping: system messages → ``system: [{text}]``; an assistant's tool calls → ``toolUse`` blocks; tool
messages → ``toolResult`` blocks of a user turn; tools → ``toolConfig.tools[].toolSpec`` with
``inputSchema.json``; structured output → ``outputConfig.textFormat`` (``json_schema``, the schema as a
JSON string); usage ← ``usage.inputTokens``/``outputTokens`` (reported). Errors: throttling, 5xx, model
not ready/time-out and connection errors → ``Unavailable`` (read time-outs ``DeadlineExceeded``); access
denied, unknown model and missing credentials → ``FailedPrecondition``; validation → ``InvalidArgument``;
each naming ``bedrock``.

The generator's ``stream`` asks ``converse`` for the whole reply, then yields its sentences (one call, the
same prompt and citations as every other generator).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from isthmus_agent_orchestrator.agents.providers.answers import (
    Prompt,
    abstain,
    generation_of,
    messages_of,
    parse_answer,
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

PROVIDER = "bedrock"
UsageSink = Callable[[Usage], None]

_TRANSIENT_CODES = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "ServiceQuotaExceededException",
}
_CONFIG_CODES = {
    "AccessDeniedException",
    "ResourceNotFoundException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
}


def make_client(region: str, endpoint_url: str = "", timeout_s: float = 30.0) -> Any:
    """A ``bedrock-runtime`` client: one attempt per call, the connect/read time-out, the default
    credential chain."""
    import boto3
    from botocore.config import Config

    if timeout_s <= 0:
        raise ConfigurationError(f"bedrock: timeout_s must be positive, got {timeout_s}")
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    return boto3.session.Session().client(
        "bedrock-runtime", region_name=region, endpoint_url=endpoint_url or None, config=config
    )


def translate(exc: Exception) -> IsthmusError:
    """A boto3/botocore error as the error vocabulary, naming the provider."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    if isinstance(exc, IsthmusError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))[:500]
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        said = f"{PROVIDER}: {code} (HTTP {status}): {message}"
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return Unavailable(said, provider=PROVIDER)
        if code in _CONFIG_CODES or status in (401, 403, 404):
            return FailedPrecondition(f"{said}; check the AWS credentials, bedrock_region and bedrock_model")
        return InvalidArgument(said)
    if isinstance(exc, ReadTimeoutError):
        return DeadlineExceeded(f"{PROVIDER}: no reply in time: {exc}", provider=PROVIDER)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return Unavailable(f"{PROVIDER}: cannot connect: {exc}", provider=PROVIDER)
    if isinstance(exc, NoCredentialsError | NoRegionError):
        return FailedPrecondition(f"{PROVIDER}: {exc} (the standard AWS credential chain found none)")
    if isinstance(exc, BotoCoreError):
        return Unavailable(f"{PROVIDER}: {type(exc).__name__}: {exc}", provider=PROVIDER)
    return Unavailable(f"{PROVIDER}: {type(exc).__name__}: {exc}", provider=PROVIDER)


async def _converse(client: Any, request: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        response = await asyncio.to_thread(lambda: client.converse(**request))
    except Exception as exc:
        raise translate(exc) from exc
    return dict(response)


def _reply_parts(response: Mapping[str, Any], model: str) -> tuple[str, tuple[ToolCall, ...], Usage]:
    try:
        blocks = response["output"]["message"]["content"]
        texts = [b["text"] for b in blocks if "text" in b]
        calls = tuple(
            ToolCall(
                str(b["toolUse"]["toolUseId"]),
                str(b["toolUse"]["name"]),
                dict(b["toolUse"].get("input") or {}),
            )
            for b in blocks
            if "toolUse" in b
        )
    except (KeyError, TypeError) as exc:
        raise FailedPrecondition(f"{PROVIDER}: not a Converse reply: {str(response)[:200]}") from exc
    raw = response.get("usage") or {}
    usage = Usage(
        model, int(raw.get("inputTokens", 0)), int(raw.get("outputTokens", 0)), "inputTokens" in raw
    )
    return "".join(texts), calls, usage


class BedrockChatModel:
    """The agents' chat model over Bedrock Converse."""

    def __init__(
        self,
        model: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str = "",
        timeout_s: float = 30.0,
        temperature: float = 0.0,
        client: Any = None,
    ) -> None:
        if not model.strip():
            raise ConfigurationError("bedrock: model is empty (bedrock_model)")
        self._model = model
        self._temperature = temperature
        self._client = client if client is not None else make_client(region, endpoint_url, timeout_s)

    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def model(self) -> str:
        return self._model

    def request(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> dict[str, Any]:
        """The ``converse`` arguments for these messages."""
        request: dict[str, Any] = {
            "modelId": self._model,
            "messages": to_converse_messages(messages),
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": self._temperature},
        }
        system = [{"text": m.content} for m in messages if m.role == "system"]
        if system:
            request["system"] = system
        if tools:
            request["toolConfig"] = {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t.name,
                            "description": t.description,
                            "inputSchema": {"json": dict(t.parameters)},
                        }
                    }
                    for t in tools
                ]
            }
        if schema is not None:
            request["outputConfig"] = {
                "textFormat": {
                    "type": "json_schema",
                    "structure": {"jsonSchema": {"schema": json.dumps(dict(schema)), "name": "reply"}},
                }
            }
        return request

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        request = self.request(messages, tools=tools, schema=schema, max_tokens=max_tokens)
        text, calls, usage = _reply_parts(await _converse(self._client, request), self._model)
        return ChatReply(text, calls, usage, PROVIDER)


def to_converse_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Chat messages (system ones excluded: they go to ``system``) as Converse turns."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"toolResult": {"toolUseId": m.tool_call_id, "content": [{"text": m.content}]}}
            if turns and turns[-1]["role"] == "user" and "toolResult" in turns[-1]["content"][-1]:
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": "user", "content": [block]})
            continue
        content: list[dict[str, Any]] = [{"text": m.content}] if m.content else []
        content += [
            {"toolUse": {"toolUseId": c.call_id, "name": c.name, "input": dict(c.arguments)}}
            for c in m.tool_calls
        ]
        turns.append({"role": m.role, "content": content or [{"text": ""}]})
    return turns


class BedrockGenerator:
    """Answers with ``[n]`` citations over Bedrock Converse (the shared prompt and citation parsing)."""

    def __init__(
        self,
        model: str,
        *,
        region: str = "us-east-1",
        endpoint_url: str = "",
        timeout_s: float = 30.0,
        temperature: float = 0.0,
        max_tokens: int = 512,
        client: Any = None,
    ) -> None:
        if not model.strip():
            raise ConfigurationError("bedrock: model is empty (bedrock_model)")
        if max_tokens < 1:
            raise ConfigurationError(f"bedrock: max_tokens must be at least 1, got {max_tokens}")
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._client = client if client is not None else make_client(region, endpoint_url, timeout_s)

    @property
    def name(self) -> str:
        return f"{PROVIDER}:{self._model}"

    def request(
        self, question: str, contexts: Sequence[Context], prompt: Prompt | None = None
    ) -> dict[str, Any]:
        if not question.strip():
            raise InvalidArgument("question is empty")
        system, user = messages_of(question, contexts, prompt)
        return {
            "modelId": self._model,
            "system": [{"text": system}],
            "messages": [{"role": "user", "content": [{"text": user}]}],
            "inferenceConfig": {"maxTokens": self._max_tokens, "temperature": self._temperature},
        }

    async def _reply(
        self,
        question: str,
        contexts: Sequence[Context],
        usage_sink: UsageSink | None,
        prompt: Prompt | None = None,
    ) -> tuple[str, Usage]:
        response = await _converse(self._client, self.request(question, contexts, prompt))
        text, _, usage = _reply_parts(response, self._model)
        if usage_sink is not None:
            usage_sink(usage)
        return text, usage

    async def generate(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> Generation:
        self.request(question, contexts)  # validates the question
        if not contexts:
            return abstain(self.name)
        text, usage = await self._reply(question, contexts, usage_sink, prompt)
        counts = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        return generation_of(text, contexts, self.name, counts if usage.reported else {})

    async def stream(
        self,
        question: str,
        contexts: Sequence[Context],
        *,
        usage_sink: UsageSink | None = None,
        prompt: Prompt | None = None,
    ) -> AsyncIterator[AnswerSentence]:
        self.request(question, contexts)
        if not contexts:
            yield AnswerSentence(NO_ANSWER)
            return
        text, _ = await self._reply(question, contexts, usage_sink, prompt)
        sentences = parse_answer(text, contexts)
        for sentence in sentences or [AnswerSentence(NO_ANSWER)]:
            yield sentence
