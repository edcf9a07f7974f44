"""SqlitePromptBook across replicas: every version and split is an event on the bus that every replica
applies to its own file (two or three books over one InProcessBus, as in the chart's Distributed mode)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from isthmus_agent_orchestrator.agents.prompts import SqlitePromptBook, bucket, digest_of, prompt_topics
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import decode_event, publisher
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import PromptSplitSet, PromptVersionCreated
from isthmus_core.errors import Unavailable

SYNTH = "Answer from the sources.\n=== user ===\n{contexts}\n\nQ: {question}"
X = SYNTH + " (x)"
Y = SYNTH + " (y)"
KEYS = [f"question-{i}" for i in range(40)]


def replica(bus: InProcessBus, path: Path) -> SqlitePromptBook:
    book = SqlitePromptBook(
        path / "prompts.sqlite",
        refresh_s=3600.0,  # only writes and applied events refresh the cached splits here
        publish_created=publisher(bus, topics.PROMPTS_CREATED),
        publish_split=publisher(bus, topics.PROMPTS_SPLIT),
    )
    for s in book.subscriptions("agent-orchestrator", ["eu"]):
        bus.subscribe(s)
    return book


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus()
    await bus.ensure_topics(prompt_topics())
    try:
        yield bus
    finally:
        await bus.stop()


async def view(book: SqlitePromptBook) -> tuple[object, ...]:
    """What a replica serves: its versions, its split and the version each key gets."""
    return (
        await book.list_versions("acme", "synthesize"),
        (await book.get_split("acme", "synthesize")).percent,
        [book.choose("acme", "synthesize", k).version for k in KEYS],
    )


async def test_a_version_created_in_one_replica_is_chosen_by_the_other(
    bus: InProcessBus, tmp_path: Path
) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    await bus.start()
    v1 = await a.create_version("acme", "synthesize", SYNTH, "alice")
    await bus.drain()
    assert await b.list_versions("acme", "synthesize") == [v1]
    await b.set_split("acme", "synthesize", {"v1": 100})  # b knows a's v1
    await bus.drain()
    for book in (a, b):
        choice = book.choose("acme", "synthesize", "q1")
        assert (choice.version, choice.template) == ("v1", SYNTH)
    assert b.choose("globex", "synthesize", "q1").version == ""


async def test_a_split_set_in_one_replica_applies_in_the_other(bus: InProcessBus, tmp_path: Path) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    await bus.start()
    await a.create_version("acme", "synthesize", X, "alice")
    await a.create_version("acme", "synthesize", Y, "alice")
    await bus.drain()
    assert {b.choose("acme", "synthesize", k).version for k in KEYS} == {""}  # b's cache: the built-in
    await a.set_split("acme", "synthesize", {"v1": 25, "v2": 75})
    await bus.drain()
    assert (await b.get_split("acme", "synthesize")).percent == {"v1": 25, "v2": 75}
    for k in KEYS:  # the applied event refreshed b's cache (its refresh_s is an hour)
        expected = "v1" if bucket(k) < 25 else "v2"
        assert a.choose("acme", "synthesize", k).version == expected
        assert b.choose("acme", "synthesize", k).version == expected
    await b.set_split("acme", "synthesize", {})  # back to the built-in, everywhere
    await bus.drain()
    assert {a.choose("acme", "synthesize", k).version for k in KEYS} == {""}


async def test_two_replicas_creating_the_same_number_end_with_the_same_versions(
    bus: InProcessBus, tmp_path: Path
) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    # before the bus delivers anything: each replica knows only its own version, as in a real race
    x = await a.create_version("acme", "synthesize", X, "alice")
    y = await b.create_version("acme", "synthesize", Y, "bob")
    assert (x.version, y.version) == ("v1", "v1")
    await b.set_split("acme", "synthesize", {"v1": 100})  # b's v1: template Y
    await bus.start()
    await bus.drain()
    # a's event is first in the log: X keeps v1 everywhere, Y becomes v2 everywhere (b included)
    for book in (a, b):
        versions = await book.list_versions("acme", "synthesize")
        assert [(v.version, v.template, v.created_by) for v in versions] == [
            ("v1", X, "alice"),
            ("v2", Y, "bob"),
        ]
        # the split named Y's template: it follows it to v2
        assert (await book.get_split("acme", "synthesize")).percent == {"v2": 100}
        assert {book.choose("acme", "synthesize", k).template for k in KEYS} == {Y}
    assert await view(a) == await view(b)
    # the next version is v3 in both
    z = await b.create_version("acme", "synthesize", SYNTH + " (z)", "carol")
    await bus.drain()
    assert z.version == "v3"
    assert await view(a) == await view(b)


async def test_the_same_template_created_in_two_replicas_is_one_version(
    bus: InProcessBus, tmp_path: Path
) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    await a.create_version("acme", "synthesize", X, "alice")
    await b.create_version("acme", "synthesize", X, "bob")
    await bus.start()
    await bus.drain()
    for book in (a, b):
        versions = await book.list_versions("acme", "synthesize")
        assert [(v.version, v.created_by) for v in versions] == [("v1", "alice")]  # the first in the log


async def test_replaying_the_events_changes_nothing(bus: InProcessBus, tmp_path: Path) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    await a.create_version("acme", "synthesize", X, "alice")
    await b.create_version("acme", "synthesize", Y, "bob")
    await bus.start()
    await bus.drain()
    await a.set_split("acme", "synthesize", {"v1": 50, "v2": 50})
    await bus.drain()
    await b.set_split("acme", "synthesize", {"v2": 100})
    await bus.drain()
    before = await view(a)
    assert before == await view(b)
    created = [decode_event(topics.PROMPTS_CREATED, m) for m in bus.messages(topics.PROMPTS_CREATED.name)]
    splits = [decode_event(topics.PROMPTS_SPLIT, m) for m in bus.messages(topics.PROMPTS_SPLIT.name)]
    assert (len(created), len(splits)) == (2, 2)
    for book in (a, b):
        # every event again, in order and then backwards (an older split never overrides a newer one)
        assert [book.apply_created(e) for e in created + created[::-1]] == [False] * 4
        assert [book.apply_split(e) for e in splits + splits[::-1]] == [False] * 4
        assert await view(book) == before
    assert before[1] == {"v2": 100}


async def test_a_new_replica_rebuilds_the_same_view_from_the_topics(
    bus: InProcessBus, tmp_path: Path
) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    await a.create_version("acme", "synthesize", X, "alice")
    await b.create_version("acme", "synthesize", Y, "bob")
    await bus.start()
    await a.create_version("acme", "synthesize", SYNTH, "carol")
    await bus.drain()
    await b.set_split("acme", "synthesize", {"v1": 20, "v3": 80})
    await bus.drain()
    await bus.stop()
    c = replica(bus, tmp_path / "c")  # a fresh file: it subscribes from the oldest retained event
    await bus.start()
    await bus.drain()
    assert await view(c) == await view(a) == await view(b)
    assert [v.template for v in await c.list_versions("acme", "synthesize")] == [X, Y, SYNTH]


async def test_a_split_heard_before_its_version_waits_for_it(tmp_path: Path) -> None:
    book = SqlitePromptBook(tmp_path / "prompts.sqlite")
    version = PromptVersionCreated(
        tenant_id="acme",
        idempotency_key="k1",
        name="synthesize",
        version="v1",
        template=X,
        digest=digest_of(X),
        created_by="alice",
        created_at_ms=1,
    )
    split = PromptSplitSet(
        tenant_id="acme",
        idempotency_key="k2",
        name="synthesize",
        percent={"v1": 100},
        digests={"v1": digest_of(X)},
    )
    assert book.apply_split(split)  # the topics are consumed independently: the split may come first
    assert book.choose("acme", "synthesize", "q").version == ""
    assert book.apply_created(version)
    assert (
        book.choose("acme", "synthesize", "q").version,
        book.choose("acme", "synthesize", "q").template,
    ) == (
        "v1",
        X,
    )
    older = split.model_copy(
        update={
            "event_id": "0" * 32,
            "percent": {},
            "digests": {},
            "occurred_at": split.occurred_at - timedelta(1),
        }
    )
    assert not book.apply_split(older)  # heard late, it is older than the split applied
    assert book.choose("acme", "synthesize", "q").version == "v1"
    bad = version.model_copy(update={"digest": "0" * 64, "template": Y, "event_id": "1" * 32})
    assert not book.apply_created(bad)  # a digest that is not its template's
    assert len(await book.list_versions("acme", "synthesize")) == 1


async def test_a_failed_publish_leaves_nothing(tmp_path: Path) -> None:
    async def down(_: object) -> None:
        raise Unavailable("bus down")

    book = SqlitePromptBook(tmp_path / "prompts.sqlite", publish_created=down, publish_split=down)
    with pytest.raises(Unavailable):
        await book.create_version("acme", "synthesize", X, "alice")
    assert await book.list_versions("acme", "synthesize") == []
    assert book.apply_created(
        PromptVersionCreated(
            tenant_id="acme",
            idempotency_key="k",
            name="synthesize",
            version="v1",
            template=X,
            digest=digest_of(X),
            created_by="alice",
            created_at_ms=1,
        )
    )
    with pytest.raises(Unavailable):
        await book.set_split("acme", "synthesize", {"v1": 100})
    assert (await book.get_split("acme", "synthesize")).percent == {}


async def test_a_file_of_the_older_release_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "prompts.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE prompt_versions (
          tenant_id TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, template TEXT NOT NULL,
          digest TEXT NOT NULL, created_by TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
          PRIMARY KEY (tenant_id, name, number));
        CREATE TABLE prompt_splits (
          tenant_id TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL, percent INTEGER NOT NULL,
          PRIMARY KEY (tenant_id, name, number));
        """
    )
    old.execute(
        "INSERT INTO prompt_versions VALUES ('acme', 'synthesize', 1, ?, ?, 'alice', 1)", (X, digest_of(X))
    )
    old.execute("INSERT INTO prompt_splits VALUES ('acme', 'synthesize', 1, 100)")
    old.commit()
    old.close()
    book = SqlitePromptBook(path)
    assert book.choose("acme", "synthesize", "q").template == X  # its split still names its v1
    # a version heard from another replica takes the next number; a split heard names it by digest
    assert book.apply_created(
        PromptVersionCreated(
            tenant_id="acme",
            idempotency_key="k",
            name="synthesize",
            version="v1",
            template=Y,
            digest=digest_of(Y),
            created_by="bob",
            created_at_ms=2,
            occurred_at=datetime.now(UTC),
        )
    )
    assert [v.template for v in await book.list_versions("acme", "synthesize")] == [X, Y]
    assert book.apply_split(
        PromptSplitSet(
            tenant_id="acme",
            idempotency_key="k2",
            name="synthesize",
            percent={"v2": 100},
            digests={"v2": digest_of(Y)},
        )
    )
    assert book.choose("acme", "synthesize", "q").template == Y


async def test_a_split_set_after_another_wins_even_with_a_clock_behind(
    bus: InProcessBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replica(bus, tmp_path / "a"), replica(bus, tmp_path / "b")
    await bus.start()
    await a.create_version("acme", "synthesize", X, "alice")
    await a.create_version("acme", "synthesize", Y, "alice")
    await bus.drain()
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    await a.set_split("acme", "synthesize", {"v1": 100})
    await bus.drain()
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0 - 60)  # b's clock is a minute behind
    await b.set_split("acme", "synthesize", {"v2": 100})
    await b.set_split("acme", "synthesize", {"v1": 50, "v2": 50})  # and two in one millisecond
    await bus.drain()
    for book in (a, b):
        assert (await book.get_split("acme", "synthesize")).percent == {"v1": 50, "v2": 50}
