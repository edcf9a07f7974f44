"""The gRPC edge of the agent orchestrator: every RPC parses its ids and delegates; the translation of
answers (steps, usage, run status, session, prompt version), approvals, graphs, tools and prompt versions
to the proto; the decider and creator are the verified caller, never a request field."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb
from isthmus.common.v1 import common_pb2
from isthmus_agent_orchestrator.agents.types import RunStatus, Step, StepKind
from isthmus_agent_orchestrator.api import AgentOrchestratorServicer, step_pb
from isthmus_agent_orchestrator.api_testing import (
    APPROVAL_ID,
    GRAPHS,
    RUN_ID,
    FakeApprovals,
    FakeCore,
    FakePrompts,
    FakeTools,
    defaults,
    sample_answer,
)
from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import Principal
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.ports.generator import Context

CTX = cast("grpc.aio.ServicerContext", None)


def servicer(core: FakeCore | None = None, **kw: Any) -> AgentOrchestratorServicer:
    return AgentOrchestratorServicer(
        core or FakeCore(),
        approvals=kw.get("approvals", FakeApprovals()),
        graphs=GRAPHS,
        default_graph=kw.get("default_graph", defaults({})),
        tools=kw.get("tools", FakeTools()),
        prompts=kw.get("prompts", FakePrompts()),
    )


def as_(subject: str) -> Any:
    return acting_as(Access(Principal(subject=subject, via="jwt"), AllowAll()))


def request(**changes: Any) -> pb.AskRequest:
    fields: dict[str, Any] = {"tenant_id": "acme", "question": "How far do gliders fly?", "top_k": 3}
    return pb.AskRequest(**(fields | changes))


# ---- Ask / AskStream ----------------------------------------------------------------------------------


async def test_ask_passes_graph_session_resume_and_no_cache_and_translates_the_answer() -> None:
    core = FakeCore()
    req = request(
        graph="plan-execute",
        session_id="s-1",
        run_id=RUN_ID,
        no_cache=True,
        access=common_pb2.AccessScope(principals=["alice", "group:ops"]),
    )
    resp = await servicer(core).Ask(req, CTX)
    assert core.calls == [
        {
            "how": "ask",
            "tenant_id": "acme",
            "question": "How far do gliders fly?",
            "top_k": 3,
            "principals": ("alice", "group:ops"),
            "graph": "plan-execute",
            "session_id": "s-1",
            "run_id": RUN_ID,
            "no_cache": True,
        }
    ]
    assert (resp.question_id, resp.answer, resp.graph, resp.run_id, resp.session_id) == (
        "q-42",
        "Gliders fly far.",
        "plan-execute",
        RUN_ID,
        "s-1",
    )
    assert resp.standalone_question == "What is the glider's range?"
    assert (resp.prompt_version, resp.cached, resp.status) == ("v2", False, pb.RUN_STATUS_STOPPED)
    assert (resp.usage.model, resp.usage.prompt_tokens, resp.usage.completion_tokens) == ("smollm2", 120, 30)
    assert resp.usage.reported and resp.usage.cost_usd == pytest.approx(0.0015)
    assert [c.chunk_id for c in resp.citations] == ["c1"]
    assert [s.kind for s in resp.steps] == [
        pb.STEP_KIND_CONDENSE,
        pb.STEP_KIND_MEMORY,
        pb.STEP_KIND_PLAN,
        pb.STEP_KIND_TOOL_CALL,
        pb.STEP_KIND_TOOL_RESULT,
        pb.STEP_KIND_APPROVAL_WAIT,
        pb.STEP_KIND_APPROVAL_DECIDED,
        pb.STEP_KIND_TOOL_RESULT,
        pb.STEP_KIND_CRITIQUE,
        pb.STEP_KIND_RETRY,
        pb.STEP_KIND_CACHE_HIT,
        pb.STEP_KIND_BUDGET,
    ]
    assert [s.index for s in resp.steps] == list(range(12))
    plan, call, wait, decided = resp.steps[2], resp.steps[3], resp.steps[5], resp.steps[6]
    assert list(plan.sub_questions) == ["What is a glider?", "How far can it fly?"]
    assert (call.node, call.tool, call.call_id, call.arguments_json, call.ok) == (
        "tool_caller",
        "search",
        "c1",
        '{"query": "glider range"}',
        True,
    )
    assert (wait.approval_id, wait.tool) == (APPROVAL_ID, "http_get")
    assert not decided.ok and decided.text == "rejected by bob"


@pytest.mark.parametrize("status", list(RunStatus))
async def test_every_run_status_and_a_cached_answer_translate(status: RunStatus) -> None:
    resp = await servicer(FakeCore(sample_answer(status=status, cached=True, steps=[]))).Ask(request(), CTX)
    assert pb.RunStatus.Name(resp.status) == f"RUN_STATUS_{status.name}"
    assert resp.cached


async def test_contexts_are_returned_only_when_asked_for_in_ask_and_in_the_streams_final_answer() -> None:
    contexts = [
        Context("c1", "d1", "Gliders fly far on thermals.", start=10, score=0.9, end=38),
        Context("c2", "d2", "Winches launch gliders.", start=0, score=0.4),  # end unknown: start + len
    ]
    core = FakeCore(sample_answer(contexts=contexts))
    assert list((await servicer(core).Ask(request(), CTX)).contexts) == []
    resp = await servicer(core).Ask(request(include_contexts=True), CTX)
    expected = [
        pb.RetrievedContext(
            chunk_id="c1", document_id="d1", start=10, end=38, text="Gliders fly far on thermals.", score=0.9
        ),
        pb.RetrievedContext(
            chunk_id="c2", document_id="d2", start=0, end=23, text="Winches launch gliders.", score=0.4
        ),
    ]
    assert [(c.chunk_id, c.start, c.end, c.text) for c in resp.contexts] == [
        (c.chunk_id, c.start, c.end, c.text) for c in expected
    ]
    assert [c.score for c in resp.contexts] == pytest.approx([0.9, 0.4])
    events = [ev async for ev in servicer(core).AskStream(request(include_contexts=True), CTX)]
    assert [c.chunk_id for c in events[-1].final.contexts] == ["c1", "c2"]
    events = [ev async for ev in servicer(core).AskStream(request(), CTX)]
    assert list(events[-1].final.contexts) == []


@pytest.mark.parametrize("kind", list(StepKind))
def test_every_step_kind_has_its_proto_kind(kind: StepKind) -> None:
    assert pb.StepKind.Name(step_pb(Step(kind, "n", "t")).kind) == f"STEP_KIND_{kind.name}"


async def test_ask_stream_shows_stages_steps_sentences_then_the_final_answer() -> None:
    core = FakeCore()
    events = [ev async for ev in servicer(core).AskStream(request(graph="react", session_id="s.2"), CTX)]
    kinds = [ev.WhichOneof("event") for ev in events]
    assert kinds == ["stage", *["step"] * 12, "sentence", "stage", "final"]
    assert events[0].stage.stage == pb.STAGE_INPUT_GUARD and events[-2].stage.stage == pb.STAGE_DONE
    assert [ev.step.index for ev in events[1:13]] == list(range(12))
    assert events[2].step.kind == pb.STEP_KIND_MEMORY
    assert events[13].sentence.text == "Gliders fly far."
    assert events[-1].final.run_id == RUN_ID and len(events[-1].final.steps) == 12
    assert core.calls[0]["how"] == "run"
    assert (core.calls[0]["graph"], core.calls[0]["session_id"], core.calls[0]["run_id"]) == (
        "react",
        "s.2",
        "",
    )
    assert core.calls[0]["no_cache"] is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"graph": "Plan Execute"}, "invalid graph"),
        ({"graph": "../rag"}, "invalid graph"),
        ({"session_id": "a/b"}, "invalid session_id"),
        ({"session_id": "x" * 65}, "invalid session_id"),
        ({"run_id": "not-a-run"}, "invalid run_id"),
        ({"run_id": RUN_ID.upper()}, "invalid run_id"),
        ({"tenant_id": "Acme"}, "invalid tenant_id"),
        ({"access": common_pb2.AccessScope(principals=["../x"])}, "invalid principal"),
    ],
)
async def test_bad_ids_of_an_ask_are_invalid_argument_before_the_pipeline_runs(
    changes: dict[str, Any], message: str
) -> None:
    core = FakeCore()
    s = servicer(core)
    with pytest.raises(InvalidArgument, match=message):
        await s.Ask(request(**changes), CTX)
    with pytest.raises(InvalidArgument, match=message):
        [ev async for ev in s.AskStream(request(**changes), CTX)]
    assert core.calls == []


# ---- approvals ----------------------------------------------------------------------------------------


async def test_pending_approvals_are_the_tenants_own() -> None:
    book = FakeApprovals()
    mine = book.add("acme", approval_id=APPROVAL_ID)
    book.add("globex")
    resp = await servicer(approvals=book).ListPendingApprovals(
        pb.ListPendingApprovalsRequest(tenant_id="acme"), CTX
    )
    assert [a.approval_id for a in resp.approvals] == [mine.approval_id]
    a = resp.approvals[0]
    assert (a.tenant_id, a.run_id, a.graph, a.tool, a.requested_by) == (
        "acme",
        RUN_ID,
        "react",
        "http_get",
        "alice",
    )
    assert (a.state, a.requested_at_ms, a.expires_at_ms) == (pb.APPROVAL_STATE_PENDING, 1_000, 3_601_000)
    assert a.arguments_json == '{"url": "https://example.org/"}'


async def test_approve_and_reject_are_decided_by_the_verified_caller() -> None:
    book = FakeApprovals()
    first, second = book.add("acme").approval_id, book.add("acme").approval_id
    s = servicer(approvals=book)
    with as_("bob"):
        approved = await s.Approve(
            pb.DecideApprovalRequest(tenant_id="acme", approval_id=first, reason="ok"), CTX
        )
        rejected = await s.Reject(pb.DecideApprovalRequest(tenant_id="acme", approval_id=second), CTX)
    assert (approved.state, approved.decided_by, approved.reason) == (pb.APPROVAL_STATE_APPROVED, "bob", "ok")
    assert (rejected.state, rejected.decided_by, rejected.decided_at_ms) == (
        pb.APPROVAL_STATE_REJECTED,
        "bob",
        2_000,
    )
    with as_("bob"), pytest.raises(FailedPrecondition):
        await s.Approve(pb.DecideApprovalRequest(tenant_id="acme", approval_id=second), CTX)
    listed = await s.ListPendingApprovals(pb.ListPendingApprovalsRequest(tenant_id="acme"), CTX)
    assert not listed.approvals


async def test_another_tenants_approval_is_not_found_like_an_unknown_one() -> None:
    book = FakeApprovals()
    theirs = book.add("globex").approval_id
    s = servicer(approvals=book)
    for approval_id in (theirs, APPROVAL_ID):
        with pytest.raises(NotFound):
            await s.Reject(pb.DecideApprovalRequest(tenant_id="acme", approval_id=approval_id), CTX)
    assert book.items[theirs].state == "pending"


@pytest.mark.parametrize(
    ("approval_id", "reason", "message"),
    [
        ("", "", "approval_id is required"),
        ("../" + "a" * 29, "", "invalid approval_id"),
        (APPROVAL_ID.upper(), "", "invalid approval_id"),
        (APPROVAL_ID, "x" * 2001, "reason is 2001 characters"),
    ],
)
async def test_bad_decisions_are_invalid_argument(approval_id: str, reason: str, message: str) -> None:
    book = FakeApprovals()
    book.add("acme", approval_id=APPROVAL_ID)
    req = pb.DecideApprovalRequest(tenant_id="acme", approval_id=approval_id, reason=reason)
    with pytest.raises(InvalidArgument, match=message):
        await servicer(approvals=book).Approve(req, CTX)
    assert book.items[APPROVAL_ID].state == "pending"


# ---- graphs and tools ---------------------------------------------------------------------------------


async def test_graphs_mark_the_tenants_default() -> None:
    s = servicer(default_graph=defaults({"acme": "react"}))
    resp = await s.ListGraphs(pb.ListGraphsRequest(tenant_id="acme"), CTX)
    assert [(g.name, g.is_default) for g in resp.graphs] == [("rag", False), ("react", True)]
    assert list(resp.graphs[1].edges) == [
        "__start__->tool_caller",
        "tool_caller-?>tool_caller",
        "tool_caller-?>__end__",
    ]
    assert list(resp.graphs[0].nodes) == ["retriever"]
    other = await s.ListGraphs(pb.ListGraphsRequest(tenant_id="globex"), CTX)
    assert [(g.name, g.is_default) for g in other.graphs] == [("rag", True), ("react", False)]


async def test_tools_are_listed_for_the_tenant_asked() -> None:
    tools = FakeTools()
    resp = await servicer(tools=tools).ListTools(pb.ListToolsRequest(tenant_id="acme"), CTX)
    assert tools.asked == ["acme"]
    search, http_get = resp.tools
    assert (search.name, search.sensitive, search.permission, list(search.graphs), search.enabled) == (
        "search",
        False,
        "search",
        [],
        True,
    )
    assert (http_get.sensitive, http_get.permission, list(http_get.graphs), http_get.enabled) == (
        True,
        "tools.external",
        ["react"],
        False,
    )
    assert '"url"' in http_get.arguments_schema_json


# ---- prompt versions ----------------------------------------------------------------------------------


async def test_prompt_versions_are_created_by_the_caller_listed_and_split() -> None:
    prompts = FakePrompts()
    s = servicer(prompts=prompts)
    with as_("alice"):
        v1 = await s.CreatePromptVersion(
            pb.CreatePromptVersionRequest(tenant_id="acme", name="synthesize", template="Answer: {question}"),
            CTX,
        )
        v2 = await s.CreatePromptVersion(
            pb.CreatePromptVersionRequest(
                tenant_id="acme", name="synthesize", template="Be brief. {question}"
            ),
            CTX,
        )
    assert (v1.version, v2.version, v1.created_by, v1.tenant_id, v1.name) == (
        "v1",
        "v2",
        "alice",
        "acme",
        "synthesize",
    )
    assert len(v1.digest) == 64 and v1.digest != v2.digest and v1.created_at_ms > 0
    split = await s.SetPromptSplit(
        pb.SetPromptSplitRequest(tenant_id="acme", name="synthesize", percent={"v1": 30, "v2": 70}), CTX
    )
    assert (split.tenant_id, split.name, dict(split.percent)) == ("acme", "synthesize", {"v1": 30, "v2": 70})
    listed = await s.ListPromptVersions(
        pb.ListPromptVersionsRequest(tenant_id="acme", name="synthesize"), CTX
    )
    assert [v.version for v in listed.versions] == ["v1", "v2"]
    assert dict(listed.split.percent) == {"v1": 30, "v2": 70}
    assert listed.versions[1].template == "Be brief. {question}"
    other = await s.ListPromptVersions(
        pb.ListPromptVersionsRequest(tenant_id="globex", name="synthesize"), CTX
    )
    assert not other.versions and not other.split.percent
    cleared = await s.SetPromptSplit(pb.SetPromptSplitRequest(tenant_id="acme", name="synthesize"), CTX)
    assert dict(cleared.percent) == {}


@pytest.mark.parametrize(
    ("call", "fields", "message"),
    [
        ("CreatePromptVersion", {"name": "", "template": "x"}, "name is required"),
        ("CreatePromptVersion", {"name": "../plan", "template": "x"}, "invalid name"),
        ("CreatePromptVersion", {"name": "plan", "template": "  "}, "template is empty"),
        ("CreatePromptVersion", {"name": "plan", "template": "x" * 20_001}, "template is 20001"),
        ("ListPromptVersions", {"name": "summarize"}, "invalid name"),
        ("SetPromptSplit", {"name": "plan", "percent": {"v1": 50}}, "sum to 50"),
        ("SetPromptSplit", {"name": "plan", "percent": {"v1": 0, "v2": 100}}, "each share is 1-100"),
        ("SetPromptSplit", {"name": "plan", "percent": {"../v1": 100}}, "invalid version"),
        ("SetPromptSplit", {"name": "plan", "percent": {"v1": 150, "v2": -50}}, "each share"),
    ],
)
async def test_bad_prompt_requests_are_invalid_argument(
    call: str, fields: dict[str, Any], message: str
) -> None:
    prompts = FakePrompts()
    s = servicer(prompts=prompts)
    req = {
        "CreatePromptVersion": pb.CreatePromptVersionRequest,
        "ListPromptVersions": pb.ListPromptVersionsRequest,
        "SetPromptSplit": pb.SetPromptSplitRequest,
    }[call](tenant_id="acme", **fields)
    with pytest.raises(InvalidArgument, match=message):
        await getattr(s, call)(req, CTX)
    assert prompts.versions == {} and prompts.splits == {}


async def test_a_split_naming_a_version_the_tenant_lacks_is_refused_by_the_book() -> None:
    s = servicer()
    with pytest.raises(InvalidArgument, match="unknown prompt version 'v1'"):
        await s.SetPromptSplit(
            pb.SetPromptSplitRequest(tenant_id="acme", name="plan", percent={"v1": 100}), CTX
        )
