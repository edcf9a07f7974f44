"""Erasure in ingestion: the receipt's state machine, data-subject resolution, the bus-retention step,
the registry leaving no byte of an erased document behind, and the replicated path (a request mirrored
from another region is erased here too and answered with this region's reports)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.auth.context import Access, AllowAll, acting_as
from isthmus_core.auth.identity import ANONYMOUS, Principal
from isthmus_core.auth.stack import ListAudit
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.replication import replica_subscriptions
from isthmus_core.bus.typed import publish_event, subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    ERASURE_PLACES,
    ChunksCreated,
    ChunksEmbedded,
    ChunksIndexed,
    EmbeddedChunk,
    ErasureApplied,
    ErasureRequested,
)
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.regions import mirrored
from isthmus_core.store.port import chunk_uuid
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.erasure import (
    EXPECTED_PLACES,
    KAFKA_RETENTION_CHECK_MS,
    KAFKA_SEGMENT_MS,
    bus_step,
    documents_of_subject,
    erased_by,
    new_receipt,
)
from isthmus_ingestion.registry import DocumentRegistry
from isthmus_ingestion.service import Ingestion

ACME, OTHER = TenantId("acme"), TenantId("other")
DAY_MS = 24 * 3600 * 1000


# --- the receipt (pure) ------------------------------------------------------------------------------------


def test_a_new_receipt_expects_every_place_in_every_region_pending() -> None:
    r = new_receipt(
        erasure_id="0" * 32,
        tenant_id="acme",
        requested_by="alice",
        requested_at=1.0,
        target="documents",
        reason="",
        document_ids=["d1"],
        regions=["b", "a"],
    )
    assert [(s.place, s.region) for s in r.steps] == [(p, g) for g in ("a", "b") for p in EXPECTED_PLACES]
    assert {s.status for s in r.steps} == {"pending"}
    assert set(ERASURE_PLACES) <= set(EXPECTED_PLACES) and "kafka" in EXPECTED_PLACES
    assert not r.complete
    single = new_receipt(
        erasure_id="0" * 32,
        tenant_id="acme",
        requested_by="",
        requested_at=1.0,
        target="whole_tenant",
        reason="",
        document_ids=[],
        regions=[],
    )
    assert {s.region for s in single.steps} == {""}


def test_the_receipt_state_machine() -> None:
    r = new_receipt(
        erasure_id="0" * 32,
        tenant_id="acme",
        requested_by="",
        requested_at=1.0,
        target="documents",
        reason="",
        document_ids=["d1"],
        regions=[""],
        places=("ingestion", "retrieval"),
    )
    r = r.report("retrieval", "", "failed", 0, "store down", 2.0)
    step = r.step("retrieval", "")
    assert step is not None and (step.status, step.detail, step.completed_at) == ("failed", "store down", 2.0)
    r = r.report("retrieval", "", "done", 7, "7 chunks", 3.0)  # failed -> done: a retry succeeded
    r = r.report("retrieval", "", "failed", 0, "late duplicate", 4.0)  # done is final
    step = r.step("retrieval", "")
    assert step is not None and (step.status, step.count, step.completed_at) == ("done", 7, 3.0)
    assert not r.complete  # ingestion still pending
    r = r.report("ingestion", "", "done", 1, "", 5.0)
    assert r.complete
    r = r.report("retrieval", "far", "done", 0, "", 6.0)  # a region the receipt did not list: added
    assert r.step("retrieval", "far") is not None and r.complete
    r = r.report("evaluation", "", "failed", 0, "x", 7.0)
    assert not r.complete


def test_documents_of_a_data_subject_match_the_metadata_key_exactly() -> None:
    docs = [
        ("d1", {"data_subject": "alice"}),
        ("d2", {"data_subject": "bob"}),
        ("d3", {"data_subject": "Alice"}),
        ("d4", {"subject": "alice"}),
        ("d5", {}),
        ("d6", {"data_subject": "alice", "x": "y"}),
    ]
    assert documents_of_subject(docs, "data_subject", "alice") == ["d1", "d6"]
    assert documents_of_subject(docs, "subject", "alice") == ["d4"]


def test_a_replay_skips_what_was_erased_after_it_was_written() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    def erasure(minutes: int, docs: list[str], whole: bool = False) -> ErasureRequested:
        return ErasureRequested(
            tenant_id="acme",
            idempotency_key=str(minutes),
            erasure_id="e" * 32,
            document_ids=docs,
            whole_tenant=whole,
            occurred_at=at(minutes),
        )

    covered = erased_by([erasure(10, ["d1"]), erasure(20, ["d1", "d2"])])
    assert covered("d1", at(5)) and covered("d1", at(15)) and covered("d2", at(20))
    assert not covered("d1", at(25))  # uploaded again after its last erasure
    assert not covered("d3", at(5))
    whole = erased_by([erasure(10, ["d1"]), erasure(30, [], whole=True)])
    assert whole("d9", at(29)) and not whole("d9", at(31)) and whole("d1", at(5))
    assert not erased_by([])("d1", at(0))


# --- the bus step (pure) -----------------------------------------------------------------------------------


def test_kafka_content_expires_after_the_longest_retention_plus_a_segment_roll() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    status, detail = bus_step(at, kafka=True)
    by = datetime.fromtimestamp(at + (7 * DAY_MS + KAFKA_SEGMENT_MS + KAFKA_RETENTION_CHECK_MS) / 1000, UTC)
    assert status == "done"
    assert f"expires by {by:%Y-%m-%dT%H:%M:%SZ}" in detail
    for spec in (topics.DOCUMENTS_SUBMITTED, topics.CHUNKS_CREATED, topics.CHUNKS_EMBEDDED):
        assert spec.name in detail
    assert "crypto-shredding" in detail


def test_kafka_retention_override_and_a_topic_of_its_own() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    _, detail = bus_step(at, kafka=True, retention_override_ms=DAY_MS)
    assert "expires by 2026-01-09T00:05:00Z" in detail  # 1 d + 7 d segment roll + 5 min check
    long = topics.TopicSpec("x.long.v1", ErasureApplied, "tenant_id", retention_ms=30 * DAY_MS)
    _, detail = bus_step(at, kafka=True, specs=[topics.CHUNKS_CREATED, long], segment_ms=0)
    assert "expires by 2026-01-31T00:05:00Z" in detail


def test_kafka_kept_forever_fails_the_step_and_the_in_process_bus_holds_memory_only() -> None:
    status, detail = bus_step(0.0, kafka=True, retention_override_ms=-1)
    assert status == "failed" and "forever" in detail
    status, detail = bus_step(0.0, kafka=False)
    assert status == "done" and "memory" in detail


# --- ingestion's core --------------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.requested: list[ErasureRequested] = []
        self.applied: list[ErasureApplied] = []

    async def request(self, ev: ErasureRequested) -> None:
        self.requested.append(ev)

    async def apply(self, ev: ErasureApplied) -> None:
        self.applied.append(ev)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DocumentRegistry]:
    # some SQLite builds zero deleted rows by default (SQLITE_SECURE_DELETE), others do not: act as the
    # latter, so the registry must turn it on itself
    connect = sqlite3.connect

    def insecure_by_default(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete=OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", insecure_by_default)
    r = DocumentRegistry(tmp_path / "documents.sqlite")
    yield r
    r.close()


def make(
    registry: DocumentRegistry, rec: Recorder, region: str = "", regions: tuple[str, ...] = ()
) -> Ingestion:
    async def publish(ev: ChunksCreated) -> None:
        return None

    chunker = Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=64, overlap_tokens=8)
    return Ingestion(
        registry,
        chunker,
        InMemoryTenantDirectory([ACME, OTHER]),
        publish,
        max_bytes=1_000_000,
        chunks_per_event=8,
        region=region,
        regions=regions,
        publish_erasure=rec.request,
        publish_applied=rec.apply,
        subject_key="person",
        audit=ListAudit(),
    )


async def seed(core: Ingestion) -> dict[str, str]:
    ids = {}
    for name, subject in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        r = await core.ingest(
            ACME,
            f"{name}.txt",
            f"Document {name} about {subject}, secret-{name}-word.".encode(),
            document_id=name,
            metadata={"person": subject, "note": f"secret-{name}-note"},
        )
        ids[name] = r.document_id
    await core.ingest(
        OTHER, "o.txt", b"Other tenant's alice text.", document_id="o1", metadata={"person": "alice"}
    )
    return ids


def files_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


async def test_erasing_a_data_subject_removes_its_documents_and_leaves_no_byte_in_the_registry(
    registry: DocumentRegistry, tmp_path: Path
) -> None:
    rec = Recorder()
    core = make(registry, rec)
    await seed(core)
    assert b"secret-a1-note" in files_bytes(tmp_path)
    alice = Principal(subject="dpo", via="local")
    with acting_as(Access(alice, AllowAll())):
        r = await core.erase(ACME, data_subject="alice", reason="art. 17 request")
    assert sorted(r.document_ids) == ["a1", "a2"] and r.target == "data_subject"
    assert r.requested_by == "dpo" and r.reason == "art. 17 request"
    assert [d.document_id for d in registry.list(ACME)] == ["b1"]
    assert [d.document_id for d in registry.list(OTHER)] == ["o1"]  # the same subject in another tenant
    for name in ("a1", "a2"):
        with pytest.raises(NotFound):
            await core.get_document(ACME, name)
    step = r.step("ingestion", "")
    assert step is not None and (step.status, step.count) == ("done", 2)
    kafka = r.step("kafka", "")
    assert kafka is not None and kafka.status == "done"
    assert r.step("retrieval", "") is not None and r.step("retrieval", "").status == "pending"  # type: ignore[union-attr]
    assert not r.complete
    # published: the request for the other places and regions, and this region's own reports
    (req,) = rec.requested
    assert (req.erasure_id, req.data_subject) == (r.erasure_id, "alice")
    assert sorted(req.document_ids) == ["a1", "a2"]
    assert {(a.place, a.region) for a in rec.applied} == {("ingestion", ""), ("kafka", "")}
    # the bytes are gone from every file of the registry (secure_delete + WAL truncated)
    data = files_bytes(tmp_path)
    assert b"secret-a1-note" not in data and b"secret-a2-note" not in data
    assert b"secret-b1-note" in data  # the other subject is untouched
    # the audit log says who erased what, not the subject
    audit = core._audit
    assert isinstance(audit, ListAudit)
    (record,) = audit.records
    assert record.kind == "erasure" and record.principal == "dpo" and "alice" not in str(record.details)


async def test_the_receipt_completes_from_the_reports_and_is_scoped_to_its_tenant(
    registry: DocumentRegistry,
) -> None:
    rec = Recorder()
    core = make(registry, rec)
    await seed(core)
    with acting_as(Access(ANONYMOUS, AllowAll())):
        r = await core.erase(ACME, document_ids=["a1", "a1", "never-uploaded"])
    assert r.requested_by == ""  # authentication off
    assert r.document_ids == ("a1", "never-uploaded")
    step = r.step("ingestion", "")
    assert step is not None and step.count == 1 and "1 of 2" in step.detail
    for place in ("retrieval", "evaluation"):
        assert (
            await core.on_erasure_applied(
                ErasureApplied(
                    tenant_id=ACME, idempotency_key=place, erasure_id=r.erasure_id, place=place, count=3
                )
            )
            == "applied"
        )
    for report in rec.applied:  # this region's own reports coming back from the bus: idempotent
        await core.on_erasure_applied(report)
    got = await core.get_erasure(ACME, r.erasure_id)
    assert got.complete and got.step("retrieval", "").count == 3  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await core.get_erasure(OTHER, r.erasure_id)
    with pytest.raises(InvalidArgument):
        await core.get_erasure(ACME, "../../etc")
    stranger = ErasureApplied(tenant_id=ACME, idempotency_key="x", erasure_id="f" * 32, place="retrieval")
    assert await core.on_erasure_applied(stranger) == "stale"  # the receipt lives in another region


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "exactly one target"),
        ({"document_ids": ["a1"], "data_subject": "alice"}, "exactly one target"),
        ({"data_subject": "alice", "whole_tenant": True}, "exactly one target"),
        ({"document_ids": []}, "is empty"),
        ({"document_ids": ["../x"]}, "documents.ids[0]"),
        ({"document_ids": [f"d{i}" for i in range(10_001)]}, "the limit is 10000"),
        ({"data_subject": " "}, "data_subject is empty"),
        ({"data_subject": "x" * 257}, "limit is 256"),
        ({"data_subject": "a\nb"}, "non-printable"),
        ({"whole_tenant": True, "reason": "r" * 1025}, "reason"),
    ],
)
async def test_bad_erase_requests_are_refused(
    registry: DocumentRegistry, kwargs: dict[str, object], problem: str
) -> None:
    core = make(registry, Recorder())
    with pytest.raises(InvalidArgument, match=problem.replace("[", r"\[").replace("]", r"\]")):
        await core.erase(ACME, **kwargs)  # type: ignore[arg-type]


async def test_a_data_subject_past_what_one_erasure_carries_is_refused_before_anything_is_erased(
    registry: DocumentRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = make(registry, Recorder())
    await seed(core)
    monkeypatch.setattr("isthmus_ingestion.service.ERASURE_MAX_DOCUMENTS", 1)
    with pytest.raises(FailedPrecondition, match="erase them by id"):
        await core.erase(ACME, data_subject="alice")
    assert len(registry.list(ACME)) == 3


async def test_an_unknown_tenant_is_not_found(registry: DocumentRegistry) -> None:
    with pytest.raises(NotFound):
        await make(registry, Recorder()).erase("nobody", whole_tenant=True)


async def test_whole_tenant_erasure_removes_every_document_and_keeps_the_receipt(
    registry: DocumentRegistry,
) -> None:
    rec = Recorder()
    core = make(registry, rec)
    await seed(core)
    r = await core.erase(ACME, whole_tenant=True)
    assert sorted(r.document_ids) == ["a1", "a2", "b1"] and r.target == "whole_tenant"
    assert registry.list(ACME) == [] and len(registry.list(OTHER)) == 1
    assert rec.requested[0].whole_tenant and rec.requested[0].document_ids == []  # every region: all
    registry.delete_tenant(ACME)  # tenants.deleted follows (retrieval deletes the tenant)
    assert (await core.get_erasure(ACME, r.erasure_id)).erasure_id == r.erasure_id


# --- the replicated path, on the in-process bus ------------------------------------------------------------


async def test_an_erasure_mirrored_from_a_peer_is_applied_here_and_answered_with_this_region(
    registry: DocumentRegistry,
) -> None:
    rec = Recorder()
    core = make(registry, rec, region="b", regions=("a", "b"))
    await seed(core)
    bus = InProcessBus()
    applied: list[ErasureApplied] = []

    async def collect(ev: ErasureApplied) -> None:
        applied.append(ev)

    core._publish_applied = lambda ev: publish_event(bus, topics.ERASURES_APPLIED, ev)
    for sub in replica_subscriptions(
        topics.ERASURES_REQUESTED, "ingestion-erasure", ["a"], core.on_replicated_erasure, service="ingestion"
    ):
        bus.subscribe(sub)
    bus.subscribe(subscribe(topics.ERASURES_APPLIED, "watcher", collect))
    await bus.start()
    try:
        # region a resolved a1 for the subject; this region also holds a2 of the same subject
        request = ErasureRequested(
            tenant_id=ACME,
            idempotency_key="acme/erasure/1",
            erasure_id="a" * 32,
            document_ids=["a1", "not-here-yet"],
            versions={"a1": 1, "not-here-yet": 4},
            data_subject="alice",
            origin="a",
        )
        await publish_event(bus, mirrored(topics.ERASURES_REQUESTED, "a"), request)
        absent = request.model_copy(update={"tenant_id": "gone", "erasure_id": "b" * 32})
        await publish_event(bus, mirrored(topics.ERASURES_REQUESTED, "a"), absent)
        await bus.drain()
    finally:
        await bus.stop()
    assert [d.document_id for d in registry.list(ACME)] == ["b1"]
    mine = {(a.erasure_id, a.place): a for a in applied}
    ing = mine["a" * 32, "ingestion"]
    assert (ing.region, ing.status, ing.count) == ("b", "done", 2)
    assert mine["a" * 32, "kafka"].region == "b"
    gone = mine["b" * 32, "ingestion"]
    assert (gone.count, gone.status) == (0, "done") and "does not live" in gone.detail
    # a2 (of the same subject) was held only here: erased here, and asked of every region's retrieval
    (extra,) = [r for r in rec.requested if r.erasure_id == "a" * 32]
    assert (extra.document_ids, extra.data_subject, list(extra.versions)) == (["a2"], "", ["a2"])
    # a document region a erased before its chunks reached this region: they never bring it back
    late = embedded("not-here-yet", 4)
    assert await core.on_replicated_batch(late) == "stale"
    assert registry.get(ACME, "not-here-yet") is None
    rec.requested.clear()
    await core.on_chunks_indexed(indexed("not-here-yet", 4))  # this region's retrieval indexed them
    assert [r.document_ids for r in rec.requested] == [["not-here-yet"]]
    assert await core.on_replicated_batch(embedded("not-here-yet", 5)) == "applied"  # a newer write


# --- chunks still in flight when their document is erased ---------------------------------------------


def indexed(doc: str, version: int, batch: int = 0) -> ChunksIndexed:
    return ChunksIndexed(
        tenant_id=ACME,
        idempotency_key=f"{doc}/{version}/{batch}",
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
        idempotency_key=f"{doc}/{version}/m",
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
                text="late text",
                start=0,
                end=9,
                vector=[0.1, 0.2],
                metadata={"filename": "a1.txt"},
            )
        ],
    )


async def test_late_chunks_of_an_erased_document_are_erased_again_and_never_bring_it_back(
    registry: DocumentRegistry,
) -> None:
    rec = Recorder()
    core = make(registry, rec)
    await seed(core)  # a1 is chunked, its chunks still on their way to the index
    r = await core.erase(ACME, document_ids=["a1"])
    rec.requested.clear()
    await core.on_chunks_embedded(embedded("a1", 1))
    await core.on_chunks_indexed(indexed("a1", 1))  # indexed after the erasure: erase it again
    (again,) = rec.requested
    assert (again.erasure_id, again.document_ids) == (r.erasure_id, ["a1"])
    assert registry.get(ACME, "a1") is None
    # a mirrored copy of the erased version does not bring the document back either
    assert await core.on_replicated_batch(embedded("a1", 1)) == "stale"
    assert registry.get(ACME, "a1") is None
    # uploaded again: a new version above the erased one, its chunks indexed as usual
    again_up = await core.ingest(ACME, "a1.txt", b"A new text for a1.", document_id="a1")
    doc = registry.get(ACME, "a1")
    assert doc is not None and doc.version == 2 and again_up.document_id == "a1"
    rec.requested.clear()
    await core.on_chunks_indexed(indexed("a1", 1))  # the old version, late again: the new one replaces it
    await core.on_chunks_indexed(indexed("a1", 2))
    assert rec.requested == []
    doc = registry.get(ACME, "a1")
    assert doc is not None and doc.status == "indexed"
