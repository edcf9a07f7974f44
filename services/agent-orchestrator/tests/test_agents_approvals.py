"""Sensitive tool calls wait for a person: the run pauses, resumes on approval, stops on rejection or
expiry; a paused run survives a restart (SQLite checkpoints) and only its owner may resume it."""

from __future__ import annotations

import stat
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest

from isthmus_agent_orchestrator.agents.checkpoint import open_sqlite_checkpointer, runs_path
from isthmus_agent_orchestrator.agents.runtime import AgentRuntime, GraphOutcome
from isthmus_agent_orchestrator.agents.testing import (
    FakeToolRegistry,
    InMemoryApprovalBook,
    KeywordSearcher,
    ScriptedChatModel,
    fetch_tool,
    tool_call_reply,
)
from isthmus_agent_orchestrator.agents.types import ChatReply, RunStatus, Step, StepKind, Usage
from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_core.errors import NotFound
from isthmus_core.ports.generator import Context

DOCS = [Context("a1", "da1", "Gliders soar in thermals.")]
PAGE = "http://wiki.example/gliders"


def setup(
    book: InMemoryApprovalBook, chat: ScriptedChatModel, checkpointer: object = None
) -> tuple[AgentRuntime, FakeToolRegistry]:
    tools = FakeToolRegistry.over(KeywordSearcher(DOCS), fetch_tool({PAGE: "Gliders have long wings."}))
    rt = AgentRuntime(
        tools=tools, generator=ExtractiveGenerator(), approvals=book, chat=chat, checkpointer=checkpointer
    )
    return rt, tools


def fetch_then_finish() -> ScriptedChatModel:
    return ScriptedChatModel(tool_call_reply("fetch", {"url": PAGE}), ChatReply("done", (), Usage("m", 1, 1)))


def react(
    rt: AgentRuntime, run_id: str, resume: bool = False, subject: str = "alice", tenant: str = "t"
) -> AsyncGenerator[Step | GraphOutcome, None]:
    return rt.execute("react", tenant, "What do gliders look like?", ("eng",), 2, subject, run_id, resume)


RUN = "0123456789abcdef0123456789abcdef"


async def drain(run: AsyncIterator[Step | GraphOutcome]) -> tuple[list[Step], GraphOutcome]:
    steps: list[Step] = []
    async for item in run:
        if isinstance(item, GraphOutcome):
            return steps, item
        steps.append(item)
    raise AssertionError("no outcome")


async def until_waiting(run: AsyncIterator[Step | GraphOutcome]) -> tuple[list[Step], Step]:
    steps: list[Step] = []
    async for item in run:
        assert isinstance(item, Step)
        steps.append(item)
        if item.kind is StepKind.APPROVAL_WAIT:
            return steps, item
    raise AssertionError("never waited")


async def test_a_sensitive_call_waits_for_its_approval_then_runs() -> None:
    book, chat = InMemoryApprovalBook(), fetch_then_finish()
    rt, tools = setup(book, chat)
    run = react(rt, RUN)
    before, wait = await until_waiting(run)
    assert before == [wait]  # nothing of the call is shown (or done) before the approval
    [approval] = book.list_pending("t")
    assert (wait.approval_id, wait.tool, wait.arguments_json) == (
        approval.approval_id,
        "fetch",
        approval.arguments_json,
    )
    assert (approval.run_id, approval.graph, approval.requested_by) == (RUN, "react", "alice")
    assert tools.calls == []
    await book.decide("t", approval.approval_id, True, "bob", "fine")
    steps, outcome = await drain(run)
    assert [s.kind for s in steps] == [StepKind.APPROVAL_DECIDED, StepKind.TOOL_CALL, StepKind.TOOL_RESULT]
    assert steps[0].ok and "approved by bob" in steps[0].text
    assert steps[2].ok and steps[2].text == "Gliders have long wings."
    assert tools.calls == [("fetch", {"url": PAGE})]
    assert outcome.status is RunStatus.COMPLETED


@pytest.mark.parametrize("outcome_of", ["rejected", "expired"])
async def test_a_rejected_or_expired_call_stops_the_run_without_calling_the_tool(outcome_of: str) -> None:
    book, chat = InMemoryApprovalBook(), fetch_then_finish()
    rt, tools = setup(book, chat)
    run = react(rt, RUN)
    _, wait = await until_waiting(run)
    if outcome_of == "rejected":
        await book.decide("t", wait.approval_id, False, "bob", "no browsing")
    else:
        book.expire(wait.approval_id)
    steps, outcome = await drain(run)
    assert [s.kind for s in steps] == [StepKind.APPROVAL_DECIDED, StepKind.TOOL_RESULT]
    assert not steps[0].ok and not steps[1].ok and outcome_of in steps[1].text
    assert tools.calls == [] and len(chat.replies) == 1  # the model was not asked again
    assert outcome.status is RunStatus.STOPPED


async def test_a_paused_run_survives_a_restart_and_resumes_by_its_run_id(tmp_path: Path) -> None:
    book = InMemoryApprovalBook()  # stands for the persisted approval book (tools slice)
    path = runs_path(tmp_path / "data")
    saver, close = await open_sqlite_checkpointer(path)
    first_chat = fetch_then_finish()
    rt, _ = setup(book, first_chat, saver)
    run = react(rt, RUN)
    await until_waiting(run)
    await run.aclose()  # the process stops while the run waits
    await close()
    del rt, saver
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    saver, close = await open_sqlite_checkpointer(path)
    try:
        second_chat = ScriptedChatModel(ChatReply("done", (), Usage("m", 1, 1)))
        rt, tools = setup(book, second_chat, saver)
        info = await rt.lookup(RUN, "t", "alice")
        assert (info.graph, info.question, info.top_k) == ("react", "What do gliders look like?", 2)
        [approval] = book.list_pending("t")
        await book.decide("t", approval.approval_id, True, "bob", "")
        steps, outcome = await drain(react(rt, RUN, resume=True))
        assert [s.kind for s in steps] == [
            StepKind.APPROVAL_WAIT,
            StepKind.APPROVAL_DECIDED,
            StepKind.TOOL_CALL,
            StepKind.TOOL_RESULT,
        ]
        assert steps[-1].text == "Gliders have long wings." and outcome.status is RunStatus.COMPLETED
        assert len(book.approvals) == 1  # the resumed node asked again and got the same approval
        assert len(first_chat.replies) == 1 and second_chat.replies == []  # the first choice was kept
        assert tools.calls == [("fetch", {"url": PAGE})]
        with pytest.raises(NotFound):  # a run that ended is not kept
            await rt.lookup(RUN, "t", "alice")
    finally:
        await close()


@pytest.mark.parametrize(
    ("subject", "tenant", "run_id"), [("mallory", "t", RUN), ("alice", "u", RUN), ("alice", "t", "f" * 32)]
)
async def test_only_the_runs_owner_may_resume_it(subject: str, tenant: str, run_id: str) -> None:
    book, chat = InMemoryApprovalBook(), fetch_then_finish()
    rt, tools = setup(book, chat)
    await until_waiting(react(rt, RUN))
    with pytest.raises(NotFound) as refused:
        await drain(react(rt, run_id, resume=True, subject=subject, tenant=tenant))
    assert str(refused.value) == f"no run {run_id} to resume"  # the same as for an unknown run
    assert tools.calls == [] and book.list_pending("t")[0].state == "pending"


async def test_rag_runs_are_not_resumable() -> None:
    rt, _ = setup(InMemoryApprovalBook(), ScriptedChatModel())
    _, outcome = await drain(rt.execute("rag", "t", "gliders?", (), 2, "alice", RUN))
    assert outcome.contexts
    with pytest.raises(NotFound):
        await rt.lookup(RUN, "t", "alice")


async def test_a_sub_agent_cannot_ask_for_an_approval() -> None:
    from isthmus_agent_orchestrator.agents.types import ToolContext

    book, chat = InMemoryApprovalBook(), fetch_then_finish()
    rt, tools = setup(book, chat)
    result = await rt.run_graph("react", "What do gliders look like?", ToolContext("t", RUN, "react", (), 2))
    assert result.ok and tools.calls == [] and book.approvals == {}
