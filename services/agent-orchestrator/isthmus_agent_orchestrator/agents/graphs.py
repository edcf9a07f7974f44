"""The agent graphs (LangGraph ``StateGraph``\\ s): ``rag``, ``react``, ``plan-execute`` and ``reflect``.

Nodes (the names steps and ``ListGraphs`` show):

- ``planner`` — plan-execute: the :class:`~.types.Planner` splits the question into sub-questions;
  react: the chat model (or, without one, a fixed policy: search the question, then finish) picks the
  next tool calls or finishes.
- ``retriever`` — the ``search`` tool for the query (rag, reflect) or for each sub-question
  (plan-execute, whose ranked lists are merged by :func:`reciprocal_rank_fusion`).
- ``tool_caller`` — react: runs the next tool call the model asked for; a sensitive tool waits for a
  person's approval (:func:`langgraph.types.interrupt`; the runtime resumes it).
- ``synthesizer`` — reflect: a draft answer (``Generator.generate``) the critic reads before anyone else.
- ``critic`` — reflect: grounded, or retry the retrieval with the critic's query (up to
  ``reflect_max_retries`` times).

The state is a JSON-serialisable dict (:class:`AgentState`: checkpointed for every graph but ``rag``);
what a node needs of the service (tools, models, the step guard, the budgets) comes in the
:class:`RunContext` of the run, never checkpointed. Every step a node takes goes through
``RunContext.emit`` (the step guard, then the caller); a tool result the guardrail blocks is withheld
from the agents too. LangGraph is imported when a graph is built, never at import time.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final, TypedDict

from isthmus_agent_orchestrator.agents.critic import Critic, HeuristicCritic
from isthmus_agent_orchestrator.agents.planner import split_question
from isthmus_agent_orchestrator.agents.step_guard import WITHHELD, GuardedStep
from isthmus_agent_orchestrator.agents.types import (
    ApprovalBook,
    ChatMessage,
    ChatModel,
    Draft,
    Planner,
    RunStatus,
    Step,
    StepKind,
    ToolCall,
    ToolContext,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    Usage,
)
from isthmus_agent_orchestrator.budget import estimate_tokens
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context, Generator

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

#: the k of reciprocal-rank fusion (the usual 60: ranks 1 and 2 weigh nearly alike)
RRF_K: Final = 60
#: what a tool result's step (and the chat model) sees of its text at most
RESULT_CHARS: Final = 2000
REACT_SYSTEM: Final = (
    "You answer questions from the tenant's documents. Call the tools you need (search finds passages "
    "to cite); when the passages found are enough, reply without a tool call."
)


@dataclasses.dataclass(frozen=True, slots=True)
class GraphInfo:
    """A graph as ``ListGraphs`` shows it: nodes, and edges ``from->to`` (``from-?>to`` conditional)."""

    name: str
    description: str
    nodes: tuple[str, ...]
    edges: tuple[str, ...]
    #: runs are checkpointed (resumable after a restart)
    durable: bool = True


GRAPHS: Final[Mapping[str, GraphInfo]] = {
    "rag": GraphInfo(
        "rag",
        "Retrieve passages for the question, then answer from them (the plain chain).",
        ("retriever",),
        ("__start__->retriever", "retriever->__end__"),
        durable=False,
    ),
    "react": GraphInfo(
        "react",
        "A tool loop: the model picks tools (search, calculator, sub-agents, …) until it has enough; "
        "sensitive tools wait for an approval. Without a chat model: search the question once.",
        ("planner", "tool_caller"),
        (
            "__start__->planner",
            "planner-?>tool_caller",
            "planner-?>__end__",
            "tool_caller-?>tool_caller",
            "tool_caller-?>planner",
            "tool_caller-?>__end__",
        ),
    ),
    "plan-execute": GraphInfo(
        "plan-execute",
        "Split a compound question into sub-questions, retrieve for each, merge the passages by "
        "reciprocal-rank fusion, then answer.",
        ("planner", "retriever"),
        ("__start__->planner", "planner->retriever", "retriever->__end__"),
    ),
    "reflect": GraphInfo(
        "reflect",
        "Retrieve, draft an answer, let a critic check its grounding; retry the retrieval with the "
        "critic's query when it is not grounded.",
        ("retriever", "synthesizer", "critic"),
        (
            "__start__->retriever",
            "retriever->synthesizer",
            "synthesizer->critic",
            "critic-?>retriever",
            "critic-?>__end__",
        ),
    ),
}


class AgentState(TypedDict, total=False):
    """A run's state (JSON values only: it is checkpointed)."""

    tenant_id: str
    question: str
    principals: list[str]
    graph: str
    subject: str
    run_id: str
    top_k: int
    #: what retrieval looks for now (reflect: the critic's retry query)
    query: str
    sub_questions: list[str]
    #: the passages gathered, best first (serialised :class:`Context`)
    contexts: list[dict[str, Any]]
    #: react: every search result's ranked list, fused into ``contexts``
    hits: list[list[dict[str, Any]]]
    draft: dict[str, Any] | None
    retries: int
    #: react: the conversation with the chat model, and the tool calls still to run
    messages: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    rounds: int
    status: str
    usages: Annotated[list[dict[str, Any]], operator.add]
    scratchpad: dict[str, Any]


@dataclasses.dataclass
class Services:
    """What the nodes use of the service (the same for every run of a runtime)."""

    tools: ToolRegistry
    approvals: ApprovalBook
    generator: Generator
    planner: Planner
    critic: Critic
    chat: ChatModel | None = None
    max_sub_questions: int = 4
    reflect_max_retries: int = 1
    max_tool_rounds: int = 6


@dataclasses.dataclass
class RunContext:
    """One run's services and callbacks (LangGraph's run context: not checkpointed). The nodes record
    what they gathered here too, so a run stopped mid-way (a budget) still answers from it."""

    services: Services
    tool_ctx: ToolContext
    subject: str
    #: the step guard, the step budget, then the caller (raises when a budget runs out)
    emit: Callable[[Step], Awaitable[GuardedStep]]
    #: counts LLM usage against the budgets (raises when one runs out)
    add_usage: Callable[[Usage], None]
    #: sub-agents may not ask for approvals (nothing would resume them)
    allow_approvals: bool = True
    query: str = ""
    contexts: list[Context] = dataclasses.field(default_factory=list)
    sub_questions: list[str] = dataclasses.field(default_factory=list)
    draft: Draft | None = None
    status: RunStatus = RunStatus.COMPLETED
    usages: list[Usage] = dataclasses.field(default_factory=list)

    def seed(self, state: Mapping[str, Any]) -> None:
        """Take over what a checkpointed run had gathered (a resumed run)."""
        self.query = state.get("query", "")
        self.contexts = contexts_of(state.get("contexts", []))
        self.sub_questions = list(state.get("sub_questions", []))
        self.draft = draft_of(state.get("draft"))
        self.status = RunStatus(state.get("status", RunStatus.COMPLETED))
        self.usages = [Usage(**u) for u in state.get("usages", [])]


# ---- values <-> JSON ----------------------------------------------------------------------------------


_CONTEXT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Context))


def context_json(c: Context) -> dict[str, Any]:
    # its fields are plain values: a shallow copy (dataclasses.asdict deep-copies, 5x slower)
    return {name: getattr(c, name) for name in _CONTEXT_FIELDS}


def contexts_of(items: Sequence[Mapping[str, Any]]) -> list[Context]:
    return [Context(**item) for item in items]


def draft_json(d: Draft) -> dict[str, Any]:
    return {
        "sentences": [
            {"text": s.text, "citations": [dataclasses.asdict(c) for c in s.citations]} for s in d.sentences
        ],
        "contexts": [context_json(c) for c in d.contexts],
    }


def draft_of(data: Mapping[str, Any] | None) -> Draft | None:
    if not data:
        return None
    return Draft(
        tuple(
            AnswerSentence(s["text"], tuple(CitedSpan(**c) for c in s["citations"]))
            for s in data["sentences"]
        ),
        tuple(contexts_of(data["contexts"])),
    )


def _message_json(m: ChatMessage) -> dict[str, Any]:
    return {
        "role": m.role,
        "content": m.content,
        "tool_calls": [
            {"call_id": c.call_id, "name": c.name, "arguments": dict(c.arguments)} for c in m.tool_calls
        ],
        "tool_call_id": m.tool_call_id,
    }


def _message_of(d: Mapping[str, Any]) -> ChatMessage:
    return ChatMessage(
        d["role"], d["content"], tuple(ToolCall(**c) for c in d["tool_calls"]), d.get("tool_call_id", "")
    )


def reciprocal_rank_fusion(lists: Sequence[Sequence[Context]], k: int = RRF_K) -> list[Context]:
    """The passages of ``lists`` (each best first) by summed ``1/(k + rank)``, each once (by chunk id);
    ties by rank, then by list: the lists' first passages, then their second ones, … (their order)."""
    score: dict[str, float] = {}
    first: dict[str, tuple[int, int]] = {}
    found: dict[str, Context] = {}
    for li, hits in enumerate(lists):
        for rank, c in enumerate(hits, 1):
            score[c.chunk_id] = score.get(c.chunk_id, 0.0) + 1.0 / (k + rank)
            first.setdefault(c.chunk_id, (rank, li))
            found.setdefault(c.chunk_id, c)
    return [found[cid] for cid in sorted(found, key=lambda cid: (-score[cid], first[cid]))]


# ---- tool calls -----------------------------------------------------------------------------------------


async def call_tool(
    ctx: RunContext, node: str, name: str, arguments: Mapping[str, Any], call_id: str, *, show: bool = True
) -> tuple[ToolResult, bool]:
    """Run one tool call as a node does; ``(result, stopped)``: stopped when its approval was refused.

    Sensitive tools: the approval is requested (idempotent: a resumed node asks again and gets the same
    one) and the run pauses (``interrupt``) BEFORE anything is shown, so a resumed node shows each step
    once. ``show``: steps for the call and its result (rag takes none)."""
    services = ctx.services
    tc = ctx.tool_ctx
    args_json = json.dumps(dict(arguments), sort_keys=True, ensure_ascii=False)
    tool = services.tools.get(tc.tenant_id, tc.graph, name)
    if tool is None:
        result = ToolResult(False, f"there is no tool {name!r} for this graph")
        if show:
            await ctx.emit(
                Step(StepKind.TOOL_RESULT, node, result.text, tool=name, call_id=call_id, ok=False)
            )
        return result, False
    if tool.sensitive:
        if not ctx.allow_approvals:
            return ToolResult(False, f"{name} needs an approval, which a sub-agent cannot ask for"), False
        from langgraph.types import interrupt

        approval = await services.approvals.request(
            tc.tenant_id, tc.run_id, tc.graph, name, args_json, ctx.subject
        )
        decision = interrupt(
            {
                "approval_id": approval.approval_id,
                "tool": name,
                "call_id": call_id,
                "arguments_json": args_json,
            }
        )
        if decision.get("state") != "approved":
            by = decision.get("decided_by") or "nobody"
            result = ToolResult(
                False, f"{decision.get('state', 'rejected')} by {by}: {decision.get('reason', '')}"
            )
            if show:
                await ctx.emit(
                    Step(StepKind.TOOL_RESULT, node, result.text, tool=name, call_id=call_id, ok=False)
                )
            return result, True
    if show:
        shown = await ctx.emit(
            Step(
                StepKind.TOOL_CALL,
                node,
                f"calling {name}",
                tool=name,
                call_id=call_id,
                arguments_json=args_json,
            )
        )
        if shown.blocked:  # arguments the guardrail stops are sent nowhere
            result = ToolResult(False, WITHHELD)
            await ctx.emit(
                Step(StepKind.TOOL_RESULT, node, result.text, tool=name, call_id=call_id, ok=False)
            )
            return result, False
    try:
        result = await services.tools.invoke(tool, arguments, tc)
    except Exception as e:  # the registry should not raise; a failure is a step result
        result = ToolResult(False, f"{name} failed: {e}")
    for raw in result.data.get("usages", ()) if result.ok else ():  # a sub-agent's LLM usage is the run's
        usage = Usage(**raw)
        ctx.usages.append(usage)
        ctx.add_usage(usage)
    if not show:
        return result, False
    shown = await ctx.emit(
        Step(StepKind.TOOL_RESULT, node, result.text[:RESULT_CHARS], tool=name, call_id=call_id, ok=result.ok)
    )
    if shown.blocked:  # withheld from the agents too: neither its text nor its passages go on
        return ToolResult(False, WITHHELD), False
    if shown.step.text != result.text[:RESULT_CHARS]:
        return dataclasses.replace(result, text=shown.step.text), False
    return result, False


def _ctx(runtime: Runtime[RunContext]) -> RunContext:
    return runtime.context


# ---- nodes ----------------------------------------------------------------------------------------------


async def retriever(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = _ctx(runtime)
    graph = state["graph"]
    show = graph != "rag"
    if graph == "plan-execute":
        queries = state.get("sub_questions") or [state["question"]]
    else:
        queries = [state.get("query") or state["question"]]
    lists: list[list[Context]] = []
    for i, q in enumerate(queries):
        result, _ = await call_tool(ctx, "retriever", "search", {"query": q}, f"search_{i}", show=show)
        lists.append(list(result.contexts) if result.ok else [])
    if graph == "plan-execute":
        contexts = reciprocal_rank_fusion(lists)
    elif graph == "reflect" and state.get("retries", 0):  # a retry: its passages first, the earlier ones kept
        contexts = reciprocal_rank_fusion([lists[0], contexts_of(state.get("contexts", []))])[
            : state["top_k"]
        ]
    else:
        contexts = lists[0]
    ctx.contexts = contexts
    return {"contexts": [context_json(c) for c in contexts]}


async def planner(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """plan-execute: the sub-questions (the plan step's text as the guardrail let it through)."""
    ctx = _ctx(runtime)
    question = state["question"]
    cap = ctx.services.max_sub_questions
    try:
        planned = await ctx.services.planner.plan(question, max_sub_questions=cap)
    except Exception:  # an LLM planner that failed (after its retries): the deterministic plan
        planned = split_question(question, cap)
    subs = [s.strip() for s in planned]
    subs = [s for s in subs if s][: ctx.services.max_sub_questions] or [question]
    shown = await ctx.emit(Step(StepKind.PLAN, "planner", "\n".join(subs), sub_questions=tuple(subs)))
    if shown.blocked or not shown.step.sub_questions:
        subs = [question]  # the plan was withheld: retrieve for the question itself
    else:
        subs = list(shown.step.sub_questions)
    ctx.sub_questions = subs
    return {"sub_questions": subs}


def _tool_specs(ctx: RunContext) -> list[ToolSpec]:
    tc = ctx.tool_ctx
    return [
        ToolSpec(t.name, t.description, t.args_model.model_json_schema())
        for t in ctx.services.tools.available(tc.tenant_id, tc.graph)
    ]


async def react_planner(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """react: the next tool calls (the chat model's, or the fixed policy's), or none (finish)."""
    ctx = _ctx(runtime)
    rounds = state.get("rounds", 0)
    question = state["question"]
    if rounds >= ctx.services.max_tool_rounds:
        return {"pending": [], "rounds": rounds}
    chat = ctx.services.chat
    if chat is None:
        pending = (
            [{"call_id": "search_0", "name": "search", "arguments": {"query": question}}]
            if rounds == 0
            else []
        )
        return {"pending": pending, "rounds": rounds + 1}
    messages = [_message_of(m) for m in state.get("messages", [])]
    if not messages:
        messages = [ChatMessage("system", REACT_SYSTEM)]
        memory = state.get("scratchpad", {}).get("memory")
        if memory:  # episodic memory, as the step guard let it through
            earlier = f"Earlier questions of this user and their answers:\n{memory}"
            messages.append(ChatMessage("system", earlier))
        messages.append(ChatMessage("user", question))
    reply = await chat.complete(messages, tools=_tool_specs(ctx))
    usage = reply.usage if reply.usage.tokens else Usage(chat.model, 0, estimate_tokens(reply.text))
    ctx.usages.append(usage)
    ctx.add_usage(usage)
    messages.append(ChatMessage("assistant", reply.text, reply.tool_calls))
    pending = [
        {"call_id": c.call_id or f"call_{rounds}_{i}", "name": c.name, "arguments": dict(c.arguments)}
        for i, c in enumerate(reply.tool_calls)
    ]
    return {
        "messages": [_message_json(m) for m in messages],
        "pending": pending,
        "rounds": rounds + 1,
        "usages": [dataclasses.asdict(usage)],
    }


async def tool_caller(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """react: runs the first pending call (one per visit: a resumed node repeats no earlier call)."""
    ctx = _ctx(runtime)
    call, *rest = state["pending"]
    result, stopped = await call_tool(ctx, "tool_caller", call["name"], call["arguments"], call["call_id"])
    hits = [*state.get("hits", [])]
    if result.contexts:
        hits.append([context_json(c) for c in result.contexts])
    contexts = reciprocal_rank_fusion([contexts_of(h) for h in hits])
    ctx.contexts = contexts
    update: dict[str, Any] = {
        "pending": [] if stopped else rest,
        "hits": hits,
        "contexts": [context_json(c) for c in contexts],
    }
    if state.get("messages"):
        text = result.text[:RESULT_CHARS] if result.ok else f"error: {result.text[:RESULT_CHARS]}"
        update["messages"] = [
            *state["messages"],
            _message_json(ChatMessage("tool", text, tool_call_id=call["call_id"])),
        ]
    if stopped:
        ctx.status = RunStatus.STOPPED
        update["status"] = RunStatus.STOPPED.value
    return update


def _generation_usage(model: str, raw: Mapping[str, int], question: str, draft: Draft) -> Usage:
    if raw.get("prompt_tokens") or raw.get("completion_tokens"):
        return Usage(model, raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0), True)
    prompt = estimate_tokens(question) + sum(estimate_tokens(c.text) for c in draft.contexts)
    return Usage(model, prompt, sum(estimate_tokens(s.text) for s in draft.sentences))


async def synthesizer(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """reflect: a draft over the passages (read by the critic, then by the output guardrail)."""
    ctx = _ctx(runtime)
    contexts = contexts_of(state.get("contexts", []))
    generation = await ctx.services.generator.generate(state["question"], contexts)
    draft = Draft(generation.sentences, tuple(contexts))
    ctx.draft = draft
    usage = _generation_usage(ctx.services.generator.name, generation.usage, state["question"], draft)
    ctx.usages.append(usage)
    ctx.add_usage(usage)
    # stamped with the query it was made for: the critic's edge retries when the query moved on
    stamped = {**draft_json(draft), "query": state.get("query") or state["question"]}
    return {"draft": stamped, "usages": [dataclasses.asdict(usage)]}


async def critic(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = _ctx(runtime)
    draft = draft_of(state.get("draft"))
    assert draft is not None
    try:
        critique = await ctx.services.critic.critique(state["question"], draft)
    except Exception:  # an LLM critic that failed (after its retries): the deterministic one
        critique = HeuristicCritic().judge(state["question"], draft)
    verdict = "grounded" if critique.grounded else "not grounded"
    await ctx.emit(Step(StepKind.CRITIQUE, "critic", f"{verdict}: {critique.reason}", ok=critique.grounded))
    retries = state.get("retries", 0)
    query = state.get("query") or state["question"]
    retry = critique.retry_query.strip()
    if critique.grounded or retries >= ctx.services.reflect_max_retries or not retry or retry == query:
        return {"retries": retries, "query": query}
    shown = await ctx.emit(Step(StepKind.RETRY, "critic", retry))
    if shown.blocked:
        return {"retries": retries, "query": query}
    ctx.query = shown.step.text
    return {"retries": retries + 1, "query": shown.step.text}


# ---- the graphs -------------------------------------------------------------------------------------------


def _after_react_planner(state: AgentState) -> str:
    return "tool_caller" if state.get("pending") else "__end__"


def _after_tool_caller(state: AgentState) -> str:
    if state.get("status") == RunStatus.STOPPED.value:
        return "__end__"
    return "tool_caller" if state.get("pending") else "planner"


def _after_critic(state: AgentState) -> str:
    draft = state.get("draft") or {}
    # a retry was decided when the query moved on since the draft was made
    return "retriever" if state.get("query") != draft.get("query") else "__end__"


def build_graph(name: str, checkpointer: Any | None = None) -> Any:
    """The compiled graph ``name`` (a key of :data:`GRAPHS`), checkpointed by ``checkpointer`` if given."""
    from langgraph.graph import END, START, StateGraph

    g: Any = StateGraph(AgentState, context_schema=RunContext)
    if name == "rag":
        g.add_node("retriever", retriever)
        g.add_edge(START, "retriever")
        g.add_edge("retriever", END)
    elif name == "react":
        g.add_node("planner", react_planner)
        g.add_node("tool_caller", tool_caller)
        g.add_edge(START, "planner")
        g.add_conditional_edges("planner", _after_react_planner, ["tool_caller", END])
        g.add_conditional_edges("tool_caller", _after_tool_caller, ["tool_caller", "planner", END])
    elif name == "plan-execute":
        g.add_node("planner", planner)
        g.add_node("retriever", retriever)
        g.add_edge(START, "planner")
        g.add_edge("planner", "retriever")
        g.add_edge("retriever", END)
    elif name == "reflect":
        g.add_node("retriever", retriever)
        g.add_node("synthesizer", synthesizer)
        g.add_node("critic", critic)
        g.add_edge(START, "retriever")
        g.add_edge("retriever", "synthesizer")
        g.add_edge("synthesizer", "critic")
        g.add_conditional_edges("critic", _after_critic, ["retriever", END])
    else:
        raise KeyError(name)
    return g.compile(checkpointer=checkpointer, name=name)
