"""Paused runs' checkpoints (a real AsyncSqliteSaver on a temp file) are purged on erasure — only the
erased tenant's runs, once per event id, over the bus (local and mirrored), leaving runs live in this
process alone — and on tenant deletion (runs begun before it); a live run whose approval the erasure
expires stops and leaves no checkpoint."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from isthmus_agent_orchestrator.agents.checkpoint import (
    CheckpointPurger,
    open_sqlite_checkpointer,
    runs_path,
)
from isthmus_agent_orchestrator.agents.runtime import AgentRuntime, GraphOutcome
from isthmus_agent_orchestrator.agents.testing import (
    FakeToolRegistry,
    InMemoryApprovalBook,
    KeywordSearcher,
    ScriptedChatModel,
    fetch_tool,
    tool_call_reply,
)
from isthmus_agent_orchestrator.agents.tools.approvals import SqliteApprovalBook
from isthmus_agent_orchestrator.agents.types import ApprovalBook, ChatReply, RunStatus, Step, StepKind, Usage
from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ErasureRequested, TenantDeleted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import NotFound
from isthmus_core.ports.generator import Context
from isthmus_core.regions import mirrored

DOCS = [Context("a1", "da1", "Gliders soar in thermals.")]
PAGE = "http://wiki.example/gliders"
R1, R2, R3 = "1" * 32, "2" * 32, "3" * 32


def runtime(book: ApprovalBook, saver: Any) -> AgentRuntime:
    chat = ScriptedChatModel(
        *(tool_call_reply("fetch", {"url": PAGE}) for _ in range(3)), ChatReply("done", (), Usage("m", 1, 1))
    )
    tools = FakeToolRegistry.over(KeywordSearcher(DOCS), fetch_tool({PAGE: "Gliders have long wings."}))
    return AgentRuntime(
        tools=tools, generator=ExtractiveGenerator(), approvals=book, chat=chat, checkpointer=saver
    )


def react(rt: AgentRuntime, tenant: str, run_id: str) -> AsyncGenerator[Step | GraphOutcome, None]:
    question = f"What do gliders of {tenant} look like?"
    return rt.execute("react", tenant, question, ("eng",), 2, "alice", run_id)


async def pause(rt: AgentRuntime, tenant: str, run_id: str, *, stop: bool = True) -> Any:
    """Run until the run waits for its approval; ``stop``: the process stops there (the run is closed,
    its checkpoint stays)."""
    run = react(rt, tenant, run_id)
    async for item in run:
        if isinstance(item, Step) and item.kind is StepKind.APPROVAL_WAIT:
            break
    else:
        raise AssertionError("never waited")
    if stop:
        await run.aclose()
    return run


async def paused(rt: AgentRuntime, tenant: str, run_id: str) -> bool:
    try:
        await rt.lookup(run_id, tenant, "alice")
    except NotFound:
        return False
    return True


def file_bytes(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.fixture
async def saver(tmp_path: Path) -> AsyncIterator[Any]:
    s, close = await open_sqlite_checkpointer(runs_path(tmp_path))
    try:
        yield s
    finally:
        await close()


async def test_erasure_deletes_only_the_tenants_runs_once_per_event(saver: Any, tmp_path: Path) -> None:
    rt = runtime(InMemoryApprovalBook(), saver)
    await pause(rt, "acme", R1)
    await pause(rt, "globex", R2)
    assert b"gliders of acme" in file_bytes(runs_path(tmp_path))
    purger = CheckpointPurger(saver)
    assert set(await purger.runs_of(TenantId("acme"))) == {R1}

    assert await purger.erase_tenant(TenantId("acme"), "e" * 32) == 1
    assert not await paused(rt, "acme", R1)
    assert await paused(rt, "globex", R2)
    assert b"gliders of acme" not in file_bytes(runs_path(tmp_path))  # zeroed, the log truncated
    assert b"gliders of globex" in file_bytes(runs_path(tmp_path))

    # the same erasure heard again (a consumer group starting over) leaves newer paused runs alone
    await pause(rt, "acme", R3)
    assert await purger.erase_tenant(TenantId("acme"), "e" * 32) is None
    assert await paused(rt, "acme", R3)
    assert await purger.erase_tenant(TenantId("acme"), "f" * 32) == 1
    assert not await paused(rt, "acme", R3)
    assert await paused(rt, "globex", R2)


async def test_runs_live_in_this_process_are_left_to_end_themselves(saver: Any) -> None:
    rt = runtime(InMemoryApprovalBook(), saver)
    await pause(rt, "acme", R1)
    await pause(rt, "acme", R2)
    purger = CheckpointPurger(saver, live=lambda: {R2})
    assert await purger.erase_tenant(TenantId("acme"), "e" * 32) == 1
    assert not await paused(rt, "acme", R1)
    assert await paused(rt, "acme", R2)


async def test_tenant_deletion_deletes_the_runs_begun_before_it(saver: Any) -> None:
    rt = runtime(InMemoryApprovalBook(), saver)
    await pause(rt, "acme", R1)
    await pause(rt, "globex", R2)
    await pause(rt, "acme", R3)  # the tenant re-created after its deletion: its run begins after it
    runs = await CheckpointPurger(saver).runs_of(TenantId("acme"))
    deleted_at = datetime.fromisoformat(runs[R3])  # the deletion at the moment R3 began
    assert datetime.fromisoformat(runs[R1]) < deleted_at
    assert await CheckpointPurger(saver).delete_tenant(TenantId("acme"), deleted_at) == 1
    assert not await paused(rt, "acme", R1)
    assert await paused(rt, "acme", R3)
    assert await paused(rt, "globex", R2)


async def test_every_replica_purges_from_the_bus(tmp_path: Path) -> None:
    savers, closes, rts = [], [], []
    bus = InProcessBus()
    for name in ("r1", "r2"):
        s, close = await open_sqlite_checkpointer(runs_path(tmp_path / name))
        savers.append(s)
        closes.append(close)
        rt = runtime(InMemoryApprovalBook(), s)
        rts.append(rt)
        for tenant, run in (("acme", R1), ("globex", R2), ("initech", R3)):
            await pause(rt, tenant, run)
    subs = [sub for s in savers for sub in CheckpointPurger(s).subscriptions("agent-orchestrator", ["eu"])]
    assert len({sub.group for sub in subs}) == 2  # a group per replica: each hears every event
    for sub in subs:
        bus.subscribe(sub)
    await bus.start()
    try:
        await publish_event(
            bus,
            topics.ERASURES_REQUESTED,
            ErasureRequested(tenant_id="acme", idempotency_key="e1", erasure_id="1" * 32),
        )
        await publish_event(
            bus,
            mirrored(topics.ERASURES_REQUESTED, "eu"),
            ErasureRequested(tenant_id="globex", idempotency_key="e2", erasure_id="2" * 32),
        )
        await bus.drain()
        for rt in rts:
            assert not await paused(rt, "acme", R1) and not await paused(rt, "globex", R2)
            assert await paused(rt, "initech", R3)
        await publish_event(
            bus, topics.TENANTS_DELETED, TenantDeleted(tenant_id="initech", idempotency_key="d")
        )
        await bus.drain()
        for rt in rts:
            assert not await paused(rt, "initech", R3)
    finally:
        await bus.stop()
        for close in closes:
            await close()


async def test_a_live_run_stopped_by_an_erasure_leaves_no_checkpoint(saver: Any, tmp_path: Path) -> None:
    book = SqliteApprovalBook(tmp_path / "approvals.sqlite")
    rt = runtime(book, saver)
    run = await pause(rt, "acme", R1, stop=False)  # still live: waiting in this process
    purger = CheckpointPurger(saver, live=lambda: {R1})
    assert await purger.erase_tenant(TenantId("acme"), "e" * 32) == 0
    book.erase_tenant(TenantId("acme"), "e" * 32)  # its approval expires: the run goes on, and stops
    steps: list[Step] = []
    outcome: GraphOutcome | None = None
    async for item in run:
        if isinstance(item, GraphOutcome):
            outcome = item
        else:
            steps.append(item)
    assert outcome is not None and outcome.status is RunStatus.STOPPED
    assert steps[0].kind is StepKind.APPROVAL_DECIDED and "erasure" in steps[0].text
    assert not await paused(rt, "acme", R1)
    book.close()
