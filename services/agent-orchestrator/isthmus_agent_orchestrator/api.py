"""gRPC edge of the agent orchestrator: the servicer and the proto translation of its answers, steps,
approvals, graphs, tools and prompt versions.

Each RPC parses its ids (tenant, approval, run, session, graph, prompt name) here, once, and delegates
to a collaborator the module wires: the answer pipeline (:class:`AskCore`), the approval book
(:class:`~isthmus_agent_orchestrator.agents.types.ApprovalBook`), and the catalogues of graphs, tools and
prompt versions (:class:`GraphView`, :class:`ToolCatalog`, :class:`PromptAdmin`). Who decides an
approval or creates a prompt version is the verified caller (``current_principal().subject``), never a
request field. The clients of the guardrail and retrieval are in :mod:`isthmus_agent_orchestrator.clients`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol, cast, runtime_checkable

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as pb_grpc
from isthmus.common.v1 import common_pb2
from isthmus_agent_orchestrator.agents.types import (
    GRAPH_NAME_PATTERN,
    SESSION_ID_PATTERN,
    Approval,
    ApprovalBook,
    RunStatus,
    Step,
    StepKind,
    Usage,
)
from isthmus_agent_orchestrator.clients import sentence_pb
from isthmus_agent_orchestrator.pipeline import AskInput, FinalEvent, SentenceEvent, Stage, StageEvent
from isthmus_core.auth.context import current_principal
from isthmus_core.contracts.events import AGENT_ID_PATTERN
from isthmus_core.contracts.ids import parse_principals, parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence
from isthmus_core.ports.guard import Action, Verdict
from isthmus_core.telemetry.metrics import ASK_STAGE_SECONDS

if TYPE_CHECKING:
    import grpc

    from isthmus_core.contracts.events import Citation
    from isthmus_core.ports.generator import Context

#: the prompt templates a tenant may version (the proto's PromptVersion.name)
PROMPT_NAMES: Final = ("synthesize", "plan", "condense", "critic")
#: longest prompt template accepted (characters)
MAX_TEMPLATE_CHARS: Final = 20_000
#: longest reason of an approval decision (the ApprovalDecided event's limit)
MAX_REASON_CHARS: Final = 2_000
_VERSION: Final = re.compile(r"^v[1-9][0-9]{0,8}$")
_AGENT_ID: Final = re.compile(AGENT_ID_PATTERN)
_SESSION_ID: Final = re.compile(SESSION_ID_PATTERN)
_GRAPH: Final = re.compile(GRAPH_NAME_PATTERN)


# ---- what the servicer needs of the rest of the service ---------------------------------------------


class AnswerView(Protocol):
    """What the servicer reads of a pipeline answer (``pipeline.Answer``): ``usage`` is every usage of
    the answer summed, ``cost_usd`` its price."""

    @property
    def question_id(self) -> str: ...

    @property
    def sentences(self) -> list[AnswerSentence]: ...

    @property
    def input_verdict(self) -> Verdict | None: ...

    @property
    def output_verdict(self) -> Verdict | None: ...

    @property
    def blocked(self) -> bool: ...

    @property
    def generator(self) -> str: ...

    @property
    def latency_ms(self) -> float: ...

    @property
    def stage_ms(self) -> dict[Stage, float]: ...

    @property
    def graph(self) -> str: ...

    @property
    def run_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def standalone_question(self) -> str: ...

    @property
    def prompt_version(self) -> str: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def cost_usd(self) -> float: ...

    @property
    def cached(self) -> bool: ...

    @property
    def steps(self) -> list[Step]: ...

    @property
    def status(self) -> RunStatus: ...

    @property
    def text(self) -> str: ...

    @property
    def citations(self) -> list[Citation]: ...

    @property
    def contexts(self) -> list[Context]: ...


@runtime_checkable
class StepEventView(Protocol):
    """An agent step of a run's event stream (``pipeline.StepEvent``)."""

    @property
    def step(self) -> Step: ...


class AskCore(Protocol):
    """The answer pipeline (``pipeline.Orchestrator``): ``run`` yields ``StageEvent | StepEvent |
    SentenceEvent | FinalEvent``; ``ask`` is the unary call (it may share one run between identical
    requests in flight)."""

    def run(self, request: AskInput) -> AsyncIterator[object]: ...

    async def ask(self, request: AskInput) -> AnswerView: ...


class GraphView(Protocol):
    """One graph as ListGraphs shows it. ``edges``: ``"from->to"``, ``"from-?>to"`` when conditional."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def nodes(self) -> Sequence[str]: ...

    @property
    def edges(self) -> Sequence[str]: ...


class ToolView(Protocol):
    """One tool of a tenant as ListTools shows it. ``graphs`` empty = every graph may call it."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def arguments_schema_json(self) -> str: ...

    @property
    def sensitive(self) -> bool: ...

    @property
    def permission(self) -> str: ...

    @property
    def graphs(self) -> Sequence[str]: ...

    @property
    def enabled(self) -> bool: ...


class ToolCatalog(Protocol):
    def infos(self, tenant_id: str) -> Sequence[ToolView]: ...


class PromptVersionView(Protocol):
    @property
    def tenant_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def template(self) -> str: ...

    @property
    def created_by(self) -> str: ...

    @property
    def created_at_ms(self) -> int: ...

    @property
    def digest(self) -> str: ...


class PromptSplitView(Protocol):
    @property
    def tenant_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def percent(self) -> Mapping[str, int]: ...


class PromptAdmin(Protocol):
    """Prompt template versions per tenant (immutable, "v1", "v2"… in order) and their A/B split
    (``agents.prompts.SqlitePromptBook``). The book checks a template's fields for its name, and that a
    split names versions it has (``InvalidArgument``); an empty split means the built-in template."""

    async def create_version(
        self, tenant_id: str, name: str, template: str, created_by: str
    ) -> PromptVersionView: ...

    async def list_versions(self, tenant_id: str, name: str) -> Sequence[PromptVersionView]: ...

    async def get_split(self, tenant_id: str, name: str) -> PromptSplitView: ...

    async def set_split(self, tenant_id: str, name: str, percent: Mapping[str, int]) -> PromptSplitView: ...


# ---- parsing of the request fields the validation interceptor has no rule for ----------------------


def parse_approval_id(raw: str, field: str = "approval_id") -> str:
    if not raw:
        raise InvalidArgument(f"{field} is required")
    if not _AGENT_ID.fullmatch(raw):
        raise InvalidArgument(f"invalid {field}: approval ids are the 32 hexadecimal digits a run showed")
    return raw


def parse_run_id(raw: str, field: str = "run_id") -> str:
    """A run to resume ("" = a new run)."""
    if raw and not _AGENT_ID.fullmatch(raw):
        raise InvalidArgument(f"invalid {field}: run ids are the 32 hexadecimal digits an answer showed")
    return raw


def parse_session_id(raw: str, field: str = "session_id") -> str:
    """A conversation ("" = none)."""
    if raw and not _SESSION_ID.fullmatch(raw):
        raise InvalidArgument(
            f"invalid {field}: session ids are 1-64 characters of letters, digits, '.', '_', '-'"
        )
    return raw


def parse_graph(raw: str, field: str = "graph") -> str:
    """A graph name ("" = the tenant's default); whether it exists is the pipeline's to say."""
    if raw and not _GRAPH.fullmatch(raw):
        raise InvalidArgument(
            f"invalid {field}: graph names are 1-64 characters of lowercase letters, digits and '-', "
            "starting with a letter (see ListGraphs)"
        )
    return raw


def parse_prompt_name(raw: str, field: str = "name") -> str:
    if not raw:
        raise InvalidArgument(f"{field} is required: one of {', '.join(PROMPT_NAMES)}")
    if raw not in PROMPT_NAMES:
        raise InvalidArgument(f"invalid {field} {raw[:64]!r}: prompts are {', '.join(PROMPT_NAMES)}")
    return raw


def parse_template(raw: str) -> str:
    if not raw.strip():
        raise InvalidArgument("template is empty")
    if len(raw) > MAX_TEMPLATE_CHARS:
        raise InvalidArgument(f"template is {len(raw)} characters; the limit is {MAX_TEMPLATE_CHARS}")
    return raw


def parse_split(percent: Mapping[str, int]) -> dict[str, int]:
    """Version -> percent of requests: versions "v<N>", each 1-100, summing to 100 (empty = built-in)."""
    out: dict[str, int] = {}
    for version, share in sorted(percent.items()):
        if not _VERSION.fullmatch(version):
            raise InvalidArgument(f"invalid version {version[:64]!r} in percent: versions are v1, v2, ...")
        if not 1 <= share <= 100:
            raise InvalidArgument(f"percent[{version!r}] is {share}; each share is 1-100")
        out[version] = share
    if out and sum(out.values()) != 100:
        raise InvalidArgument(f"the percents sum to {sum(out.values())}; they must sum to 100")
    return out


def parse_reason(raw: str) -> str:
    if len(raw) > MAX_REASON_CHARS:
        raise InvalidArgument(f"reason is {len(raw)} characters; the limit is {MAX_REASON_CHARS}")
    return raw


def caller_subject() -> str:
    """Who makes the current call: its verified subject ("anonymous" with authentication off)."""
    principal = current_principal()
    return "" if principal is None else principal.subject


# ---- translation ------------------------------------------------------------------------------------

_ACTION_TO_PB = {
    Action.ALLOW: common_pb2.GUARD_ACTION_ALLOW,
    Action.REDACT: common_pb2.GUARD_ACTION_REDACT,
    Action.BLOCK: common_pb2.GUARD_ACTION_BLOCK,
}
_STEP_KIND: Final = {
    StepKind.CONDENSE: pb.STEP_KIND_CONDENSE,
    StepKind.MEMORY: pb.STEP_KIND_MEMORY,
    StepKind.PLAN: pb.STEP_KIND_PLAN,
    StepKind.TOOL_CALL: pb.STEP_KIND_TOOL_CALL,
    StepKind.TOOL_RESULT: pb.STEP_KIND_TOOL_RESULT,
    StepKind.APPROVAL_WAIT: pb.STEP_KIND_APPROVAL_WAIT,
    StepKind.APPROVAL_DECIDED: pb.STEP_KIND_APPROVAL_DECIDED,
    StepKind.CRITIQUE: pb.STEP_KIND_CRITIQUE,
    StepKind.RETRY: pb.STEP_KIND_RETRY,
    StepKind.CACHE_HIT: pb.STEP_KIND_CACHE_HIT,
    StepKind.BUDGET: pb.STEP_KIND_BUDGET,
}
_RUN_STATUS: Final = {
    RunStatus.COMPLETED: pb.RUN_STATUS_COMPLETED,
    RunStatus.STOPPED: pb.RUN_STATUS_STOPPED,
    RunStatus.BUDGET_EXHAUSTED: pb.RUN_STATUS_BUDGET_EXHAUSTED,
}
#: pipeline stages by name (``Stage.RETRIEVAL`` → ``STAGE_RETRIEVAL``; one the proto lacks: unspecified)
_STAGES: Final = {name: cast("pb.Stage", number) for name, number in pb.Stage.items()}
_APPROVAL_STATE: Final = {
    "pending": pb.APPROVAL_STATE_PENDING,
    "approved": pb.APPROVAL_STATE_APPROVED,
    "rejected": pb.APPROVAL_STATE_REJECTED,
    "expired": pb.APPROVAL_STATE_EXPIRED,
}


def stage_pb(stage: Stage) -> pb.Stage:
    return _STAGES.get(f"STAGE_{stage.name}", pb.STAGE_UNSPECIFIED)


def verdict_pb(v: Verdict | None) -> common_pb2.Verdict | None:
    if v is None:
        return None
    return common_pb2.Verdict(
        action=_ACTION_TO_PB[v.action],
        text=v.text,
        findings=[
            common_pb2.Finding(code=f.code, message=f.message, start=f.start, end=f.end, score=f.score)
            for f in v.findings
        ],
    )


def step_pb(s: Step) -> pb.AgentStep:
    return pb.AgentStep(
        index=s.index,
        kind=_STEP_KIND[s.kind],
        node=s.node,
        text=s.text,
        tool=s.tool,
        call_id=s.call_id,
        arguments_json=s.arguments_json,
        ok=s.ok,
        approval_id=s.approval_id,
        sub_questions=list(s.sub_questions),
    )


def usage_pb(u: Usage, cost_usd: float = 0.0) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        model=u.model,
        cost_usd=cost_usd,
        reported=u.reported,
    )


def approval_pb(a: Approval) -> pb.Approval:
    return pb.Approval(
        approval_id=a.approval_id,
        tenant_id=a.tenant_id,
        run_id=a.run_id,
        graph=a.graph,
        tool=a.tool,
        arguments_json=a.arguments_json,
        requested_by=a.requested_by,
        state=_APPROVAL_STATE[a.state],
        decided_by=a.decided_by,
        reason=a.reason,
        requested_at_ms=a.requested_at_ms,
        decided_at_ms=a.decided_at_ms,
        expires_at_ms=a.expires_at_ms,
    )


def graph_pb(g: GraphView, default: str) -> pb.GraphInfo:
    return pb.GraphInfo(
        name=g.name,
        description=g.description,
        nodes=list(g.nodes),
        edges=list(g.edges),
        is_default=g.name == default,
    )


def tool_pb(t: ToolView) -> pb.ToolInfo:
    return pb.ToolInfo(
        name=t.name,
        description=t.description,
        arguments_schema_json=t.arguments_schema_json,
        sensitive=t.sensitive,
        permission=t.permission,
        graphs=list(t.graphs),
        enabled=t.enabled,
    )


def prompt_version_pb(v: PromptVersionView) -> pb.PromptVersion:
    return pb.PromptVersion(
        tenant_id=v.tenant_id,
        name=v.name,
        version=v.version,
        template=v.template,
        created_by=v.created_by,
        created_at_ms=v.created_at_ms,
        digest=v.digest,
    )


def observe_stages(a: AnswerView) -> None:
    for stage, ms in a.stage_ms.items():
        ASK_STAGE_SECONDS.labels(stage.value).observe(ms / 1000)


def context_pb(c: Context) -> pb.RetrievedContext:
    return pb.RetrievedContext(
        chunk_id=c.chunk_id,
        document_id=c.document_id,
        start=c.start,
        end=c.end or c.start + len(c.text),
        text=c.text,
        score=c.score,
    )


def answer_pb(a: AnswerView, *, include_contexts: bool = False) -> pb.AskResponse:
    """``include_contexts``: with the contexts the answer was made from (``AskRequest.include_contexts``)."""
    return pb.AskResponse(
        question_id=a.question_id,
        answer=a.text,
        sentences=[sentence_pb(s) for s in a.sentences],
        citations=[common_pb2.Citation(**c.model_dump()) for c in a.citations],
        input_verdict=verdict_pb(a.input_verdict),
        output_verdict=verdict_pb(a.output_verdict),
        blocked=a.blocked,
        generator=a.generator,
        latency_ms=a.latency_ms,
        graph=a.graph,
        run_id=a.run_id,
        session_id=a.session_id,
        standalone_question=a.standalone_question,
        prompt_version=a.prompt_version,
        usage=usage_pb(a.usage, a.cost_usd),
        cached=a.cached,
        steps=[step_pb(s) for s in a.steps],
        status=_RUN_STATUS[a.status],
        contexts=[context_pb(c) for c in a.contexts] if include_contexts else [],
    )


def event_pb(ev: object, *, include_contexts: bool = False) -> pb.AskEvent | None:
    """One pipeline event as the stream shows it (None: nothing to show)."""
    if isinstance(ev, StageEvent):
        return pb.AskEvent(stage=pb.StageEvent(stage=stage_pb(ev.stage), detail=ev.detail))
    if isinstance(ev, SentenceEvent):
        return pb.AskEvent(sentence=sentence_pb(ev.sentence))
    if isinstance(ev, FinalEvent):
        answer = cast("AnswerView", ev.answer)
        observe_stages(answer)
        return pb.AskEvent(final=answer_pb(answer, include_contexts=include_contexts))
    if isinstance(ev, StepEventView):
        return pb.AskEvent(step=step_pb(ev.step))
    return None


# ---- the servicer -----------------------------------------------------------------------------------


class AgentOrchestratorServicer(pb_grpc.AgentOrchestratorServiceServicer):
    def __init__(
        self,
        core: AskCore,
        *,
        approvals: ApprovalBook,
        graphs: Mapping[str, GraphView],
        default_graph: Callable[[str], str],
        tools: ToolCatalog,
        prompts: PromptAdmin,
    ) -> None:
        """``graphs``: every graph by name (``agents.graphs.GRAPHS``); ``default_graph``: a tenant's
        (``Orchestrator.graph_of``)."""
        self._core = core
        self._approvals = approvals
        self._graphs = graphs
        self._default_graph = default_graph
        self._tools = tools
        self._prompts = prompts

    # -- asking --

    async def Ask(self, request: pb.AskRequest, context: grpc.aio.ServicerContext) -> pb.AskResponse:
        answer = await self._core.ask(ask_input(request))
        observe_stages(answer)
        return answer_pb(answer, include_contexts=request.include_contexts)

    async def AskStream(
        self, request: pb.AskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AskEvent]:
        async for ev in self._core.run(ask_input(request)):
            out = event_pb(ev, include_contexts=request.include_contexts)
            if out is not None:
                yield out

    # -- approvals --

    async def ListPendingApprovals(
        self, request: pb.ListPendingApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPendingApprovalsResponse:
        tenant = parse_tenant_id(request.tenant_id)
        return pb.ListPendingApprovalsResponse(
            approvals=[approval_pb(a) for a in self._approvals.list_pending(tenant)]
        )

    async def Approve(
        self, request: pb.DecideApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.Approval:
        return await self._decide(request, approve=True)

    async def Reject(
        self, request: pb.DecideApprovalRequest, context: grpc.aio.ServicerContext
    ) -> pb.Approval:
        return await self._decide(request, approve=False)

    async def _decide(self, request: pb.DecideApprovalRequest, *, approve: bool) -> pb.Approval:
        tenant = parse_tenant_id(request.tenant_id)
        approval_id = parse_approval_id(request.approval_id)
        reason = parse_reason(request.reason)
        decided = await self._approvals.decide(tenant, approval_id, approve, caller_subject(), reason)
        return approval_pb(decided)

    # -- what the agents can use --

    async def ListGraphs(
        self, request: pb.ListGraphsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGraphsResponse:
        tenant = parse_tenant_id(request.tenant_id)
        default = self._default_graph(tenant)
        return pb.ListGraphsResponse(graphs=[graph_pb(g, default) for g in self._graphs.values()])

    async def ListTools(
        self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListToolsResponse:
        tenant = parse_tenant_id(request.tenant_id)
        return pb.ListToolsResponse(tools=[tool_pb(t) for t in self._tools.infos(tenant)])

    # -- prompt versions --

    async def CreatePromptVersion(
        self, request: pb.CreatePromptVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromptVersion:
        tenant = parse_tenant_id(request.tenant_id)
        name = parse_prompt_name(request.name)
        template = parse_template(request.template)
        created = await self._prompts.create_version(tenant, name, template, caller_subject())
        return prompt_version_pb(created)

    async def ListPromptVersions(
        self, request: pb.ListPromptVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPromptVersionsResponse:
        tenant = parse_tenant_id(request.tenant_id)
        name = parse_prompt_name(request.name)
        versions = await self._prompts.list_versions(tenant, name)
        split = await self._prompts.get_split(tenant, name)
        return pb.ListPromptVersionsResponse(
            versions=[prompt_version_pb(v) for v in versions], split=split_pb(split)
        )

    async def SetPromptSplit(
        self, request: pb.SetPromptSplitRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromptSplit:
        tenant = parse_tenant_id(request.tenant_id)
        name = parse_prompt_name(request.name)
        percent = parse_split(dict(request.percent))
        return split_pb(await self._prompts.set_split(tenant, name, percent))


def ask_input(request: pb.AskRequest) -> AskInput:
    """An AskRequest's fields, each parsed."""
    return AskInput(
        tenant_id=parse_tenant_id(request.tenant_id),
        question=request.question,
        top_k=request.top_k,
        principals=parse_principals(list(request.access.principals)),
        graph=parse_graph(request.graph),
        session_id=parse_session_id(request.session_id),
        run_id=parse_run_id(request.run_id),
        no_cache=request.no_cache,
    )


def split_pb(s: PromptSplitView) -> pb.PromptSplit:
    return pb.PromptSplit(tenant_id=s.tenant_id, name=s.name, percent=dict(s.percent))
