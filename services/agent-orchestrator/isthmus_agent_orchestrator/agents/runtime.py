"""The agent runtime: runs a graph of :mod:`.graphs` for one question, step by step, within budgets,
pausing for approvals, resumable by run id.

:meth:`AgentRuntime.execute` yields the run's :class:`~.types.Step`\\ s as they happen (each already
through the step guard) and ends with a :class:`GraphOutcome`: the passages gathered, a draft (reflect),
the status and the LLM usage.

- **Budgets** (:class:`~.types.RunBudget`): steps (every step shown counts), tokens and cost
  (``CostMeter.cost``) of the agents' LLM calls, wall time (approval waits excluded). The first one
  reached stops the graph: a ``BUDGET`` step, status ``BUDGET_EXHAUSTED``, and the outcome holds what
  was gathered so far (the pipeline answers from it).
- **Approvals**: a node calling a sensitive tool asks the :class:`~.types.ApprovalBook` and pauses
  (LangGraph ``interrupt``); the runtime shows ``APPROVAL_WAIT``, waits for the decision, shows
  ``APPROVAL_DECIDED`` and resumes the graph with it (``Command(resume=…)``). Rejected or expired: the
  call's result says so and the run ends ``STOPPED``.
- **Durability**: every graph but ``rag`` is checkpointed (thread id = run id; SQLite in production,
  :mod:`.checkpoint`). A run paused when the process stopped is resumed by ``execute(..., resume=True)``
  — only by the same subject in the same tenant (anyone else: ``NotFound``, as for an unknown run). A run
  that ended is deleted from the checkpointer.
- **Sub-agents**: :meth:`AgentRuntime.run_graph` runs a graph for the ``subagent`` tool, depth-capped.

The graph runs in a task of its own feeding a queue, so the wall-time budget never cancels the
caller's code while it reads a step. ``rag`` (the default: one node, no step, no pause, nothing to
checkpoint) runs its node directly — LangGraph's loop would add ~1.5 ms to every plain question — so it
never imports LangGraph; the other graphs import it when first built (:meth:`AgentRuntime.warm` at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Final

from isthmus_agent_orchestrator.agents.critic import Critic, HeuristicCritic
from isthmus_agent_orchestrator.agents.graphs import (
    GRAPHS,
    RunContext,
    Services,
    build_graph,
    context_json,
    retriever,
)
from isthmus_agent_orchestrator.agents.planner import HeuristicPlanner
from isthmus_agent_orchestrator.agents.step_guard import GuardedStep, StepGuard
from isthmus_agent_orchestrator.agents.testing import InMemoryApprovalBook, ZeroCost, describe_hits
from isthmus_agent_orchestrator.agents.types import (
    ApprovalBook,
    ChatModel,
    CostMeter,
    Draft,
    Planner,
    RunBudget,
    RunStatus,
    Step,
    StepKind,
    ToolContext,
    ToolRegistry,
    ToolResult,
    Usage,
)
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.ports.generator import Context, Generator

#: LangGraph super-steps a run may take per budgeted step (a node may take none)
_SUPERSTEPS_PER_STEP: Final = 3


@dataclasses.dataclass(frozen=True, slots=True)
class GraphOutcome:
    """How a run ended: what retrieval should answer from (``query``, ``contexts`` best first), the
    reflect draft (its sentences still to pass the output guardrail), the status, the agents' LLM usage."""

    run_id: str
    graph: str
    question: str
    query: str
    contexts: tuple[Context, ...]
    draft: Draft | None
    status: RunStatus
    usages: tuple[Usage, ...]
    sub_questions: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class _Direct:
    """What a node reads of LangGraph's ``Runtime`` when it is run directly (rag)."""

    context: RunContext


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """A checkpointed run, as its owner may resume it."""

    run_id: str
    graph: str
    question: str
    top_k: int
    principals: tuple[str, ...]


class _Exhausted(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Meter:
    """A run's budget use."""

    def __init__(self, budget: RunBudget, cost: CostMeter) -> None:
        self.budget = budget
        self._cost = cost
        self.steps = 0
        self.tokens = 0
        self.usd = 0.0
        self.wall_s = 0.0

    def step(self) -> None:
        if self.steps >= self.budget.max_steps:
            raise _Exhausted(f"the step budget ({self.budget.max_steps} steps) ran out")
        self.steps += 1

    def usage(self, u: Usage) -> None:
        self.tokens += u.tokens
        self.usd += self._cost.cost(u)
        if self.tokens > self.budget.max_tokens:
            raise _Exhausted(f"the token budget ({self.budget.max_tokens} tokens) ran out")
        if self.budget.max_cost_usd and self.usd > self.budget.max_cost_usd:
            raise _Exhausted(f"the cost budget (${self.budget.max_cost_usd:g}) ran out")

    def wall_left(self) -> float:
        return self.budget.max_wall_s - self.wall_s


class AgentRuntime:
    """Runs the graphs of :data:`~.graphs.GRAPHS` (see the module's doc).

    ``checkpointer``: a LangGraph checkpoint saver for the durable graphs (production: the SQLite one of
    :func:`.checkpoint.open_sqlite_checkpointer`); ``None``: an in-memory one (runs survive no restart).
    """

    def __init__(
        self,
        *,
        tools: ToolRegistry,
        generator: Generator,
        approvals: ApprovalBook | None = None,
        chat: ChatModel | None = None,
        planner: Planner | None = None,
        critic: Critic | None = None,
        cost: CostMeter | None = None,
        budget: RunBudget = RunBudget(),
        checkpointer: Any | None = None,
        max_sub_questions: int = 4,
        reflect_max_retries: int = 1,
        subagent_max_depth: int = 2,
    ) -> None:
        self.services = Services(
            tools=tools,
            approvals=approvals or InMemoryApprovalBook(),
            generator=generator,
            planner=planner or HeuristicPlanner(),
            critic=critic or HeuristicCritic(),
            chat=chat,
            max_sub_questions=max_sub_questions,
            reflect_max_retries=reflect_max_retries,
        )
        self.budget = budget
        self._cost = cost or ZeroCost()
        self._checkpointer = checkpointer
        self.subagent_max_depth = subagent_max_depth
        self._live: set[str] = set()  # run ids executing in this process
        self._compiled: dict[tuple[str, bool], Any] = {}

    # ---- graphs --------------------------------------------------------------------------------------

    def _graph(self, name: str, durable: bool) -> Any:
        if name not in GRAPHS:
            raise InvalidArgument(f"unknown graph {name!r}; the graphs are {', '.join(GRAPHS)}")
        durable = durable and GRAPHS[name].durable
        key = (name, durable)
        compiled = self._compiled.get(key)
        if compiled is None:
            saver = None
            if durable:
                if self._checkpointer is None:
                    from langgraph.checkpoint.memory import InMemorySaver

                    self._checkpointer = InMemorySaver()
                saver = self._checkpointer
            compiled = self._compiled[key] = build_graph(name, saver)
        return compiled

    def warm(self) -> None:
        """Build every graph now (imports LangGraph) rather than at the first question."""
        for name, info in GRAPHS.items():
            self._graph(name, info.durable)

    async def _snapshot(self, run_id: str, tenant_id: str, subject: str) -> tuple[Any, Any]:
        """The run's graph and last checkpoint; ``NotFound`` unless it is ``subject``'s in ``tenant_id``."""
        unknown = NotFound(f"no run {run_id} to resume")
        if self._checkpointer is None:
            raise unknown
        tup = await self._checkpointer.aget_tuple({"configurable": {"thread_id": run_id}})
        if tup is None:
            raise unknown
        values = tup.checkpoint.get("channel_values", {})
        name = values.get("graph", "")
        if name not in GRAPHS or values.get("tenant_id") != tenant_id or values.get("subject") != subject:
            raise unknown
        compiled = self._graph(name, True)
        snapshot = await compiled.aget_state({"configurable": {"thread_id": run_id}})
        return compiled, snapshot

    async def lookup(self, run_id: str, tenant_id: str, subject: str) -> RunInfo:
        """The run ``run_id`` (paused, or stopped mid-way by a crash); ``NotFound`` unless it is
        ``subject``'s in ``tenant_id`` (the same answer as for a run that does not exist)."""
        _, snapshot = await self._snapshot(run_id, tenant_id, subject)
        v = snapshot.values
        return RunInfo(run_id, v["graph"], v["question"], v.get("top_k", 5), tuple(v.get("principals", ())))

    # ---- runs ----------------------------------------------------------------------------------------

    def live_runs(self) -> frozenset[str]:
        """Run ids executing in this process now (the checkpoint purger leaves them to end themselves)."""
        return frozenset(self._live)

    async def execute(
        self,
        graph: str,
        tenant_id: str,
        question: str,
        principals: Sequence[str],
        top_k: int,
        subject: str,
        run_id: str = "",
        resume: bool = False,
        *,
        guard: StepGuard | None = None,
        scratchpad: Mapping[str, Any] | None = None,
        depth: int = 0,
    ) -> AsyncGenerator[Step | GraphOutcome, None]:
        """The run's steps, then its :class:`GraphOutcome` (see the module's doc). ``resume``: continue
        the checkpointed run ``run_id`` (``graph`` and ``question`` are then the run's own)."""
        run_id = run_id or uuid.uuid4().hex
        self._live.add(run_id)
        try:
            async for item in self._execute(
                graph,
                tenant_id,
                question,
                principals,
                top_k,
                subject,
                run_id,
                resume,
                guard=guard,
                scratchpad=scratchpad,
                depth=depth,
            ):
                yield item
        finally:
            self._live.discard(run_id)

    async def _execute(
        self,
        graph: str,
        tenant_id: str,
        question: str,
        principals: Sequence[str],
        top_k: int,
        subject: str,
        run_id: str,
        resume: bool,
        *,
        guard: StepGuard | None,
        scratchpad: Mapping[str, Any] | None,
        depth: int,
    ) -> AsyncGenerator[Step | GraphOutcome, None]:
        guard = guard or StepGuard(None, tenant_id, "")
        meter = _Meter(self.budget, self._cost)
        durable = depth == 0
        cfg: dict[str, Any] = {"configurable": {"thread_id": run_id}}
        pending: Mapping[str, Any] | None = None  # an interrupt's value: the approval waited for
        graph_input: Any
        if resume:
            compiled, snapshot = await self._snapshot(run_id, tenant_id, subject)
            values = snapshot.values
            graph, question = values["graph"], values["question"]
            graph_input = None
            if snapshot.interrupts:
                pending = snapshot.interrupts[0].value
        else:
            if graph not in GRAPHS:
                raise InvalidArgument(f"unknown graph {graph!r}; the graphs are {', '.join(GRAPHS)}")
            # rag: one node that takes no step, never pauses and has nothing to checkpoint — it runs
            # directly (LangGraph's loop would add ~1.5 ms to every plain question, the default graph)
            compiled = None if graph == "rag" else self._graph(graph, durable)
            values = {}
            graph_input = {
                "tenant_id": tenant_id,
                "question": question,
                "principals": list(principals),
                "graph": graph,
                "subject": subject,
                "run_id": run_id,
                "top_k": top_k,
                "query": question,
                "retries": 0,
                "status": RunStatus.COMPLETED.value,
                "usages": [],
                "scratchpad": dict(scratchpad or {}),
            }
        checkpointed = compiled is not None and compiled.checkpointer is not None
        cfg["recursion_limit"] = self.budget.max_steps * _SUPERSTEPS_PER_STEP + 10
        steps: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def emit(step: Step) -> GuardedStep:
            from langgraph.config import get_stream_writer

            meter.step()
            shown = await guard.check(step)
            get_stream_writer()(shown.step)
            return shown

        ctx = RunContext(
            services=self.services,
            tool_ctx=ToolContext(tenant_id, run_id, graph, tuple(principals), top_k, depth),
            subject=subject,
            emit=emit,
            add_usage=meter.usage,
            allow_approvals=checkpointed,
            query=question,
        )
        if values:
            ctx.seed(values)

        async def shown(step: Step) -> Step:
            return (await guard.check(step)).step

        status: RunStatus | None = None
        if compiled is None:
            try:
                async with asyncio.timeout(self.budget.max_wall_s):  # no yield inside: see _segment
                    await retriever(graph_input, _Direct(ctx))  # type: ignore[arg-type]
            except TimeoutError:
                status = RunStatus.BUDGET_EXHAUSTED
                yield await shown(
                    Step(StepKind.BUDGET, "", f"the wall-time budget ({self.budget.max_wall_s:g} s) ran out")
                )
        while compiled is not None:
            if pending is not None:  # waiting for a person is no agent time
                approval_id = str(pending.get("approval_id", ""))
                tool = str(pending.get("tool", ""))
                call_id = str(pending.get("call_id", ""))
                meter.steps += 1
                yield await shown(
                    Step(
                        StepKind.APPROVAL_WAIT,
                        "tool_caller",
                        f"{tool} waits for an approval ({approval_id})",
                        tool=tool,
                        approval_id=approval_id,
                        call_id=call_id,
                        arguments_json=str(pending.get("arguments_json", "")),
                    )
                )
                approval = await self.services.approvals.wait(approval_id)
                meter.steps += 1
                yield await shown(
                    Step(
                        StepKind.APPROVAL_DECIDED,
                        "tool_caller",
                        f"{tool} {approval.state}"
                        + (f" by {approval.decided_by}" if approval.decided_by else "")
                        + (f": {approval.reason}" if approval.reason else ""),
                        tool=tool,
                        approval_id=approval_id,
                        ok=approval.state == "approved",
                        call_id=call_id,
                    )
                )
                from langgraph.types import Command

                graph_input = Command(
                    resume={
                        "state": approval.state,
                        "decided_by": approval.decided_by,
                        "reason": approval.reason,
                    }
                )
                pending = None
            task = asyncio.create_task(self._segment(compiled, graph_input, cfg, ctx, steps))
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                while True:
                    left = meter.wall_left() - (loop.time() - started)
                    try:
                        kind, item = await asyncio.wait_for(steps.get(), timeout=max(left, 0.0))
                    except TimeoutError:
                        status = RunStatus.BUDGET_EXHAUSTED
                        task.cancel()
                        yield await shown(
                            Step(
                                StepKind.BUDGET,
                                "",
                                f"the wall-time budget ({self.budget.max_wall_s:g} s) ran out",
                            )
                        )
                        break
                    if kind == "step":
                        yield item
                    elif kind == "interrupt":
                        pending = item
                    elif kind == "error":
                        if isinstance(item, _Exhausted):
                            status = RunStatus.BUDGET_EXHAUSTED
                            yield await shown(Step(StepKind.BUDGET, "", item.what))
                            break
                        if type(item).__name__ == "GraphRecursionError":
                            status = RunStatus.BUDGET_EXHAUSTED
                            yield await shown(
                                Step(StepKind.BUDGET, "", "the step budget ran out (recursion)")
                            )
                            break
                        raise item
                    else:  # "end"
                        break
            finally:
                meter.wall_s += loop.time() - started
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if status is not None or pending is None:
                break
        final = ctx.status if status is None else status
        if checkpointed:  # a run that ended has nothing to resume
            assert compiled is not None
            await compiled.checkpointer.adelete_thread(run_id)
        yield GraphOutcome(
            run_id=run_id,
            graph=graph,
            question=question,
            query=ctx.query or question,
            contexts=tuple(ctx.contexts),
            draft=ctx.draft,
            status=final,
            usages=tuple(ctx.usages),
            sub_questions=tuple(ctx.sub_questions),
        )

    @staticmethod
    async def _segment(
        compiled: Any,
        graph_input: Any,
        cfg: dict[str, Any],
        ctx: RunContext,
        out: asyncio.Queue[tuple[str, Any]],
    ) -> None:
        """Run the graph until it ends or pauses, feeding ``out``: ("step", Step), ("interrupt", value),
        ("error", exception) or ("end", None)."""
        try:
            async for mode, chunk in compiled.astream(
                graph_input, cfg, context=ctx, stream_mode=["custom", "updates"]
            ):
                if mode == "custom":
                    out.put_nowait(("step", chunk))
                elif isinstance(chunk, dict) and "__interrupt__" in chunk:
                    out.put_nowait(("interrupt", chunk["__interrupt__"][0].value))
            out.put_nowait(("end", None))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            out.put_nowait(("error", e))

    async def run_graph(self, name: str, question: str, ctx: ToolContext) -> ToolResult:
        """The ``subagent`` tool's callback: run graph ``name`` for ``question`` one level deeper than
        ``ctx`` (no deeper than ``subagent_max_depth``; not checkpointed, no approvals); its passages."""
        if ctx.depth + 1 > self.subagent_max_depth:
            return ToolResult(False, f"sub-agents nest at most {self.subagent_max_depth} deep")
        if name not in GRAPHS:
            return ToolResult(False, f"unknown graph {name!r}; the graphs are {', '.join(GRAPHS)}")
        outcome: GraphOutcome | None = None
        try:
            async for item in self.execute(
                name,
                ctx.tenant_id,
                question,
                ctx.principals,
                ctx.top_k,
                "",
                uuid.uuid4().hex,
                depth=ctx.depth + 1,
            ):
                if isinstance(item, GraphOutcome):
                    outcome = item
        except Exception as e:
            return ToolResult(False, f"the {name} sub-agent failed: {e}")
        assert outcome is not None
        return ToolResult(
            True,
            describe_hits(outcome.contexts),
            outcome.contexts,
            {
                "graph": name,
                "status": outcome.status.value,
                "usages": [dataclasses.asdict(u) for u in outcome.usages],
                "contexts": [context_json(c) for c in outcome.contexts],
            },
        )
