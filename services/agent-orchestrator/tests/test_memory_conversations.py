"""SqliteConversationStore: history order and limit, ownership without an existence oracle, time to live,
purge on erasure (once per event) and on tenant deletion, and the per-replica subscriptions."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from isthmus_agent_orchestrator.agents.memory.conversations import SqliteConversationStore
from isthmus_agent_orchestrator.agents.types import Turn
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import ErasureRequested, TenantDeleted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument
from isthmus_core.regions import mirrored


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(
    tmp_path: Path, clock: Clock | None = None, ttl_s: float = 100.0, **kw: int
) -> SqliteConversationStore:
    return SqliteConversationStore(
        tmp_path / "dir" / "memory.sqlite", ttl_s=ttl_s, clock=clock or Clock(), **kw
    )


def turn(i: int) -> Turn:
    return Turn(question=f"q{i}", answer=f"a{i}", standalone=f"s{i}", question_id=f"id{i}", at=float(i))


async def nothing(coro: object) -> None:
    """An unknown (never begun, expired, purged) session: no turns."""
    assert await coro == []  # type: ignore[misc]


async def test_history_is_newest_last_and_limited(tmp_path: Path) -> None:
    s = store(tmp_path)
    for i in range(5):
        await s.append("acme", "s1", "alice", turn(i))
    assert [t.question for t in await s.history("acme", "s1", "alice", limit=3)] == ["q2", "q3", "q4"]
    everything = await s.history("acme", "s1", "alice", limit=10)
    assert everything == [turn(i) for i in range(5)]
    assert await s.history("acme", "s1", "alice", limit=0) == []


async def test_directory_is_private(tmp_path: Path) -> None:
    store(tmp_path)
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o700


async def test_session_ids_are_per_principal(tmp_path: Path) -> None:
    s = store(tmp_path)
    await s.append("acme", "s1", "alice", turn(1))
    # bob's "s1" is his own session: he reads nothing of alice's, as of an unknown id
    await nothing(s.history("acme", "s1", "bob"))
    await nothing(s.history("acme", "s1x", "bob"))
    await s.append("acme", "s1", "bob", turn(2))
    assert await s.history("acme", "s1", "bob") == [turn(2)]
    # bob's append left alice's session untouched
    assert await s.history("acme", "s1", "alice") == [turn(1)]


async def test_sessions_are_per_tenant(tmp_path: Path) -> None:
    s = store(tmp_path)
    await s.append("acme", "s1", "alice", turn(1))
    await nothing(s.history("globex", "s1", "alice"))
    await s.append("globex", "s1", "bob", turn(2))  # the same id in another tenant is another session
    assert await s.history("acme", "s1", "alice") == [turn(1)]
    assert await s.history("globex", "s1", "bob") == [turn(2)]


async def test_sessions_expire_after_their_last_turn(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock, ttl_s=100.0)
    await s.append("acme", "s1", "alice", turn(1))
    clock.now += 60
    await s.append("acme", "s1", "alice", turn(2))  # touching it extends its life
    clock.now += 60
    assert len(await s.history("acme", "s1", "alice")) == 2
    clock.now += 41
    await nothing(s.history("acme", "s1", "alice"))
    # an expired session id begins again with no old turns
    await s.append("acme", "s1", "alice", turn(3))
    assert await s.history("acme", "s1", "alice") == [turn(3)]


async def test_a_session_keeps_its_newest_turns(tmp_path: Path) -> None:
    s = store(tmp_path, max_turns=3)
    for i in range(6):
        await s.append("acme", "s1", "alice", turn(i))
    assert [t.question for t in await s.history("acme", "s1", "alice", limit=10)] == ["q3", "q4", "q5"]


async def test_bad_ids_are_invalid_arguments(tmp_path: Path) -> None:
    s = store(tmp_path)
    for tenant, session, principal in [("ACME", "s1", "a"), ("acme", "../x", "a"), ("acme", "s1", "")]:
        with pytest.raises(InvalidArgument):
            await s.append(tenant, session, principal, turn(1))
        with pytest.raises(InvalidArgument):
            await s.history(tenant, session, principal)


async def test_erasure_deletes_the_tenants_conversations_once(tmp_path: Path) -> None:
    s = store(tmp_path)
    await s.append("acme", "s1", "alice", turn(1))
    await s.append("globex", "s1", "bob", turn(1))
    assert s.erase_tenant(TenantId("acme"), "ev-1")
    await nothing(s.history("acme", "s1", "alice"))
    assert await s.history("globex", "s1", "bob") == [turn(1)]
    # the same erasure heard again (a consumer group starting over) leaves newer sessions alone
    await s.append("acme", "s2", "alice", turn(2))
    assert not s.erase_tenant(TenantId("acme"), "ev-1")
    assert await s.history("acme", "s2", "alice") == [turn(2)]


async def test_tenant_deletion_deletes_sessions_begun_before_it(tmp_path: Path) -> None:
    clock = Clock(1_000.0)
    s = store(tmp_path, clock, ttl_s=1e9)
    await s.append("acme", "old", "alice", turn(1))
    await s.append("globex", "old", "bob", turn(1))
    clock.now = 2_000.0
    await s.append("acme", "new", "alice", turn(2))
    s.delete_tenant(TenantId("acme"), datetime.fromtimestamp(1_500.0, UTC))
    await nothing(s.history("acme", "old", "alice"))
    assert await s.history("acme", "new", "alice") == [turn(2)]
    assert await s.history("globex", "old", "bob") == [turn(1)]


async def test_a_reopened_file_keeps_sessions(tmp_path: Path) -> None:
    s = store(tmp_path)
    await s.append("acme", "s1", "alice", turn(1))
    s.close()
    assert await store(tmp_path).history("acme", "s1", "alice") == [turn(1)]


async def test_every_replica_purges_its_file_from_the_bus(tmp_path: Path) -> None:
    replicas = [store(tmp_path / "r1"), store(tmp_path / "r2")]
    bus = InProcessBus()
    subs = [sub for s in replicas for sub in s.subscriptions("agent-orchestrator", ["eu"])]
    assert len({sub.group for sub in subs}) == 2  # a group per replica: each hears every event
    for sub in subs:
        bus.subscribe(sub)
    for s in replicas:
        for tenant in ("acme", "globex", "initech"):
            await s.append(tenant, "s1", "alice", turn(1))
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
        for s in replicas:
            await nothing(s.history("acme", "s1", "alice"))
            await nothing(s.history("globex", "s1", "alice"))
            assert await s.history("initech", "s1", "alice") == [turn(1)]
        await publish_event(
            bus, topics.TENANTS_DELETED, TenantDeleted(tenant_id="initech", idempotency_key="d")
        )
        await bus.drain()
    finally:
        await bus.stop()
    for s in replicas:
        await nothing(s.history("initech", "s1", "alice"))


async def test_an_erased_answer_leaves_no_bytes_in_the_files(tmp_path: Path) -> None:
    s = store(tmp_path)
    secret = "the zeppelin hangar code is 8817-quartz"
    await s.append("acme", "s1", "alice", Turn(question="q", answer=secret, standalone="", question_id="x"))
    s.erase_tenant(TenantId("acme"), "ev-1")
    stored = b"".join(p.read_bytes() for p in (tmp_path / "dir").iterdir() if p.is_file())
    assert secret.encode() not in stored  # neither in the database's free pages nor in its WAL
