"""Documents a stopped process left pending (recorded RECEIVED/CHUNKED/EMBEDDED, their chunk events lost
with an in-process bus, or never published) are driven again: at start (``resume_pending``, every tenant),
and when a client uploads the same bytes again (instead of "duplicate" forever). The chunk events are the
ones the lost upload published (same ids, idempotency keys, text, metadata): indexing them again upserts,
and the document ends INDEXED once. A pending document without its parsed text is FAILED with the
reason, and the same bytes uploaded again are ingested afresh."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from isthmus_core.contracts.events import ChunksCreated, ChunksIndexed
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import Unavailable
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.guard import Action, ChunkScan, ChunkVerdict, IngestScope
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.registry import DocumentRecord, DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.texts import TextStore

ACME, OTHER = TenantId("acme"), TenantId("other")
TEXT = (
    b"Gliders stay aloft by circling in thermals, columns of rising warm air over sunny fields. "
    b"The winch driver signals the launch with a raised arm before every cable pull. "
    b"Pilots log every flight in the club's book, with the glider, the launch and the landing time. "
    b"In spring the ridge above the valley gives lift on westerly days for hours on end."
)


def chunker(max_tokens: int = 24) -> Chunker:
    return Chunker(
        bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=max_tokens, overlap_tokens=0
    )


class Scanner:
    """Allows every chunk; ``down`` times Unavailable first (the guardrail not up yet at start)."""

    def __init__(self, down: int = 0) -> None:
        self.down = down
        self.calls = 0

    async def scan(self, tenant_id: str, document_id: str, chunks: Sequence[tuple[int, str]]) -> ChunkScan:
        self.calls += 1
        if self.down:
            self.down -= 1
            raise Unavailable("guardrail unreachable")
        verdicts = tuple(ChunkVerdict(i, Action.ALLOW, (), t) for i, t in chunks)
        return ChunkScan(verdicts, "v1", IngestScope.CHUNK)


class Process:
    """One ingestion process over the data directory: a new one is a restart (the bus's messages of the
    previous one are gone: ``published`` is this process's own list)."""

    def __init__(
        self, data: Path, *, max_tokens: int = 24, scanner: Scanner | None = None, kafka: bool = False
    ) -> None:
        self.registry = DocumentRegistry(data / "documents.sqlite")
        self.texts = TextStore(data / "texts.sqlite")
        self.published: list[ChunksCreated] = []
        #: publishes that fail (the broker unreachable), the next ones first
        self.broker_down = 0

        async def publish(ev: ChunksCreated) -> None:
            if ev.batch_index > 0 and self.broker_down:  # its first batch went out
                self.broker_down -= 1
                raise Unavailable("kafka unreachable")
            self.published.append(ev)

        self.core = Ingestion(
            self.registry,
            chunker(max_tokens),
            InMemoryTenantDirectory([ACME, OTHER]),
            publish,
            max_bytes=5_000_000,
            chunks_per_event=2,
            texts=self.texts,
            scanner=scanner,
            kafka_bus=kafka,
        )

    def close(self) -> None:
        self.registry.close()
        self.texts.close()

    def status(self, tenant: str, doc: str) -> Status:
        d = self.registry.get(tenant, doc)
        assert d is not None
        return d.status

    async def index(self, events: Sequence[ChunksCreated] | None = None) -> None:
        """What embedding and retrieval report once they indexed these batches."""
        for ev in self.published if events is None else events:
            await self.core.on_chunks_indexed(
                ChunksIndexed(
                    tenant_id=ev.tenant_id,
                    idempotency_key=ev.idempotency_key + "/indexed",
                    document_id=ev.document_id,
                    content_hash=ev.content_hash,
                    version=ev.version,
                    batch_index=ev.batch_index,
                    batch_count=ev.batch_count,
                    count=len(ev.chunks),
                )
            )


def content(events: Sequence[ChunksCreated]) -> list[tuple[Any, ...]]:
    """What an event carries to the index (everything but its own event id and time)."""
    return [
        (
            e.tenant_id,
            e.idempotency_key,
            e.document_id,
            e.version,
            e.batch_index,
            e.batch_count,
            [(c.chunk_id, c.index, c.text, c.start, c.end, c.metadata) for c in e.chunks],
        )
        for e in events
    ]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path


async def crashed(
    data: Path, *uploads: tuple[TenantId, bytes], **kw: Any
) -> list[tuple[str, list[ChunksCreated]]]:
    """Upload, acknowledged (CHUNKED), then the process stops before anything is indexed: its chunk
    events are lost. The documents and the events that were lost."""
    first = Process(data, **kw)
    out = []
    for tenant, raw in uploads:
        before = len(first.published)
        r = await first.core.ingest(tenant, "notes.txt", raw, metadata={"team": "blue"})
        assert r.status == Status.CHUNKED
        out.append((r.document_id, first.published[before:]))
    first.close()
    return out


async def test_documents_left_pending_are_driven_again_at_start_in_every_tenant(data: Path) -> None:
    other_text = TEXT.replace(b"Gliders", b"Sailplanes")
    [(doc, lost), (doc2, lost2)] = await crashed(data, (ACME, TEXT), (OTHER, other_text))
    assert len(lost) > 1  # several batches

    restarted = Process(data, scanner=Scanner())
    assert [(d.tenant_id, d.document_id) for d in restarted.registry.pending()] == [
        (ACME, doc),
        (OTHER, doc2),
    ]
    assert await restarted.core.resume_pending() == 2
    # the events the lost upload published, again: same chunk ids and keys, so indexing upserts them
    assert content(restarted.published) == content(lost + lost2)
    await restarted.index()
    assert restarted.status(ACME, doc) == Status.INDEXED
    assert restarted.status(OTHER, doc2) == Status.INDEXED
    # exactly once: nothing pending any more, nothing driven again
    assert await restarted.core.resume_pending() == 0
    assert len(restarted.published) == len(lost + lost2)
    history = [c.status for c in restarted.registry.history(ACME, doc)]
    assert history.count(Status.INDEXED) == 1
    restarted.close()


async def test_a_partly_indexed_document_is_completed_with_the_same_chunks(data: Path) -> None:
    first = Process(data)
    r = await first.core.ingest(ACME, "notes.txt", TEXT)
    await first.index(first.published[:1])  # the first batch indexed, then the process stops
    assert first.status(ACME, r.document_id) == Status.CHUNKED
    lost = list(first.published)
    first.close()

    restarted = Process(data)
    assert await restarted.core.resume_pending() == 1
    assert content(restarted.published) == content(lost)  # the indexed batch's chunks upsert: same ids
    await restarted.index()
    assert restarted.status(ACME, r.document_id) == Status.INDEXED
    d = restarted.registry.get(ACME, r.document_id)
    assert (
        d is not None and d.version == r_version(lost) and d.chunk_count == sum(len(e.chunks) for e in lost)
    )
    restarted.close()


def r_version(events: Sequence[ChunksCreated]) -> int:
    (version,) = {e.version for e in events}
    return version


async def test_a_retried_upload_of_a_stuck_document_drives_it_instead_of_answering_duplicate(
    data: Path,
) -> None:
    [(doc, lost)] = await crashed(data, (ACME, TEXT))
    restarted = Process(data)  # its start did not resume it (say, the guardrail was down throughout)
    retry = await restarted.core.ingest(ACME, "notes.txt", TEXT, metadata={"team": "blue"})
    assert retry.duplicate and retry.document_id == doc
    assert content(restarted.published) == content(lost)
    # driven by this process now: another retry is a plain duplicate, nothing published again
    again = await restarted.core.ingest(ACME, "notes.txt", TEXT)
    assert again.duplicate and len(restarted.published) == len(lost)
    await restarted.index()
    assert restarted.status(ACME, doc) == Status.INDEXED
    restarted.close()


async def test_a_pending_document_without_its_text_fails_with_the_reason_and_a_retry_ingests_it(
    data: Path,
) -> None:
    [(doc, _)] = await crashed(data, (ACME, TEXT))
    texts = TextStore(data / "texts.sqlite")
    texts.delete(ACME, doc)  # stopped before its text was kept
    texts.close()

    restarted = Process(data)
    assert await restarted.core.resume_pending() == 1
    d = restarted.registry.get(ACME, doc)
    assert d is not None and d.status == Status.FAILED and "upload it again" in d.failure_reason
    assert restarted.published == []
    retry = await restarted.core.ingest(ACME, "notes.txt", TEXT)
    assert not retry.duplicate and retry.document_id == doc and retry.status == Status.CHUNKED
    await restarted.index()
    assert restarted.status(ACME, doc) == Status.INDEXED
    restarted.close()


async def test_a_retry_of_a_stuck_document_without_its_text_is_ingested_afresh(data: Path) -> None:
    [(doc, _)] = await crashed(data, (ACME, TEXT))
    texts = TextStore(data / "texts.sqlite")
    texts.delete(ACME, doc)
    texts.close()
    restarted = Process(data)
    retry = await restarted.core.ingest(ACME, "notes.txt", TEXT)
    assert not retry.duplicate and retry.document_id == doc and restarted.published
    await restarted.index()
    assert restarted.status(ACME, doc) == Status.INDEXED
    restarted.close()


async def test_chunking_changed_since_the_crash_makes_a_new_version(data: Path) -> None:
    [(doc, lost)] = await crashed(data, (ACME, TEXT))
    restarted = Process(data, max_tokens=64)  # fewer, larger chunks now: the older ones are replaced
    assert await restarted.core.resume_pending() == 1
    assert r_version(restarted.published) > r_version(lost)
    await restarted.index()
    d = restarted.registry.get(ACME, doc)
    assert d is not None and d.status == Status.INDEXED
    assert d.chunk_count == sum(len(e.chunks) for e in restarted.published) < sum(len(e.chunks) for e in lost)
    restarted.close()


async def test_resume_waits_for_the_guardrail_and_costs_nothing_when_nothing_is_pending(data: Path) -> None:
    scanner = Scanner()
    idle = Process(data, scanner=scanner)
    # a document mirrored from another region (no chunking recorded here) is driven there, not here
    idle.registry.save(DocumentRecord(ACME, "mirrored", "m.txt", "", "h", Status.CHUNKED, batch_count=1))
    assert await idle.core.resume_until_done(backoff_s=0) == 0
    assert scanner.calls == 0 and idle.published == []
    assert idle.status(ACME, "mirrored") == Status.CHUNKED
    idle.close()

    [(_, lost)] = await crashed(data, (ACME, TEXT))
    down = Scanner(down=2)  # the guardrail answers from the third call
    restarted = Process(data, scanner=down)
    assert await restarted.core.resume_until_done(backoff_s=0) == 1
    assert down.calls == 3 and content(restarted.published) == content(lost)
    restarted.close()


async def test_on_kafka_a_document_recorded_but_not_all_published_is_resumed_and_a_chunked_one_is_not(
    data: Path,
) -> None:
    first = Process(data, kafka=True)
    chunked = await first.core.ingest(ACME, "notes.txt", TEXT)  # its events are in Kafka: driven
    first.broker_down = 1
    with pytest.raises(Unavailable):  # the upload fails: recorded RECEIVED, one batch of it published
        await first.core.ingest(OTHER, "notes.txt", TEXT)
    (received,) = first.registry.pending([Status.RECEIVED])
    assert received.tenant_id == OTHER
    first.close()

    restarted = Process(data, kafka=True)
    assert await restarted.core.resume_pending() == 1
    assert {e.tenant_id for e in restarted.published} == {OTHER}
    assert restarted.status(ACME, chunked.document_id) == Status.CHUNKED  # left to the events in Kafka
    await restarted.index()
    assert restarted.status(OTHER, received.document_id) == Status.INDEXED
    restarted.close()


async def test_a_retry_after_a_failed_publish_drives_the_recorded_document(data: Path) -> None:
    """The client's upload failed after the document was recorded (the bus refused a batch): its retry
    of the same bytes publishes every batch, not "duplicate" of a document nothing drives."""
    p = Process(data, kafka=True)
    p.broker_down = 1
    with pytest.raises(Unavailable):
        await p.core.ingest(ACME, "notes.txt", TEXT)
    first_batch = list(p.published)
    retry = await p.core.ingest(ACME, "notes.txt", TEXT)
    assert retry.status == Status.CHUNKED
    assert content(p.published[len(first_batch) :])[0] == content(first_batch)[0]  # the same batch again
    await p.index()
    assert p.status(ACME, retry.document_id) == Status.INDEXED
    p.close()
