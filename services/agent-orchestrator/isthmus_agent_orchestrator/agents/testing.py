"""Deterministic in-memory implementations of the agents' Protocols (:mod:`.types`): for tests (of every
slice) and as the orchestrator's defaults when nothing else is wired (a search-only tool registry, no
memory, no cache, no cost). Pure: no I/O library; nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from isthmus_agent_orchestrator.agents.types import (
    Approval,
    CachedAnswer,
    CacheKey,
    ChatMessage,
    ChatReply,
    PromptChoice,
    Tool,
    ToolCall,
    ToolContext,
    ToolResult,
    ToolSpec,
    Turn,
    Usage,
)
from isthmus_core.errors import FailedPrecondition, NotFound
from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.ports.guard import Action, Finding, Verdict

if TYPE_CHECKING:
    from isthmus_agent_orchestrator.pipeline import Searcher

# ---- tools ---------------------------------------------------------------------------------------------


class SearchArgs(BaseModel):
    query: str = Field(min_length=1, max_length=2000, description="what to search the documents for")
    top_k: int = Field(0, ge=0, le=50, description="passages wanted; 0 = the request's top_k")


class FetchArgs(BaseModel):
    url: str = Field(min_length=1, max_length=2000)


def describe_hits(contexts: Sequence[Context]) -> str:
    """A tool result's text for people and models: the passages found, one line each."""
    if not contexts:
        return "no passages found"
    lines = [f"{len(contexts)} passages:"]
    for i, c in enumerate(contexts, 1):
        snippet = " ".join(c.text.split())[:160]
        lines.append(f"[{i}] {c.title or c.source_name or c.document_id}: {snippet}")
    return "\n".join(lines)


@dataclasses.dataclass
class FunctionTool:
    """A tool made of an async function ``(args, ctx) -> ToolResult``."""

    name: str
    description: str
    args_model: type[BaseModel]
    fn: Callable[[Any, ToolContext], Awaitable[ToolResult]]
    sensitive: bool = False
    timeout_s: float = 10.0

    async def call(self, args: BaseModel, ctx: ToolContext) -> ToolResult:
        return await self.fn(args, ctx)


def search_tool(searcher: Searcher, timeout_s: float = 10.0) -> FunctionTool:
    """The ``search`` tool over a :class:`~isthmus_agent_orchestrator.pipeline.Searcher`."""

    async def search(args: SearchArgs, ctx: ToolContext) -> ToolResult:
        hits = await searcher.search(ctx.tenant_id, args.query, args.top_k or ctx.top_k, ctx.principals)
        return ToolResult(True, describe_hits(hits), tuple(hits))

    return FunctionTool(
        "search",
        "Search the tenant's documents; returns passages to cite.",
        SearchArgs,
        search,
        False,
        timeout_s,
    )


def fetch_tool(pages: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> FunctionTool:
    """A sensitive ``fetch`` tool answering from ``pages`` (url -> text): a stand-in for ``http_get``."""
    known = dict(pages or {})

    async def fetch(args: FetchArgs, ctx: ToolContext) -> ToolResult:
        if args.url not in known:
            return ToolResult(False, f"no page at {args.url}")
        return ToolResult(True, known[args.url])

    return FunctionTool("fetch", "Fetch a web page (needs an approval).", FetchArgs, fetch, True, timeout_s)


class FakeToolRegistry:
    """A :class:`~.types.ToolRegistry` of the given tools (every graph, every caller); ``invoke``
    validates, applies the tool's time-out and turns every failure into ``ToolResult(ok=False)``, as the
    real registry does. ``calls`` records (tool, arguments) in order."""

    def __init__(self, *tools: Tool) -> None:
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    def over(cls, searcher: Searcher, *more: Tool) -> FakeToolRegistry:
        return cls(search_tool(searcher), *more)

    def available(self, tenant_id: str, graph: str) -> list[Tool]:
        return list(self.tools.values())

    def get(self, tenant_id: str, graph: str, name: str) -> Tool | None:
        return self.tools.get(name)

    async def invoke(self, tool: Tool, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        self.calls.append((tool.name, dict(arguments)))
        try:
            args = tool.args_model.model_validate(dict(arguments))
        except ValidationError as e:
            return ToolResult(False, f"invalid arguments for {tool.name}: {e.errors()[0]['msg']}")
        try:
            async with asyncio.timeout(tool.timeout_s):
                return await tool.call(args, ctx)
        except TimeoutError:
            return ToolResult(False, f"{tool.name} timed out after {tool.timeout_s:g} s")
        except Exception as e:
            return ToolResult(False, f"{tool.name} failed: {e}")


def tool_spec(tool: Tool) -> ToolSpec:
    """The tool as a model sees it."""
    return ToolSpec(tool.name, tool.description, tool.args_model.model_json_schema())


# ---- approvals -------------------------------------------------------------------------------------------


class InMemoryApprovalBook:
    """Approvals in a dict; ``wait`` returns when ``decide`` (or ``expire``) is called. Idempotent per
    (run, tool, arguments): a resumed run asking again gets the same approval."""

    def __init__(self, timeout_s: float = 3600.0) -> None:
        self.timeout_s = timeout_s
        self.approvals: dict[str, Approval] = {}
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, approval_id: str) -> asyncio.Event:
        return self._events.setdefault(approval_id, asyncio.Event())

    async def request(
        self, tenant_id: str, run_id: str, graph: str, tool: str, arguments_json: str, requested_by: str
    ) -> Approval:
        for a in self.approvals.values():
            if (a.tenant_id, a.run_id, a.tool, a.arguments_json) == (tenant_id, run_id, tool, arguments_json):
                return a
        now = int(time.time() * 1000)
        a = Approval(
            uuid.uuid4().hex,
            tenant_id,
            run_id,
            graph,
            tool,
            arguments_json,
            requested_by,
            "pending",
            now,
            now + int(self.timeout_s * 1000),
        )
        self.approvals[a.approval_id] = a
        return a

    async def wait(self, approval_id: str) -> Approval:
        a = self.approvals.get(approval_id)
        if a is None:
            raise NotFound(f"no approval {approval_id}")
        if a.state == "pending":
            await self._event(approval_id).wait()
        return self.approvals[approval_id]

    def list_pending(self, tenant_id: str) -> list[Approval]:
        return [a for a in self.approvals.values() if a.tenant_id == tenant_id and a.state == "pending"]

    async def decide(
        self, tenant_id: str, approval_id: str, approve: bool, decided_by: str, reason: str
    ) -> Approval:
        return self._settle(tenant_id, approval_id, "approved" if approve else "rejected", decided_by, reason)

    def expire(self, approval_id: str) -> Approval:
        a = self.approvals[approval_id]
        return self._settle(a.tenant_id, approval_id, "expired", "", "expired")

    def _settle(self, tenant_id: str, approval_id: str, state: Any, decided_by: str, reason: str) -> Approval:
        a = self.approvals.get(approval_id)
        if a is None or a.tenant_id != tenant_id:
            raise NotFound(f"no approval {approval_id}")
        if a.state != "pending":
            raise FailedPrecondition(f"approval {approval_id} is already {a.state}")
        a = dataclasses.replace(
            a, state=state, decided_by=decided_by, reason=reason, decided_at_ms=int(time.time() * 1000)
        )
        self.approvals[approval_id] = a
        self._event(approval_id).set()
        return a


# ---- memory, prompts, cache, cost -------------------------------------------------------------------------


class InMemoryConversations:
    """Sessions in a dict, each principal's session ids its own (as the SQLite store keeps them)."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str, str], list[Turn]] = {}

    async def history(self, tenant_id: str, session_id: str, principal: str, limit: int = 6) -> list[Turn]:
        return self.sessions.get((tenant_id, principal, session_id), [])[-limit:]

    async def append(self, tenant_id: str, session_id: str, principal: str, turn: Turn) -> None:
        self.sessions.setdefault((tenant_id, principal, session_id), []).append(turn)


class KeepQuestion:
    """A condenser that leaves every question as it is (no conversation memory)."""

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        return question


class FollowUpCondenser:
    """A deterministic condenser: a follow-up is suffixed with the previous standalone question."""

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        if not history:
            return question
        last = history[-1]
        return f"{question} ({last.standalone or last.question})"


class NoEpisodicMemory:
    def enabled(self, tenant_id: str) -> bool:
        return False

    async def recall(self, tenant_id: str, principal: str, question: str, k: int = 3) -> list[Turn]:
        return []

    async def remember(self, tenant_id: str, principal: str, turn: Turn) -> None:
        return None


class ListEpisodicMemory:
    """Episodic memory of every tenant: recalls a principal's latest turns (no similarity)."""

    def __init__(self) -> None:
        self.turns: dict[tuple[str, str], list[Turn]] = {}

    def enabled(self, tenant_id: str) -> bool:
        return True

    async def recall(self, tenant_id: str, principal: str, question: str, k: int = 3) -> list[Turn]:
        return self.turns.get((tenant_id, principal), [])[-k:]

    async def remember(self, tenant_id: str, principal: str, turn: Turn) -> None:
        self.turns.setdefault((tenant_id, principal), []).append(turn)


class FixedPrompts:
    """Every prompt at one version (``""`` = the built-in template)."""

    def __init__(self, version: str = "", template: str = "") -> None:
        self.version = version
        self.template = template

    def choose(self, tenant_id: str, name: str, key: str) -> PromptChoice:
        return PromptChoice(name, self.version, self.template)


class NoCache:
    async def get(self, key: CacheKey) -> CachedAnswer | None:
        return None

    async def put(self, key: CacheKey, answer: CachedAnswer) -> None:
        return None

    def invalidate(self, tenant_id: str) -> None:
        return None


class DictCache:
    """An exact-match response cache in a dict (no TTL, no semantic match)."""

    def __init__(self) -> None:
        self.entries: dict[CacheKey, CachedAnswer] = {}

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        return self.entries.get(key)

    async def put(self, key: CacheKey, answer: CachedAnswer) -> None:
        self.entries[key] = answer

    def invalidate(self, tenant_id: str) -> None:
        for key in [k for k in self.entries if k.tenant_id == tenant_id]:
            del self.entries[key]


class ZeroCost:
    def cost(self, usage: Usage) -> float:
        return 0.0

    async def record(
        self, tenant_id: str, question_id: str, graph: str, usages: Sequence[Usage], principal: str
    ) -> float:
        return 0.0


class ListCostMeter:
    """Prices every token at ``usd_per_token`` and records each ``record`` call."""

    def __init__(self, usd_per_token: float = 0.0) -> None:
        self.usd_per_token = usd_per_token
        self.records: list[tuple[str, str, str, list[Usage], str]] = []

    def cost(self, usage: Usage) -> float:
        return usage.tokens * self.usd_per_token

    async def record(
        self, tenant_id: str, question_id: str, graph: str, usages: Sequence[Usage], principal: str
    ) -> float:
        self.records.append((tenant_id, question_id, graph, list(usages), principal))
        return sum(self.cost(u) for u in usages)


# ---- chat model --------------------------------------------------------------------------------------------


_CALL_IDS = itertools.count(1)


def tool_call_reply(name: str, arguments: Mapping[str, Any], tokens: int = 10) -> ChatReply:
    """A reply calling one tool (for :class:`ScriptedChatModel`)."""
    call = ToolCall(f"call_{next(_CALL_IDS)}", name, dict(arguments))
    return ChatReply("", (call,), Usage("scripted-1", tokens, tokens, True), "scripted")


class ScriptedChatModel:
    """A :class:`~.types.ChatModel` answering with the given replies in order (then a final text reply);
    ``seen`` records every request's messages."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, *replies: ChatReply) -> None:
        self.replies = list(replies)
        self.seen: list[list[ChatMessage]] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply:
        self.seen.append(list(messages))
        if self.replies:
            return self.replies.pop(0)
        return ChatReply(json.dumps({"done": True}) if schema else "done", (), Usage(self.model, 5, 1, True))


# ---- retrieval and guardrail stand-ins ------------------------------------------------------------------


class KeywordSearcher:
    """A :class:`~isthmus_agent_orchestrator.pipeline.Searcher` over fixed passages: ranked by how many
    of the query's words (lowercased, 3+ letters; a repeated one again) each contains, ties in the given
    order; passages sharing no word are not found. ``queries`` records every query."""

    def __init__(self, contexts: Sequence[Context]) -> None:
        self.contexts = list(contexts)
        self.queries: list[str] = []

    async def search(
        self, tenant_id: str, query: str, top_k: int, principals: Sequence[str]
    ) -> list[Context]:
        self.queries.append(query)
        words = re.findall(r"\w{3,}", query.lower())  # a repeated word counts again
        scored = []
        for i, c in enumerate(self.contexts):
            own = set(re.findall(r"\w{3,}", c.text.lower()))
            scored.append((sum(w in own for w in words), i))
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
        return [self.contexts[i] for _, i in ranked[:top_k]]


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


class RuleOutputCheck:
    def __init__(self, owner: RuleGuard, contexts: Sequence[Context]) -> None:
        self.owner = owner
        self.contexts = list(contexts)
        self.checked: list[AnswerSentence] = []
        self.closed = False

    async def check(self, sentence: AnswerSentence) -> Verdict:
        self.checked.append(sentence)
        return self.owner.verdict(sentence.text)

    async def aclose(self) -> None:
        self.closed = True


class RuleGuard:
    """A :class:`~isthmus_core.ports.guard_client.GuardClient` by rules, for tests: a text containing one
    of ``block`` (case-insensitive) is blocked, e-mail addresses are redacted, the rest allowed — input
    and output alike. ``inputs`` records (text, subject) of every input check; ``sessions`` every output
    check."""

    def __init__(self, block: Sequence[str] = ()) -> None:
        self.block = [b.lower() for b in block]
        self.inputs: list[tuple[str, str]] = []
        #: the origin of every input check, in order ("user" or "document")
        self.origins: list[str] = []
        self.sessions: list[RuleOutputCheck] = []

    def verdict(self, text: str) -> Verdict:
        if any(b in text.lower() for b in self.block):
            return Verdict(Action.BLOCK, (Finding("policy.denied_term", "a denied term"),))
        found = tuple(
            Finding("pii.EMAIL_ADDRESS", "e-mail address", m.start(), m.end()) for m in _EMAIL.finditer(text)
        )
        if found:
            return Verdict(Action.REDACT, found, _EMAIL.sub("<EMAIL_ADDRESS>", text))
        return Verdict(Action.ALLOW, (), text)

    async def check_input(self, tenant_id: str, text: str, subject_id: str, origin: str = "user") -> Verdict:
        self.inputs.append((text, subject_id))
        self.origins.append(origin)
        return self.verdict(text)

    async def open_output_check(
        self, tenant_id: str, subject_id: str, contexts: Sequence[Context]
    ) -> RuleOutputCheck:
        session = RuleOutputCheck(self, contexts)
        self.sessions.append(session)
        return session
