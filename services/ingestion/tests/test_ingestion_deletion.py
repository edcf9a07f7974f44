"""Deletion in ingestion: the status history, DeleteDocument (status DELETED, record and history kept,
documents.deleted published, audited), and nothing older bringing a deleted document back — a replayed
submission, a replayed deletion request against a newer version, late chunks of a deleted version, a
deletion mirrored from another region before the document's chunks arrive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import Principal
from isthmus_core.auth.stack import ListAudit
from isthmus_core.contracts.events import (
    ChunksCreated,
    ChunksEmbedded,
    ChunksIndexed,
    DeletionRequested,
    DocumentDeleted,
    DocumentSubmitted,
    EmbeddedChunk,
)
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument, NotFound
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.store.port import chunk_uuid
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.deletion import deleted_by
from isthmus_ingestion.registry import DocumentRecord, DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.texts import TextStore

ACME, OTHER = TenantId("acme"), TenantId("other")
TEXT = b"Walruses haul out on sea ice. They eat clams and dive for them at the bottom of shallow seas."


class Bus:
    def __init__(self) -> None:
        self.chunks: list[ChunksCreated] = []
        self.deleted: list[DocumentDeleted] = []

    async def publish_chunks(self, ev: ChunksCreated) -> None:
        self.chunks.append(ev)

    async def publish_deleted(self, ev: DocumentDeleted) -> None:
        self.deleted.append(ev)


def registry_dir(registry: DocumentRegistry) -> Path:
    return Path(registry._db.execute("PRAGMA database_list").fetchone()[2]).parent


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DocumentRegistry]:
    r = DocumentRegistry(tmp_path / "documents.sqlite")
    yield r
    r.close()


def make(registry: DocumentRegistry, bus: Bus, region: str = "", regions: tuple[str, ...] = ()) -> Ingestion:
    chunker = Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=64, overlap_tokens=8)
    return Ingestion(
        registry,
        chunker,
        InMemoryTenantDirectory([ACME, OTHER]),
        bus.publish_chunks,
        max_bytes=1_000_000,
        chunks_per_event=8,
        region=region,
        regions=regions,
        audit=ListAudit(),
        publish_deleted=bus.publish_deleted,
        texts=TextStore(registry_dir(registry) / "texts.sqlite"),
    )


def submitted(at: datetime, content: bytes = TEXT, doc: str | None = "d1") -> DocumentSubmitted:
    return DocumentSubmitted(
        tenant_id=ACME,
        idempotency_key=f"sub-{at.timestamp()}",
        document_id=doc,
        filename="w.txt",
        content=content,
        occurred_at=at,
    )


def indexed(doc: str, version: int, batch: int = 0) -> ChunksIndexed:
    return ChunksIndexed(
        tenant_id=ACME,
        idempotency_key=f"{doc}/v{version}/b{batch}/indexed",
        document_id=doc,
        content_hash="h",
        version=version,
        batch_index=batch,
        batch_count=1,
        count=1,
    )


def embedded(doc: str, version: int) -> ChunksEmbedded:
    return ChunksEmbedded(
        tenant_id=ACME,
        idempotency_key=f"{doc}/v{version}/b0",
        document_id=doc,
        content_hash="h",
        version=version,
        batch_index=0,
        batch_count=1,
        model_id="m",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_uuid(ACME, doc, 0),
                index=0,
                text="walrus",
                start=0,
                end=6,
                vector=[1.0],
                metadata={"filename": "w.txt"},
            )
        ],
    )


# --- the registry ------------------------------------------------------------------------------------------


def test_every_status_change_appends_to_the_history_and_erasure_removes_it(
    registry: DocumentRegistry,
) -> None:
    d = DocumentRecord(ACME, "d1", "w.txt", "text/plain", "h1", Status.RECEIVED)
    registry.save(d)
    registry.save(d)  # stored again unchanged: no new row
    d.status = Status.CHUNKED
    registry.save(d)
    d.status, d.failure_reason = Status.FAILED, "embedding gave up"
    registry.save(d)
    d.status, d.version = Status.RECEIVED, 2  # a new version
    registry.save(d)
    d.status = Status.DELETED
    registry.save(d, detail="retention over")
    h = registry.history(ACME, "d1")
    assert [(c.status, c.version, c.detail) for c in h] == [
        (Status.RECEIVED, 1, ""),
        (Status.CHUNKED, 1, ""),
        (Status.FAILED, 1, "embedding gave up"),
        (Status.RECEIVED, 2, ""),
        (Status.DELETED, 2, "retention over"),
    ]
    assert [c.at for c in h] == sorted(c.at for c in h)
    assert registry.version_since(ACME, "d1", 2) == h[3].at
    assert registry.changed_at(ACME, "d1", Status.DELETED, 2) == h[4].at
    assert registry.changed_at(ACME, "d1", Status.DELETED, 1) is None
    # a deleted document holds nothing: not a duplicate of a new upload, not counted in the quota
    assert registry.find_by_hash(ACME, "h1") is None and registry.usage(ACME) == (0, 0)
    registry.save(DocumentRecord(ACME, "d2", "x.txt", "text/plain", "h2", Status.INDEXED))
    registry.delete_documents(ACME, ["d1"], "e" * 32)  # erased: every trace, the history too
    assert registry.history(ACME, "d1") == ()
    registry.delete_tenant(ACME)
    assert registry.history(ACME, "d2") == ()


def test_deleted_by_covers_every_version_up_to_the_highest_deleted() -> None:
    ev = DocumentDeleted(tenant_id=ACME, idempotency_key="k", document_id="d1", version=2)
    covered = deleted_by([ev, ("d2", 5), ("d1", 1)])
    assert covered("d1", 1) and covered("d1", 2) and not covered("d1", 3)
    assert covered("d2", 5) and not covered("d2", 6) and not covered("d3", 1)


# --- DeleteDocument ----------------------------------------------------------------------------------------


async def test_delete_keeps_the_record_with_its_history_publishes_and_audits(
    registry: DocumentRegistry,
) -> None:
    bus = Bus()
    core = make(registry, bus)
    r = await core.ingest(ACME, "w.txt", TEXT, document_id="d1")
    assert core.texts is not None and core.texts.get(ACME, "d1") is not None
    with acting_as(Access(Principal(subject="alice", via="local"), AllowAll())):
        d = await core.delete_document(ACME, "d1", reason="contract ended")
    assert (d.status, d.version) == (Status.DELETED, 1)
    got = await core.get_document(ACME, "d1")
    assert got.status == Status.DELETED and got.filename == "w.txt" and got.content_hash == r.content_hash
    h = registry.history(ACME, "d1")
    assert [c.status for c in h] == [Status.RECEIVED, Status.CHUNKED, Status.DELETED]
    assert h[-1].detail == "contract ended"
    (ev,) = bus.deleted
    assert (ev.document_id, ev.version, ev.reason, ev.deleted_by) == ("d1", 1, "contract ended", "alice")
    assert core.texts is not None and core.texts.get(ACME, "d1") is None  # its parsed text is gone
    audit = core._audit
    assert isinstance(audit, ListAudit)
    (record,) = audit.records
    assert (record.kind, record.principal, record.reason) == ("deletion", "alice", "contract ended")
    assert record.details == {"document_id": "d1", "version": "1"}
    # deleting it again changes nothing, but says so again on the bus (a retry completes a failed publish)
    again = await core.delete_document(ACME, "d1")
    assert again.status == Status.DELETED and len(registry.history(ACME, "d1")) == 3
    assert [e.idempotency_key for e in bus.deleted] == [ev.idempotency_key] * 2
    assert len(audit.records) == 1


async def test_bad_or_unknown_deletions_are_refused(registry: DocumentRegistry) -> None:
    core = make(registry, Bus())
    await core.ingest(ACME, "w.txt", TEXT, document_id="d1")
    with pytest.raises(NotFound):
        await core.delete_document(ACME, "nope")
    with pytest.raises(NotFound):
        await core.delete_document(OTHER, "d1")  # another tenant's document
    with pytest.raises(InvalidArgument):
        await core.delete_document(ACME, "../d1")
    with pytest.raises(InvalidArgument, match="reason"):
        await core.delete_document(ACME, "d1", reason="r" * 1025)
    assert (await core.get_document(ACME, "d1")).status == Status.CHUNKED


async def test_an_upload_after_the_deletion_is_a_new_version(registry: DocumentRegistry) -> None:
    bus = Bus()
    core = make(registry, bus)
    first = await core.ingest(ACME, "w.txt", TEXT)  # id from the content hash
    await core.delete_document(ACME, first.document_id)
    again = await core.ingest(ACME, "w.txt", TEXT)  # the same bytes: not a duplicate of a deleted one
    assert again.document_id == first.document_id and not again.duplicate
    d = await core.get_document(ACME, first.document_id)
    assert d.status == Status.CHUNKED and d.version > 1
    assert {c.version for c in bus.chunks} == {1, d.version}


# --- nothing older brings it back --------------------------------------------------------------------------


async def test_a_replayed_submission_does_not_bring_a_deleted_document_back(
    registry: DocumentRegistry,
) -> None:
    bus = Bus()
    core = make(registry, bus)
    written = datetime.now(UTC) - timedelta(minutes=5)
    await core.on_document_submitted(submitted(written))
    await core.delete_document(ACME, "d1")
    published = len(bus.chunks)
    await core.on_document_submitted(submitted(written))  # the same event, replayed (offset reset, DLQ)
    replay_of_d1 = await core.get_document(ACME, "d1")
    assert replay_of_d1.status == Status.DELETED and replay_of_d1.version == 1
    assert bus.chunks[published:] == []
    # a submission written after the deletion is a new upload: a new version, ingested
    await core.on_document_submitted(submitted(datetime.now(UTC) + timedelta(seconds=1)))
    d = await core.get_document(ACME, "d1")
    assert d.status == Status.CHUNKED and d.version > 1
    assert any(c.document_id == "d1" and c.version == d.version for c in bus.chunks)


async def test_a_replayed_submission_by_reference_is_skipped_before_its_object_is_read(
    registry: DocumentRegistry,
) -> None:
    bus = Bus()
    core = make(registry, bus)
    written = datetime.now(UTC) - timedelta(minutes=5)
    await core.on_document_submitted(submitted(written))
    await core.delete_document(ACME, "d1", reason="gone")
    # the same document's submission by reference, written before the deletion; its object is gone
    replay = submitted(written, content=b"").model_copy(update={"content_uri": f"{ACME}/uploads/w.txt"})
    await core.on_document_submitted(replay)  # skipped: no read, no failure recorded
    d = await core.get_document(ACME, "d1")
    assert d.status == Status.DELETED and d.version == 1


async def test_a_deletion_request_older_than_the_current_version_does_not_delete_it(
    registry: DocumentRegistry,
) -> None:
    bus = Bus()
    core = make(registry, bus)
    requested_at = datetime.now(UTC) - timedelta(minutes=1)
    await core.ingest(ACME, "w.txt", TEXT, document_id="d1")
    old = DeletionRequested(
        tenant_id=ACME, idempotency_key="del-1", document_id="d1", occurred_at=requested_at
    )
    await core.on_deletion_requested(old)  # written before this version was uploaded: a replay
    assert (await core.get_document(ACME, "d1")).status == Status.CHUNKED and bus.deleted == []
    new = DeletionRequested(tenant_id=ACME, idempotency_key="del-2", document_id="d1", reason="gone")
    await core.on_deletion_requested(new)
    assert (await core.get_document(ACME, "d1")).status == Status.DELETED
    assert [e.reason for e in bus.deleted] == ["gone"]


async def test_late_chunks_of_a_deleted_version_are_deleted_again(registry: DocumentRegistry) -> None:
    bus = Bus()
    core = make(registry, bus)
    await core.ingest(ACME, "w.txt", TEXT, document_id="d1")
    await core.delete_document(ACME, "d1")
    await core.on_chunks_indexed(indexed("d1", 1))  # in flight when it was deleted, indexed after
    assert len(bus.deleted) == 2
    late = bus.deleted[1]
    assert (late.document_id, late.version) == ("d1", 1) and late.idempotency_key.endswith("/late/v1/b0")
    assert (await core.get_document(ACME, "d1")).status == Status.DELETED  # not advanced to indexed
    # uploaded again: the new version's chunks are its own, not deleted
    await core.ingest(ACME, "w.txt", TEXT + b" More.", document_id="d1")
    v = (await core.get_document(ACME, "d1")).version
    await core.on_chunks_indexed(indexed("d1", v))
    assert len(bus.deleted) == 2 and (await core.get_document(ACME, "d1")).status == Status.INDEXED


async def test_a_deletion_mirrored_from_a_peer_is_applied_and_its_chunks_arriving_later_are_stale(
    registry: DocumentRegistry,
) -> None:
    bus = Bus()
    core = make(registry, bus, region="b", regions=("a", "b"))
    ev = DocumentDeleted(
        tenant_id=ACME,
        idempotency_key="acme/d9/deleted/v4",
        document_id="d9",
        version=4,
        reason="r",
        origin="a",
    )
    assert await core.on_replicated_deletion(ev) == "applied"  # not seen here yet: recorded deleted
    d = await core.get_document(ACME, "d9")
    assert (d.status, d.version) == (Status.DELETED, 4)
    assert registry.history(ACME, "d9")[-1].detail == "r (deleted in region a)"
    assert await core.on_replicated_batch(embedded("d9", 4)) == "stale"  # its chunks, mirrored late
    assert (await core.get_document(ACME, "d9")).status == Status.DELETED
    assert await core.on_replicated_deletion(ev) == "stale"  # again: already deleted
    assert bus.deleted == []  # not published again: the origin's event reaches this region's retrieval
    # a document this region holds at a newer version than the deletion covers stays
    await core.on_replicated_batch(embedded("d7", 6))
    older = ev.model_copy(update={"document_id": "d7", "version": 5})
    assert await core.on_replicated_deletion(older) == "stale"
    assert (await core.get_document(ACME, "d7")).status != Status.DELETED
    gone = ev.model_copy(update={"tenant_id": "nowhere"})
    assert await core.on_replicated_deletion(gone) == "tenant_absent"


async def test_a_submission_and_a_deletion_are_ordered_as_they_were_written_however_late_consumed(
    registry: DocumentRegistry,
) -> None:
    bus = Bus()
    core = make(registry, bus)
    now = datetime.now(UTC)
    # written 10 minutes ago, consumed now (a backlog): a deletion written after it still deletes it
    await core.on_document_submitted(submitted(now - timedelta(minutes=10)))
    request = DeletionRequested(
        tenant_id=ACME, idempotency_key="del-1", document_id="d1", occurred_at=now - timedelta(minutes=5)
    )
    await core.on_deletion_requested(request)
    assert (await core.get_document(ACME, "d1")).status == Status.DELETED
    # a submission written after that deletion (though before it was consumed) is a new upload
    await core.on_document_submitted(submitted(now - timedelta(minutes=2), content=TEXT + b" Again."))
    d = await core.get_document(ACME, "d1")
    assert d.status == Status.CHUNKED and d.version == 2
    # the deletion request replayed: written before version 2 was, it leaves it alone
    await core.on_deletion_requested(request)
    assert (await core.get_document(ACME, "d1")).status == Status.CHUNKED
