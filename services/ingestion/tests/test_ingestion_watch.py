"""The watch core: a watcher gets the current state, then every stored change of the documents it watches,
in order, without ever slowing the code that stores them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus_core.errors import NotFound, ResourceExhausted
from isthmus_ingestion.registry import DocumentRecord, Status
from isthmus_ingestion.watch import DocumentUpdate, DocumentWatch, WatchedRegistry

GUARD_S = 30  # only against a hang: every change below is stored before the watcher reads


def _doc(
    document_id: str, status: Status = Status.RECEIVED, tenant: str = "t1", batches: int = 1
) -> DocumentRecord:
    return DocumentRecord(
        tenant_id=tenant,
        document_id=document_id,
        filename=f"{document_id}.txt",
        content_type="text/plain",
        content_hash=f"hash-{document_id}",
        status=status,
        chunk_count=2 * batches,
        batch_count=batches,
    )


async def _rest(updates: AsyncIterator[DocumentUpdate]) -> list[tuple[str, Status, bool]]:
    async def collect() -> list[tuple[str, Status, bool]]:
        return [(u.document.document_id, u.document.status, u.initial) async for u in updates]

    return await asyncio.wait_for(collect(), GUARD_S)


@pytest.fixture
def registry(tmp_path: Path) -> WatchedRegistry:
    return WatchedRegistry(tmp_path / "documents.sqlite", DocumentWatch())


async def test_current_state_first_then_every_change_in_order(registry: WatchedRegistry) -> None:
    registry.save(_doc("old", Status.INDEXED))
    updates = registry.watch.stream(registry, "t1", until_terminal=True)
    assert (await anext(updates)).initial  # "old", as it is now; the watch is open from here on

    doc = _doc("new", batches=2)
    registry.save(doc)  # received
    doc.status = Status.CHUNKED
    registry.save(doc)
    registry.save(doc)  # stored again unchanged: not repeated
    registry.mark_batch("t1", "new", 1, Status.EMBEDDED, 0)  # one batch of two: no change yet
    registry.mark_batch("t1", "new", 1, Status.EMBEDDED, 1)
    registry.mark_batch("t1", "new", 1, Status.INDEXED, 0)
    registry.mark_batch("t1", "new", 1, Status.INDEXED, 1)
    registry.save(_doc("other", tenant="t2"))  # another tenant: not watched

    # the watcher reads only now, yet sees every state, in order, then the stream ends (all terminal)
    assert await _rest(updates) == [
        ("new", Status.RECEIVED, False),
        ("new", Status.CHUNKED, False),
        ("new", Status.EMBEDDED, False),
        ("new", Status.INDEXED, False),
    ]
    assert registry.watch.watching == 0


async def test_watched_ids_may_not_exist_yet_and_a_failure_carries_its_reason(
    registry: WatchedRegistry,
) -> None:
    registry.save(_doc("a", Status.CHUNKED))
    updates = registry.watch.stream(registry, "t1", ["a", "b"], until_terminal=True)
    first = await anext(updates)
    assert (first.document.document_id, first.document.status, first.initial) == ("a", Status.CHUNKED, True)

    registry.save(_doc("c"))  # not watched
    registry.save(_doc("b"))
    registry.fail("t1", "b", "chunks.embedded: EmbeddingError: model exploded")
    registry.save(_doc("b", tenant="t2"))  # same id, other tenant: not watched
    registry.mark_batch("t1", "a", 1, Status.INDEXED, 0)

    rest = [u async for u in _gen(updates)]
    assert [(u.document.document_id, u.document.status) for u in rest] == [
        ("b", Status.RECEIVED),
        ("b", Status.FAILED),
        ("a", Status.INDEXED),
    ]
    assert rest[1].document.failure_reason == "chunks.embedded: EmbeddingError: model exploded"


async def _gen(updates: AsyncIterator[DocumentUpdate]) -> AsyncIterator[DocumentUpdate]:
    while True:
        try:
            yield await asyncio.wait_for(anext(updates), GUARD_S)
        except StopAsyncIteration:
            return


async def test_until_terminal_waits_for_every_watched_id(registry: WatchedRegistry) -> None:
    registry.save(_doc("a", Status.INDEXED))
    updates = registry.watch.stream(registry, "t1", ["a", "b"], until_terminal=True)
    assert (await anext(updates)).document.document_id == "a"
    # "a" is terminal but "b" has not even appeared: the stream goes on until it is indexed
    registry.save(_doc("b", Status.INDEXED))
    assert await _rest(updates) == [("b", Status.INDEXED, False)]


async def test_until_terminal_with_nothing_in_flight_ends_at_once(registry: WatchedRegistry) -> None:
    registry.save(_doc("a", Status.INDEXED))
    registry.save(_doc("b", Status.FAILED))
    assert await _rest(registry.watch.stream(registry, "t1", until_terminal=True)) == [
        ("a", Status.INDEXED, True),
        ("b", Status.FAILED, True),
    ]
    assert await _rest(registry.watch.stream(registry, "empty", until_terminal=True)) == []


async def test_a_watcher_that_falls_behind_is_dropped_and_the_writer_never_waits(tmp_path: Path) -> None:
    registry = WatchedRegistry(tmp_path / "documents.sqlite", DocumentWatch(max_pending=3))
    registry.save(_doc("a"))
    slow = registry.watch.stream(registry, "t1")
    await anext(slow)
    for i in range(5):  # more changes than the watcher may have pending; each save returns at once
        registry.save(_doc(f"d{i}"))
    with pytest.raises(ResourceExhausted, match="fell more than 3 changes behind"):
        await asyncio.wait_for(anext(slow), GUARD_S)
    assert registry.watch.watching == 0
    # a new watch starts again from the current state
    fresh = registry.watch.stream(registry, "t1")
    assert sorted([(await anext(fresh)).document.document_id for _ in range(6)]) == [
        "a",
        "d0",
        "d1",
        "d2",
        "d3",
        "d4",
    ]
    await fresh.aclose()
    assert registry.watch.watching == 0


async def test_a_change_stored_from_a_worker_thread_reaches_the_watch(registry: WatchedRegistry) -> None:
    registry.save(_doc("a", Status.CHUNKED))
    updates = registry.watch.stream(registry, "t1", ["a"], until_terminal=True)
    await anext(updates)
    await asyncio.to_thread(registry.mark_batch, "t1", "a", 1, Status.INDEXED, 0)
    assert await _rest(updates) == [("a", Status.INDEXED, False)]


async def test_past_capacity_a_new_watch_is_refused_at_once(tmp_path: Path) -> None:
    registry = WatchedRegistry(tmp_path / "documents.sqlite", DocumentWatch(max_watchers=2))
    registry.save(_doc("a"))
    open_ = [registry.watch.stream(registry, "t1") for _ in range(2)]
    for updates in open_:
        await anext(updates)
    with pytest.raises(ResourceExhausted, match="2 document watches are open"):
        await anext(registry.watch.stream(registry, "t1"))
    await open_[0].aclose()  # one closes: there is room again
    again = registry.watch.stream(registry, "t1")
    assert (await anext(again)).initial
    for updates in (open_[1], again):
        await updates.aclose()
    assert registry.watch.watching == 0


async def test_deleting_the_tenant_ends_its_watches_only(registry: WatchedRegistry) -> None:
    registry.save(_doc("a"))
    registry.save(_doc("z", tenant="t2"))
    gone = registry.watch.stream(registry, "t1")
    kept = registry.watch.stream(registry, "t2")
    await anext(gone)
    await anext(kept)
    registry.delete_tenant("t1")
    with pytest.raises(NotFound, match="deleted"):
        await asyncio.wait_for(anext(gone), GUARD_S)
    registry.save(_doc("y", tenant="t2"))
    update = await asyncio.wait_for(anext(kept), GUARD_S)
    assert (update.document.document_id, update.initial) == ("y", False)
    await kept.aclose()
    assert registry.watch.watching == 0


async def test_a_watch_of_a_new_version_sees_it_start_over(registry: WatchedRegistry) -> None:
    registry.save(_doc("a", Status.INDEXED))
    updates = registry.watch.stream(registry, "t1", ["a"], until_terminal=False)
    await anext(updates)
    again = _doc("a")
    again.version = 2
    registry.save(again)  # a re-upload: received again, as version 2
    update = await asyncio.wait_for(anext(updates), GUARD_S)
    assert (update.document.status, update.document.version) == (Status.RECEIVED, 2)
    await updates.aclose()


async def test_a_deleted_document_ends_a_watch_until_terminal(registry: WatchedRegistry) -> None:
    registry.save(_doc("a", Status.CHUNKED))
    updates = registry.watch.stream(registry, "t1", ["a"], until_terminal=True)
    assert (await anext(updates)).document.status == Status.CHUNKED
    deleted = _doc("a", Status.DELETED)
    registry.save(deleted, detail="deleted before it was indexed")
    assert await _rest(updates) == [("a", Status.DELETED, False)]
