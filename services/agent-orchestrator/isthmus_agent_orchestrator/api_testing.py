"""Deterministic fakes of the servicer's collaborators (:mod:`isthmus_agent_orchestrator.api`), for
tests of the gRPC edge and of the CLI over it: a scripted answer pipeline, an in-memory approval book,
and fixed catalogues of graphs, tools and prompt versions. Pure: no I/O."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from isthmus_agent_orchestrator.agents.types import Approval, RunStatus, Step, StepKind, Usage
from isthmus_agent_orchestrator.pipeline import AskInput, FinalEvent, SentenceEvent, Stage, StageEvent
from isthmus_core.contracts.events import Citation
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Action, Verdict


@dataclass
class FakeAnswer:
    """The fields of ``pipeline.Answer`` the servicer reads."""

    question_id: str = "q1"
    sentences: list[AnswerSentence] = field(default_factory=list)
    input_verdict: Verdict | None = None
    output_verdict: Verdict | None = None
    blocked: bool = False
    message: str = ""
    generator: str = "extractive"
    latency_ms: float = 1.5
    stage_ms: dict[Stage, float] = field(default_factory=dict)
    graph: str = "rag"
    run_id: str = ""
    session_id: str = ""
    standalone_question: str = ""
    prompt_version: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    cached: bool = False
    steps: list[Step] = field(default_factory=list)
    status: RunStatus = RunStatus.COMPLETED
    contexts: list[Context] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.message or " ".join(s.text for s in self.sentences)

    @property
    def citations(self) -> list[Citation]:
        return [
            Citation(chunk_id=c.chunk_id, document_id=c.document_id, start=c.start, end=c.end)
            for s in self.sentences
            for c in s.citations
        ]


@dataclass(frozen=True, slots=True)
class FakeStepEvent:
    step: Step


RUN_ID = "0123456789abcdef0123456789abcdef"
APPROVAL_ID = "fedcba9876543210fedcba9876543210"


def sample_steps() -> list[Step]:
    """One step of every kind, as a plan-execute run with a sensitive tool would take them."""
    return [
        Step(StepKind.CONDENSE, "condense", "Standalone: what is the glider's range?", index=0),
        Step(StepKind.MEMORY, "memory", "2 earlier turns recalled", index=1),
        Step(
            StepKind.PLAN,
            "planner",
            "2 sub-questions",
            index=2,
            sub_questions=("What is a glider?", "How far can it fly?"),
        ),
        Step(
            StepKind.TOOL_CALL,
            "tool_caller",
            "search",
            index=3,
            tool="search",
            call_id="c1",
            arguments_json='{"query": "glider range"}',
        ),
        Step(StepKind.TOOL_RESULT, "tool_caller", "3 passages", index=4, tool="search", call_id="c1"),
        Step(
            StepKind.APPROVAL_WAIT,
            "tool_caller",
            "http_get waits for an approval",
            index=5,
            tool="http_get",
            call_id="c2",
            arguments_json='{"url": "https://example.org/"}',
            approval_id=APPROVAL_ID,
        ),
        Step(
            StepKind.APPROVAL_DECIDED,
            "tool_caller",
            "rejected by bob",
            index=6,
            tool="http_get",
            approval_id=APPROVAL_ID,
            ok=False,
        ),
        Step(StepKind.TOOL_RESULT, "tool_caller", "rejected by bob", index=7, tool="http_get", ok=False),
        Step(StepKind.CRITIQUE, "critic", "grounded: 2 of 2 sentences cite", index=8),
        Step(StepKind.RETRY, "critic", "retrying with: glider range km", index=9),
        Step(StepKind.CACHE_HIT, "cache", "exact match", index=10),
        Step(StepKind.BUDGET, "runtime", "the step budget (16) ran out", index=11),
    ]


def sample_answer(**changes: Any) -> FakeAnswer:
    span = CitedSpan("c1", "d1", 0, 20)
    answer = FakeAnswer(
        question_id="q-42",
        sentences=[AnswerSentence("Gliders fly far.", (span,))],
        input_verdict=Verdict(Action.ALLOW),
        output_verdict=Verdict(Action.ALLOW),
        stage_ms={Stage.RETRIEVAL: 2.0},
        graph="plan-execute",
        run_id=RUN_ID,
        session_id="s-1",
        standalone_question="What is the glider's range?",
        prompt_version="v2",
        usage=Usage(model="smollm2", prompt_tokens=120, completion_tokens=30, reported=True),
        cost_usd=0.0015,
        steps=sample_steps(),
        status=RunStatus.STOPPED,
    )
    return replace(answer, **changes)


class FakeCore:
    """The answer pipeline, scripted: records each call's arguments; ``run`` yields a stage, every step
    of the answer, its sentences and the final answer."""

    def __init__(self, answer: FakeAnswer | None = None) -> None:
        self.answer = answer or sample_answer()
        self.calls: list[dict[str, Any]] = []

    def _record(self, how: str, request: AskInput) -> None:
        self.calls.append({"how": how, **asdict(request)})

    async def run(self, request: AskInput) -> AsyncIterator[object]:
        self._record("run", request)
        yield StageEvent(Stage.INPUT_GUARD)
        for step in self.answer.steps:
            yield FakeStepEvent(step)
        for sentence in self.answer.sentences:
            yield SentenceEvent(sentence)
        yield StageEvent(Stage.DONE)
        yield FinalEvent(self.answer)  # type: ignore[arg-type]  # the fields the servicer reads

    async def ask(self, request: AskInput) -> FakeAnswer:
        self._record("ask", request)
        return self.answer


class FakeApprovals:
    """Approvals per tenant in memory; ``decide`` refuses another tenant's id with the unknown id's text."""

    def __init__(self) -> None:
        self.items: dict[str, Approval] = {}

    def add(self, tenant_id: str, tool: str = "http_get", approval_id: str = "") -> Approval:
        a = Approval(
            approval_id=approval_id or uuid.uuid4().hex,
            tenant_id=tenant_id,
            run_id=RUN_ID,
            graph="react",
            tool=tool,
            arguments_json='{"url": "https://example.org/"}',
            requested_by="alice",
            state="pending",
            requested_at_ms=1_000,
            expires_at_ms=3_601_000,
        )
        self.items[a.approval_id] = a
        return a

    async def request(
        self, tenant_id: str, run_id: str, graph: str, tool: str, arguments_json: str, requested_by: str
    ) -> Approval:
        raise NotImplementedError

    async def wait(self, approval_id: str) -> Approval:
        raise NotImplementedError

    def list_pending(self, tenant_id: str) -> list[Approval]:
        return [a for a in self.items.values() if a.tenant_id == tenant_id and a.state == "pending"]

    async def decide(
        self, tenant_id: str, approval_id: str, approve: bool, decided_by: str, reason: str
    ) -> Approval:
        a = self.items.get(approval_id)
        if a is None or a.tenant_id != tenant_id:
            raise NotFound(f"no approval {approval_id} in tenant {tenant_id}")
        if a.state != "pending":
            raise FailedPrecondition(f"approval {approval_id} is already {a.state}")
        decided = replace(
            a,
            state="approved" if approve else "rejected",
            decided_by=decided_by,
            reason=reason,
            decided_at_ms=2_000,
        )
        self.items[approval_id] = decided
        return decided


@dataclass(frozen=True, slots=True)
class GraphDescription:
    name: str
    description: str
    nodes: tuple[str, ...]
    edges: tuple[str, ...]


GRAPHS: dict[str, GraphDescription] = {
    "rag": GraphDescription(
        "rag", "retrieve, then answer", ("retriever",), ("__start__->retriever", "retriever->__end__")
    ),
    "react": GraphDescription(
        "react",
        "a model chooses tools until it can answer",
        ("tool_caller",),
        ("__start__->tool_caller", "tool_caller-?>tool_caller", "tool_caller-?>__end__"),
    ),
}


def defaults(by_tenant: Mapping[str, str]) -> Callable[[str], str]:
    """A tenant's default graph: ``by_tenant``'s, else rag."""
    return lambda tenant_id: by_tenant.get(tenant_id, "rag")


@dataclass(frozen=True, slots=True)
class ToolDescription:
    name: str
    description: str
    arguments_schema_json: str
    sensitive: bool
    permission: str
    graphs: tuple[str, ...]
    enabled: bool


class FakeTools:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def infos(self, tenant_id: str) -> list[ToolDescription]:
        self.asked.append(tenant_id)
        return [
            ToolDescription(
                "search",
                "search the tenant's documents",
                '{"properties": {"query": {"type": "string"}}, "type": "object"}',
                False,
                "search",
                (),
                True,
            ),
            ToolDescription(
                "http_get",
                "fetch an allow-listed URL",
                '{"properties": {"url": {"type": "string"}}, "type": "object"}',
                True,
                "tools.external",
                ("react",),
                False,
            ),
        ]


@dataclass(frozen=True, slots=True)
class PromptRecord:
    tenant_id: str
    name: str
    version: str
    template: str
    created_by: str
    created_at_ms: int
    digest: str


@dataclass(frozen=True, slots=True)
class SplitRecord:
    tenant_id: str
    name: str
    percent: Mapping[str, int]


class FakePrompts:
    """Versions per (tenant, name), "v1", "v2"… in order; a split may only name existing versions (else
    ``InvalidArgument``, as the SQLite book says)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], list[PromptRecord]] = {}
        self.splits: dict[tuple[str, str], dict[str, int]] = {}

    async def create_version(self, tenant_id: str, name: str, template: str, created_by: str) -> PromptRecord:
        listed = self.versions.setdefault((tenant_id, name), [])
        record = PromptRecord(
            tenant_id,
            name,
            f"v{len(listed) + 1}",
            template,
            created_by,
            1_700_000_000_000 + len(listed),
            hashlib.sha256(template.encode()).hexdigest(),
        )
        listed.append(record)
        return record

    async def list_versions(self, tenant_id: str, name: str) -> list[PromptRecord]:
        return list(self.versions.get((tenant_id, name), []))

    async def get_split(self, tenant_id: str, name: str) -> SplitRecord:
        return SplitRecord(tenant_id, name, dict(self.splits.get((tenant_id, name), {})))

    async def set_split(self, tenant_id: str, name: str, percent: Mapping[str, int]) -> SplitRecord:
        known = {v.version for v in self.versions.get((tenant_id, name), [])}
        unknown = sorted(set(percent) - known)
        if unknown:
            raise InvalidArgument(f"unknown prompt version {unknown[0]!r} of {name}")
        if percent and sum(percent.values()) != 100:
            raise InvalidArgument("the percents must sum to 100")
        self.splits[(tenant_id, name)] = dict(percent)
        return SplitRecord(tenant_id, name, dict(percent))
