"""SqliteApprovalBook: request/decide/wait, idempotency, expiry, decisions from another replica over the
bus, and survival of the SQLite file across a reopen (a restart)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus_agent_orchestrator.agents.tools.approvals import SqliteApprovalBook, approval_topics
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import publish_event, publisher
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ApprovalDecided, ApprovalRequested
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

RUN = "a" * 32
ARGS = '{"url": "https://docs.example/a"}'


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Published:
    def __init__(self) -> None:
        self.requested: list[ApprovalRequested] = []
        self.decided: list[ApprovalDecided] = []
        self.fail = False

    async def on_requested(self, ev: ApprovalRequested) -> None:
        if self.fail:
            raise Unavailable("bus down")
        self.requested.append(ev)

    async def on_decided(self, ev: ApprovalDecided) -> None:
        if self.fail:
            raise Unavailable("bus down")
        self.decided.append(ev)


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(tmp_path: Path, published: Published, clock: Clock) -> Iterator[SqliteApprovalBook]:
    b = open_book(tmp_path, published, clock)
    yield b
    b.close()


def open_book(
    tmp_path: Path, published: Published | None = None, clock: Clock | None = None, **kw: Any
) -> SqliteApprovalBook:
    return SqliteApprovalBook(
        tmp_path / "agent-orchestrator" / "approvals.sqlite",
        timeout_s=kw.pop("timeout_s", 60.0),
        publish_requested=published.on_requested if published else None,
        publish_decided=published.on_decided if published else None,
        clock=clock or Clock(),
        **kw,
    )


async def ask(book: SqliteApprovalBook, tenant: str = "acme", args: str = ARGS) -> Any:
    return await book.request(tenant, RUN, "react", "http_get", args, "alice")


async def test_request_decide_wait(book: SqliteApprovalBook, published: Published, clock: Clock) -> None:
    a = await ask(book)
    assert a.state == "pending" and len(a.approval_id) == 32 and a.tool == "http_get"
    assert a.requested_at_ms == int(clock.now * 1000) and a.expires_at_ms == a.requested_at_ms + 60_000
    assert [p.approval_id for p in book.list_pending("acme")] == [a.approval_id]
    assert book.list_pending("other") == []
    assert (
        published.requested[0].approval_id == a.approval_id and published.requested[0].arguments_json == ARGS
    )

    waiting = asyncio.create_task(book.wait(a.approval_id))
    await asyncio.sleep(0)  # a yield: the task runs until it waits for the decision
    assert not waiting.done()
    decided = await book.decide("acme", a.approval_id, True, "bob", "looks fine")
    assert decided.state == "approved" and decided.decided_by == "bob" and decided.reason == "looks fine"
    assert (await waiting) == decided
    assert [(d.approval_id, d.state) for d in published.decided] == [(a.approval_id, "approved")]
    assert book.list_pending("acme") == []


async def test_request_is_idempotent_per_call(book: SqliteApprovalBook, published: Published) -> None:
    a = await ask(book)
    assert (await ask(book)).approval_id == a.approval_id
    other = await ask(book, args='{"url": "https://docs.example/b"}')
    assert other.approval_id != a.approval_id
    assert len(published.requested) == 2
    await book.decide("acme", a.approval_id, False, "bob", "no")
    again = await ask(book)  # a node re-executed on resume gets the decision, not a fresh request
    assert again.approval_id == a.approval_id and again.state == "rejected"
    assert len(published.requested) == 2


async def test_decide_refuses_unknown_foreign_and_decided_ids(book: SqliteApprovalBook) -> None:
    a = await ask(book)
    with pytest.raises(NotFound) as unknown:
        await book.decide("acme", "b" * 32, True, "bob", "")
    with pytest.raises(NotFound) as foreign:
        await book.decide("other", a.approval_id, True, "mallory", "")
    assert str(foreign.value) == str(unknown.value).replace("b" * 32, a.approval_id)
    with pytest.raises(NotFound):
        await book.decide("acme", "../../etc", True, "bob", "")
    await book.decide("acme", a.approval_id, True, "bob", "")
    with pytest.raises(FailedPrecondition, match="already approved"):
        await book.decide("acme", a.approval_id, False, "bob", "")
    with pytest.raises(NotFound):
        await book.wait("c" * 32)


async def test_request_validates_its_input(book: SqliteApprovalBook) -> None:
    with pytest.raises(InvalidArgument, match="run id"):
        await book.request("acme", "not-a-run", "react", "http_get", ARGS, "alice")
    with pytest.raises(InvalidArgument, match="16384"):
        await book.request("acme", RUN, "react", "http_get", "x" * 20_000, "alice")
    with pytest.raises(InvalidArgument):
        await book.request("acme", RUN, "react", "t" * 100, ARGS, "alice")


async def test_a_failed_publish_decides_nothing(book: SqliteApprovalBook, published: Published) -> None:
    a = await ask(book)
    published.fail = True
    with pytest.raises(Unavailable):
        await book.decide("acme", a.approval_id, True, "bob", "")
    with pytest.raises(Unavailable):
        await ask(book, args="{}")
    published.fail = False
    assert [p.approval_id for p in book.list_pending("acme")] == [a.approval_id]
    assert (await book.decide("acme", a.approval_id, True, "bob", "")).state == "approved"


async def test_expiry_after_the_timeout(book: SqliteApprovalBook, published: Published, clock: Clock) -> None:
    a = await ask(book)
    clock.now += 61
    assert book.list_pending("acme") == []
    expired = await book.wait(a.approval_id)
    assert expired.state == "expired" and "60 s" in expired.reason
    assert [(d.approval_id, d.state) for d in published.decided] == [(a.approval_id, "expired")]
    with pytest.raises(FailedPrecondition, match="already expired"):
        await book.decide("acme", a.approval_id, True, "bob", "")
    assert len(published.decided) == 1


async def test_a_waiter_wakes_at_the_deadline(tmp_path: Path, published: Published) -> None:
    book = SqliteApprovalBook(tmp_path / "a.sqlite", timeout_s=0.05, publish_decided=published.on_decided)
    try:
        a = await ask(book)
        assert (await book.wait(a.approval_id)).state == "expired"
        assert [d.state for d in published.decided] == ["expired"]
    finally:
        book.close()


async def test_survives_a_reopen(tmp_path: Path, clock: Clock) -> None:
    first = open_book(tmp_path, clock=clock)
    a = await ask(first)
    await first.aclose()  # the module's stop hook
    second = open_book(tmp_path, clock=clock)
    assert [p.approval_id for p in second.list_pending("acme")] == [a.approval_id]
    assert (await ask(second)).approval_id == a.approval_id
    await second.decide("acme", a.approval_id, True, "bob", "ok")
    second.close()
    third = open_book(tmp_path, clock=clock)
    try:
        resumed = await third.wait(a.approval_id)  # a run resumed after a restart finds its decision
        assert resumed.state == "approved" and resumed.decided_by == "bob"
    finally:
        third.close()


def test_the_file_is_private(tmp_path: Path) -> None:
    book = open_book(tmp_path)
    book.close()
    directory = tmp_path / "agent-orchestrator"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "approvals.sqlite").stat().st_mode) == 0o600


# ---- the bus: two replicas ------------------------------------------------------------------------------


Replicas = tuple[InProcessBus, SqliteApprovalBook, SqliteApprovalBook]


@pytest.fixture
async def replicas(
    tmp_path: Path,
) -> AsyncIterator[tuple[InProcessBus, SqliteApprovalBook, SqliteApprovalBook]]:
    bus = InProcessBus()
    await bus.ensure_topics(approval_topics(["eu"]))
    books = []
    for name in ("a", "b"):
        book = SqliteApprovalBook(
            tmp_path / name / "approvals.sqlite",
            publish_requested=publisher(bus, topics.APPROVALS_REQUESTED),
            publish_decided=publisher(bus, topics.APPROVALS_DECIDED),
        )
        for s in book.subscriptions("agent-orchestrator", ["eu"]):
            bus.subscribe(s)
        books.append(book)
    await bus.start()
    try:
        yield bus, books[0], books[1]
    finally:
        await bus.stop()
        for b in books:
            b.close()


async def test_a_decision_in_another_replica_wakes_the_waiting_run(
    replicas: Replicas,
) -> None:
    bus, a, b = replicas
    groups = {s.group for s in a.subscriptions("agent-orchestrator", [])} | {
        s.group for s in b.subscriptions("agent-orchestrator", [])
    }
    assert len(groups) == 2  # a consumer group per replica: each hears every event
    approval = await ask(a)
    waiting = asyncio.create_task(a.wait(approval.approval_id))
    await bus.drain()
    assert [p.approval_id for p in b.list_pending("acme")] == [approval.approval_id]
    assert [p.arguments_json for p in b.list_pending("acme")] == [ARGS]
    assert not waiting.done()
    await b.decide("acme", approval.approval_id, True, "bob", "fine")
    decided = await waiting
    assert decided.state == "approved" and decided.decided_by == "bob"
    await bus.drain()
    assert a.list_pending("acme") == [] and b.list_pending("acme") == []


async def test_a_decision_heard_before_its_request(
    replicas: Replicas,
) -> None:
    bus, a, b = replicas
    approval_id = "d" * 32
    decided = ApprovalDecided(
        tenant_id="acme",
        idempotency_key="k1",
        approval_id=approval_id,
        run_id=RUN,
        state="rejected",
        decided_by="eve",
        reason="",
    )
    requested = ApprovalRequested(
        tenant_id="acme",
        idempotency_key="k2",
        approval_id=approval_id,
        run_id=RUN,
        graph="react",
        tool="http_get",
        arguments_json=ARGS,
        requested_by="alice",
        expires_at_ms=2**40,
    )
    # from a third replica: the two topics are consumed independently, so a decision may come first
    await publish_event(bus, topics.APPROVALS_DECIDED, decided)
    await bus.drain()
    await publish_event(bus, topics.APPROVALS_REQUESTED, requested)
    await bus.drain()
    for book in (a, b):
        found = await book.wait(approval_id)
        assert (found.state, found.decided_by, found.tool, found.arguments_json) == (
            "rejected",
            "eve",
            "http_get",
            ARGS,
        )
        assert book.list_pending("acme") == []
