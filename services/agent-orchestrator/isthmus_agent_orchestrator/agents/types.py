"""The agent runtime's shared types: steps, budgets, usage, tools, chat models, and the Protocols the
graph nodes reach the rest of the service through (issue 15 contract: /work/wt/AGENTS-DESIGN.md).

Pure: no I/O library. Implementations live beside: ``graphs.py``/``runtime.py`` (the LangGraph graphs),
``tools/`` (registry, built-ins, approvals), ``providers/`` (chat models), ``memory/`` (conversations,
episodic memory), ``prompts.py``, ``caches.py``, ``cost.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from isthmus_core.ports.generator import AnswerSentence, Context

#: graph names: what AskRequest.graph may say
GRAPH_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,63}$"
#: session ids: 1-64 of [A-Za-z0-9._-] (never a path: stored as a column value only)
SESSION_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class StepKind(StrEnum):
    CONDENSE = "condense"
    MEMORY = "memory"
    PLAN = "plan"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    APPROVAL_WAIT = "approval_wait"
    APPROVAL_DECIDED = "approval_decided"
    CRITIQUE = "critique"
    RETRY = "retry"
    CACHE_HIT = "cache_hit"
    BUDGET = "budget"


@dataclass(frozen=True, slots=True)
class Step:
    """One thing an agent did, as the caller will see it (after the step guard: ``text`` redacted or
    withheld when the guardrail says so). ``index`` counts from 0 within a run."""

    kind: StepKind
    node: str
    text: str
    index: int = 0
    tool: str = ""
    call_id: str = ""
    arguments_json: str = ""
    ok: bool = True
    approval_id: str = ""
    sub_questions: tuple[str, ...] = ()


class RunStatus(StrEnum):
    COMPLETED = "completed"
    STOPPED = "stopped"  # a sensitive tool call rejected or expired
    BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True, slots=True)
class RunBudget:
    """Limits of one run; the first one reached stops the agents, which then answer with what they have."""

    max_steps: int = 16
    max_tokens: int = 20_000
    max_wall_s: float = 60.0
    max_cost_usd: float = 0.0  # 0 = no cost limit


@dataclass(slots=True)
class Usage:
    """LLM tokens of one model in one request; ``reported`` when the model server counted them."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.reported = self.reported or other.reported

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# ---- chat models (LLM providers: providers/) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as a model sees it: name, description and the JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    #: assistant messages: the tool calls it made; tool messages: the call answered
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True, slots=True)
class ChatReply:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    #: the provider that answered (in a fallback chain: which one)
    provider: str = ""


@runtime_checkable
class ChatModel(Protocol):
    """An LLM for the agents' own reasoning (planning, tool choice, condensing, critique). Answers to the
    caller are made by the :class:`~isthmus_core.ports.generator.Generator` (citations, streaming).

    ``schema``: the reply's ``text`` must be JSON matching it (structured output, grammar- or
    schema-constrained where the server supports it). ``tools``: the model may answer with tool calls.
    Failures raise :class:`isthmus_core.errors.Unavailable` (after the provider's retries) or
    ``DeadlineExceeded``."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
    ) -> ChatReply: ...


# ---- tools (tools/) ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave: ``ok`` false for a failure or a time-out (``text`` says why) — a step
    result the agents reason over, never an exception. ``contexts``: citable passages it found."""

    ok: bool
    text: str
    contexts: tuple[Context, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may know of the run calling it."""

    tenant_id: str
    run_id: str
    graph: str
    principals: tuple[str, ...]
    top_k: int
    #: sub-agents: how deep this run is (a graph called as a tool is depth + 1; capped)
    depth: int = 0


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    #: the arguments' model: its JSON schema is what models see; arguments are validated against it
    args_model: type[BaseModel]
    #: a person must approve each call (the run pauses until Approve/Reject)
    sensitive: bool
    timeout_s: float

    async def call(self, args: BaseModel, ctx: ToolContext) -> ToolResult: ...


# ---- services the graph nodes use ---------------------------------------------------------------------


class Planner(Protocol):
    """Splits a question into the sub-questions to retrieve for (one when it is not compound)."""

    async def plan(self, question: str, *, max_sub_questions: int = 4) -> list[str]: ...


class Condenser(Protocol):
    """Rewrites a follow-up into a standalone question from the conversation's earlier turns."""

    async def condense(self, history: Sequence[Turn], question: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Turn:
    question: str
    answer: str
    standalone: str = ""
    question_id: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Draft:
    """A synthesized answer not yet shown (reflect's critic reads it before the output guardrail)."""

    sentences: tuple[AnswerSentence, ...]
    contexts: tuple[Context, ...]


@dataclass(frozen=True, slots=True)
class Critique:
    grounded: bool
    reason: str
    #: a better query to retrieve with, when the critic asks for a retry
    retry_query: str = ""


# ---- ports of the run's services (implemented in tools/, memory/, prompts.py, caches.py, cost.py) -------


class ToolRegistry(Protocol):
    """A tenant's tools. ``available`` filters by the graph's allow-list and the current caller's
    permission (``isthmus_core.auth.context.current_access``); ``invoke`` validates the arguments against
    the tool's model, applies its time-out and turns every failure into ``ToolResult(ok=False)``."""

    def available(self, tenant_id: str, graph: str) -> list[Tool]: ...

    def get(self, tenant_id: str, graph: str, name: str) -> Tool | None: ...

    async def invoke(self, tool: Tool, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult: ...


ApprovalOutcome = Literal["approved", "rejected", "expired"]


@dataclass(frozen=True, slots=True)
class Approval:
    approval_id: str
    tenant_id: str
    run_id: str
    graph: str
    tool: str
    arguments_json: str
    requested_by: str
    state: Literal["pending", "approved", "rejected", "expired"]
    requested_at_ms: int
    expires_at_ms: int
    decided_by: str = ""
    reason: str = ""
    decided_at_ms: int = 0


class ApprovalBook(Protocol):
    """Pending approvals of sensitive tool calls, from the bus (every replica sees every request and
    decision) and persisted (a run resumed after a restart finds its decision)."""

    async def request(
        self, tenant_id: str, run_id: str, graph: str, tool: str, arguments_json: str, requested_by: str
    ) -> Approval:
        """Record and publish a request (``ApprovalRequested``); idempotent per (run_id, tool call): the
        same pending approval is returned when a resumed run asks again."""

    async def wait(self, approval_id: str) -> Approval:
        """Until it is decided or expires (then ``state == "expired"``, published as decided)."""

    def list_pending(self, tenant_id: str) -> list[Approval]: ...

    async def decide(
        self, tenant_id: str, approval_id: str, approve: bool, decided_by: str, reason: str
    ) -> Approval:
        """``NotFound`` for an unknown id (or another tenant's); ``FailedPrecondition`` when decided."""


class ConversationStore(Protocol):
    """Conversations by (tenant, principal, session_id): each principal's session ids are its own, so
    nobody reads, extends or learns of another principal's session. An unknown session has no turns."""

    async def history(
        self, tenant_id: str, session_id: str, principal: str, limit: int = 6
    ) -> list[Turn]: ...

    async def append(self, tenant_id: str, session_id: str, principal: str, turn: Turn) -> None: ...


class EpisodicMemory(Protocol):
    """Opt-in (per tenant): earlier questions and answers of a principal, found by embedding similarity."""

    def enabled(self, tenant_id: str) -> bool: ...

    async def recall(self, tenant_id: str, principal: str, question: str, k: int = 3) -> list[Turn]: ...

    async def remember(self, tenant_id: str, principal: str, turn: Turn) -> None: ...


@dataclass(frozen=True, slots=True)
class PromptChoice:
    name: str
    version: str  # "" = the built-in template
    template: str


class PromptBook(Protocol):
    """Versioned prompt templates per tenant; ``choose`` picks a version by the tenant's A/B split,
    deterministically from ``key`` (the question id), so a request's version is reproducible."""

    def choose(self, tenant_id: str, name: str, key: str) -> PromptChoice: ...


@dataclass(frozen=True, slots=True)
class CacheKey:
    tenant_id: str
    graph: str
    question: str  # the standalone question
    principals: tuple[str, ...]
    top_k: int


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    sentences: tuple[AnswerSentence, ...]
    contexts: tuple[Context, ...]
    message: str
    steps: tuple[Step, ...]
    generator: str
    prompt_version: str
    #: "exact" or "semantic" (similarity of the questions' embeddings above the threshold)
    match: Literal["exact", "semantic"] = "exact"
    similarity: float = 1.0


class ResponseCache(Protocol):
    """Answers per tenant: exact (normalized question) then semantic. Cleared for a tenant when its
    documents change (chunks indexed, erasure, tenant deleted). Only unblocked, completed answers."""

    async def get(self, key: CacheKey) -> CachedAnswer | None: ...

    async def put(self, key: CacheKey, answer: CachedAnswer) -> None: ...

    def invalidate(self, tenant_id: str) -> None: ...


class CostMeter(Protocol):
    """Prices usage (settings' price table), counts it in metrics and publishes ``UsageRecorded``."""

    def cost(self, usage: Usage) -> float: ...

    async def record(
        self, tenant_id: str, question_id: str, graph: str, usages: Sequence[Usage], principal: str
    ) -> float: ...
