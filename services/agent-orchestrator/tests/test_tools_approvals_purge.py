"""SqliteApprovalBook purge and retention: an erasure (once per event id, local or mirrored) and a tenant
deletion expire the tenant's pending approvals (arguments blanked; the waiting run learns it) and delete
its others; late bus events cannot bring them back; decided approvals are swept after keep_decided_s."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from isthmus_agent_orchestrator.agents.tools.approvals import SqliteApprovalBook, approval_topics
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import publish_event, publisher
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    ApprovalDecided,
    ApprovalRequested,
    ErasureRequested,
    TenantDeleted,
)
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import ConfigurationError, NotFound
from isthmus_core.regions import mirrored

RUN = "a" * 32
RUN2 = "b" * 32
ARGS = '{"url": "https://people.example/alice-smith"}'
ACME = TenantId("acme")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def open_book(path: Path, clock: Clock, **kw: Any) -> SqliteApprovalBook:
    return SqliteApprovalBook(path / "approvals.sqlite", timeout_s=60.0, clock=clock, **kw)


async def ask(book: SqliteApprovalBook, tenant: str = "acme", run: str = RUN, args: str = ARGS) -> Any:
    return await book.request(tenant, run, "react", "http_get", args, "alice")


def stored_arguments(path: Path) -> list[str]:
    conn = sqlite3.connect(path / "approvals.sqlite")
    try:
        return [r[0] for r in conn.execute("SELECT arguments_json FROM approvals")]
    finally:
        conn.close()


async def test_erasure_expires_pending_deletes_decided_once_per_event(tmp_path: Path) -> None:
    clock = Clock()
    book = open_book(tmp_path, clock)
    pending = await ask(book)
    decided = await ask(book, run=RUN2)
    await book.decide("acme", decided.approval_id, True, "bob", "")
    other = await ask(book, tenant="globex")
    waiting = asyncio.create_task(book.wait(pending.approval_id))
    await asyncio.sleep(0)  # a yield: the waiter waits for the decision
    assert not waiting.done()

    assert book.erase_tenant(ACME, "e" * 32) == 1
    stopped = await waiting  # the paused run stops rather than hangs
    assert (stopped.state, stopped.reason, stopped.arguments_json) == ("expired", "erasure", "")
    with pytest.raises(NotFound):
        book.get("acme", decided.approval_id)
    assert book.list_pending("acme") == []
    # the other tenant's approval is untouched
    assert [(p.approval_id, p.arguments_json) for p in book.list_pending("globex")] == [
        (other.approval_id, ARGS)
    ]
    assert sorted(stored_arguments(tmp_path)) == sorted(["", ARGS])  # only globex's still names anyone

    # the run resumed (its node asks again with the original arguments) gets the expiry, no new request
    again = await ask(book)
    assert (again.approval_id, again.state, again.reason) == (pending.approval_id, "expired", "erasure")
    assert book.list_pending("acme") == []

    # the same erasure heard again (a consumer group starting over) leaves newer approvals alone
    newer = await ask(book, run="c" * 32)
    assert book.erase_tenant(ACME, "e" * 32) == 0
    assert [p.approval_id for p in book.list_pending("acme")] == [newer.approval_id]
    # another erasure purges it
    assert book.erase_tenant(ACME, "f" * 32) == 1
    assert book.list_pending("acme") == []
    book.close()


async def test_tenant_deletion_purges_approvals_requested_before_it(tmp_path: Path) -> None:
    clock = Clock()
    book = open_book(tmp_path, clock)
    old = await ask(book)
    waiting = asyncio.create_task(book.wait(old.approval_id))
    await asyncio.sleep(0)
    decided = await ask(book, run=RUN2)
    await book.decide("acme", decided.approval_id, False, "bob", "no")
    other = await ask(book, tenant="globex")
    deleted_at = datetime.fromtimestamp(clock.now, UTC)
    clock.now += 10
    recreated = await ask(book, run="c" * 32)  # the tenant re-created after its deletion

    assert book.delete_tenant(ACME, deleted_at) == 1
    stopped = await waiting
    assert (stopped.state, stopped.reason, stopped.arguments_json) == ("expired", "tenant deleted", "")
    with pytest.raises(NotFound):
        book.get("acme", decided.approval_id)
    assert [p.approval_id for p in book.list_pending("acme")] == [recreated.approval_id]
    assert [p.approval_id for p in book.list_pending("globex")] == [other.approval_id]
    book.close()


async def test_late_bus_events_do_not_bring_purged_approvals_back(tmp_path: Path) -> None:
    clock = Clock()
    book = open_book(tmp_path, clock)
    before = datetime.fromtimestamp(clock.now - 5, UTC)
    clock.now += 1
    book.erase_tenant(ACME, "e" * 32)
    bus = InProcessBus()
    await bus.ensure_topics(approval_topics([]))
    for s in book.subscriptions("agent-orchestrator", []):
        bus.subscribe(s)
    await bus.start()
    try:
        # made in another replica before the erasure, heard after it (the topics are consumed apart)
        await publish_event(
            bus,
            topics.APPROVALS_REQUESTED,
            ApprovalRequested(
                tenant_id="acme",
                idempotency_key="r",
                occurred_at=before,
                approval_id="d" * 32,
                run_id=RUN,
                graph="react",
                tool="http_get",
                arguments_json=ARGS,
                requested_by="alice",
                expires_at_ms=2**40,
            ),
        )
        await publish_event(
            bus,
            topics.APPROVALS_DECIDED,
            ApprovalDecided(
                tenant_id="acme",
                idempotency_key="d",
                occurred_at=before,
                approval_id="9" * 32,
                run_id=RUN,
                state="approved",
                decided_by="bob",
            ),
        )
        await bus.drain()
    finally:
        await bus.stop()
    with pytest.raises(NotFound):
        book.get("acme", "d" * 32)
    with pytest.raises(NotFound):
        book.get("acme", "9" * 32)
    assert stored_arguments(tmp_path) == []
    book.close()


async def test_every_replica_purges_on_local_and_mirrored_erasures_and_deletions(tmp_path: Path) -> None:
    bus = InProcessBus()
    await bus.ensure_topics(approval_topics(["eu"]))
    books = []
    for name in ("r1", "r2"):
        book = SqliteApprovalBook(
            tmp_path / name / "approvals.sqlite",
            publish_requested=publisher(bus, topics.APPROVALS_REQUESTED),
            publish_decided=publisher(bus, topics.APPROVALS_DECIDED),
        )
        for s in book.subscriptions("agent-orchestrator", ["eu"]):
            bus.subscribe(s)
        books.append(book)
    r1, r2 = books
    await bus.start()
    try:
        acme = await ask(r1)
        globex = await ask(r1, tenant="globex")
        initech = await ask(r1, tenant="initech")
        await bus.drain()
        assert [p.approval_id for p in r2.list_pending("acme")] == [acme.approval_id]
        waiting = asyncio.create_task(r1.wait(acme.approval_id))
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
        assert r1.get("acme", acme.approval_id).state == "expired"
        assert (await waiting).reason == "erasure"
        for b in books:
            assert b.list_pending("acme") == [] and b.list_pending("globex") == []
            assert b.get("globex", globex.approval_id).state == "expired"
            assert [p.approval_id for p in b.list_pending("initech")] == [initech.approval_id]
        await publish_event(
            bus, topics.TENANTS_DELETED, TenantDeleted(tenant_id="initech", idempotency_key="d")
        )
        await bus.drain()
    finally:
        await bus.stop()
    for name, b in zip(("r1", "r2"), books, strict=True):
        assert b.list_pending("initech") == []
        assert b.get("initech", initech.approval_id).reason == "tenant deleted"
        assert ARGS not in stored_arguments(tmp_path / name)
        b.close()


async def test_decided_approvals_are_swept_after_the_retention(tmp_path: Path) -> None:
    clock = Clock()
    book = open_book(tmp_path, clock, keep_decided_s=3600.0)
    decided = await ask(book)
    await book.decide("acme", decided.approval_id, True, "bob", "")
    forgotten = await ask(book, run=RUN2)  # pending, its deadline passes unnoticed
    clock.now += 1800
    kept = await ask(book, run="c" * 32)
    await book.decide("acme", kept.approval_id, False, "bob", "")
    # within the retention an identical call still gets its decision
    assert (await ask(book)).state == "approved"
    clock.now += 1900  # decided over an hour ago; forgotten's deadline passed over an hour ago
    await ask(book, tenant="globex")  # any request sweeps
    with pytest.raises(NotFound):
        book.get("acme", decided.approval_id)
    with pytest.raises(NotFound):
        book.get("acme", forgotten.approval_id)
    assert book.get("acme", kept.approval_id).state == "rejected"
    book.close()


def test_the_retention_must_exceed_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="longer"):
        SqliteApprovalBook(tmp_path / "a.sqlite", timeout_s=3600.0, keep_decided_s=600.0)
