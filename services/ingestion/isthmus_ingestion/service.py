"""Ingestion's core: size/tenant checks → dedup by content hash → parse → chunk → the guardrail's scan of
every chunk (:mod:`isthmus_ingestion.screening`: blocked chunks to ``chunks.quarantined``, redacted text
indexed, flags in chunk metadata) → chunk events."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Literal

import structlog

from isthmus_core.auth.context import current_access, current_principal
from isthmus_core.auth.identity import Permission
from isthmus_core.auth.stack import AuditSink, NoQuotas, QuotaGate
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE, Message
from isthmus_core.contracts.events import (
    ERASURE_ID_PATTERN,
    ERASURE_KAFKA_PLACE,
    ERASURE_MAX_DOCUMENTS,
    AuditRecorded,
    ChunkPayload,
    ChunksCreated,
    ChunksEmbedded,
    ChunksIndexed,
    ChunksQuarantined,
    DeletionRequested,
    DocumentDeleted,
    DocumentSubmitted,
    ErasureApplied,
    ErasureRequested,
    TenantDeleted,
)
from isthmus_core.contracts.ids import (
    DocumentId,
    TenantId,
    is_document_id,
    is_tenant_id,
    parse_document_id,
    parse_tenant_id,
)
from isthmus_core.contracts.topics import DELETIONS_REQUESTED
from isthmus_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    IsthmusError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from isthmus_core.ports.generator import (
    CONTINUES_SENTENCE_KEY,
    HEADING_PATH_KEY,
    PARENT_END_KEY,
    PARENT_START_KEY,
    PARENT_TEXT_KEY,
    SOURCE_NAME_KEY,
    TITLE_KEY,
    URI_KEY,
)
from isthmus_core.ports.guard import ChunkScanner
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_core.regions import next_version
from isthmus_core.store.port import ACL_METADATA_KEY, acl_of, chunk_uuid
from isthmus_ingestion.chunking import TextChunk
from isthmus_ingestion.chunking.strategies import COLLECTION_KEY, ChunkingSelection, Splitter
from isthmus_ingestion.dedup import content_hash, document_id_for
from isthmus_ingestion.deletion import (
    DELETE_METHOD,
    check_reason,
    deletion_key,
    requested_before,
    submitted_before,
)
from isthmus_ingestion.erasure import (
    MAX_ERASE_IDS,
    MAX_REASON_CHARS,
    Receipt,
    Target,
    bus_step,
    check_subject,
    documents_of_subject,
    new_receipt,
    unique_ids,
)
from isthmus_ingestion.objects import (
    DEFAULT_MAX_INLINE_BYTES,
    ObjectStore,
    ObjectStoreUnavailable,
    submitted_content,
)
from isthmus_ingestion.parsing import ChildFile, ParseOptions, parse_document
from isthmus_ingestion.registry import NOT_STORED, PENDING, DocumentRecord, DocumentRegistry, Status
from isthmus_ingestion.screening import (
    GUARDRAIL_FLAGS_KEY,
    IndexedChunk,
    Screening,
    parents_screened,
    screen,
    unscanned,
)
from isthmus_ingestion.texts import StoredText, TextStore

log = structlog.get_logger("isthmus.ingestion")


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: str
    status: Status
    content_hash: str
    chunk_count: int
    duplicate: bool = False
    #: the ingest scan (see :class:`~isthmus_ingestion.registry.DocumentRecord`)
    quarantined_chunks: int = 0
    flagged_chunks: int = 0
    redacted_chunks: int = 0
    quarantine_reason: str = ""
    #: documents found inside this one (attachments, an mbox's messages), each ingested (or failed) alone
    child_document_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, d: DocumentRecord, duplicate: bool = False) -> IngestResult:
        return cls(
            d.document_id,
            d.status,
            d.content_hash,
            d.chunk_count,
            duplicate,
            d.quarantined_chunks,
            d.flagged_chunks,
            d.redacted_chunks,
            d.quarantine_reason,
        )


#: chunk metadata keys ingestion derives (not the upload's own metadata)
_DERIVED_METADATA = frozenset(
    {
        SOURCE_NAME_KEY,
        CONTINUES_SENTENCE_KEY,
        GUARDRAIL_FLAGS_KEY,
        HEADING_PATH_KEY,
        PARENT_TEXT_KEY,
        PARENT_START_KEY,
        PARENT_END_KEY,
    }
)
#: chunk metadata only ingestion sets: the guardrail's flags (the scan's to set) and what the chunking
#: strategy says (a parent's text is answered from: an upload could otherwise slip unscanned text in)
_RESERVED_METADATA = frozenset(
    {GUARDRAIL_FLAGS_KEY, HEADING_PATH_KEY, PARENT_TEXT_KEY, PARENT_START_KEY, PARENT_END_KEY}
)

#: the place name of ingestion's own erasure step
ERASURE_PLACE = "ingestion"
ERASE_METHOD = "/isthmus.ingestion.v1.IngestionService/Erase"
_ERASURE_ID = re.compile(ERASURE_ID_PATTERN)
ErasureOutcome = Literal["applied", "stale", "tenant_absent"]

#: upload metadata keys that give the source's URI, first found wins
URI_METADATA_KEYS = (URI_KEY, "source_uri")
#: metadata of a child document (an attachment, an mbox's message): the document it was found in
PARENT_KEY = "parent_document_id"
#: upload metadata keys a child does not inherit from its parent (they describe the parent's file)
_NOT_INHERITED = frozenset({TITLE_KEY, *URI_METADATA_KEYS, "path", "mime", "filename", PARENT_KEY})
#: upload metadata keys of the JSON field map (comma-separated field names; dotted paths for nested ones)
JSON_TEXT_FIELDS_KEY = "json_text_fields"
JSON_TITLE_FIELD_KEY = "json_title_field"
JSON_METADATA_FIELDS_KEY = "json_metadata_fields"


def _chunk_meta(
    meta: dict[str, str], continues_sentence: bool, flags: str, own: Sequence[tuple[str, str]] = ()
) -> dict[str, str]:
    """A chunk's metadata: the document's, then what its chunking strategy says of it (heading path,
    parent section), whether it continues a sentence and the guardrail's flags."""
    if not (continues_sentence or flags or own):
        return meta
    extra = {CONTINUES_SENTENCE_KEY: "true"} if continues_sentence else {}
    return {**meta, **dict(own), **extra, **({GUARDRAIL_FLAGS_KEY: flags} if flags else {})}


def source_name(filename: str) -> str:
    """The file name a person recognises: the upload's name without directories (either slash)."""
    return PurePosixPath(filename.replace("\\", "/")).name or filename


def chunk_metadata(filename: str, title: str | None, metadata: Mapping[str, str]) -> dict[str, str]:
    """Metadata of every chunk of a document: the upload metadata plus the source a person recognises.

    ``source_name`` is the file name; ``title`` the upload's ``title`` metadata, else the parsed title;
    ``uri`` the upload's ``uri`` (or ``source_uri``) metadata. A source key without a value is left out.
    """
    source = {
        SOURCE_NAME_KEY: source_name(filename),
        TITLE_KEY: metadata.get(TITLE_KEY) or title or "",
        URI_KEY: next((metadata[k] for k in URI_METADATA_KEYS if metadata.get(k)), ""),
    }
    # the guardrail's flags are the scan's to set, the parent section the chunking's: an upload cannot set
    # or hide them
    own = {k: v for k, v in metadata.items() if k not in _RESERVED_METADATA}
    return {"filename": filename, **own, **{k: v for k, v in source.items() if v}}


class Ingestion:
    def __init__(
        self,
        registry: DocumentRegistry,
        chunker: Splitter | ChunkingSelection,
        tenants: TenantDirectory,
        publish_chunks: Callable[[ChunksCreated], Awaitable[None]],
        *,
        max_bytes: int,
        chunks_per_event: int,
        region: str = "",
        regions: Sequence[str] = (),
        quotas: QuotaGate | None = None,
        publish_erasure: Callable[[ErasureRequested], Awaitable[None]] | None = None,
        publish_applied: Callable[[ErasureApplied], Awaitable[None]] | None = None,
        subject_key: str = "data_subject",
        kafka_bus: bool = False,
        kafka_retention_ms: int | None = None,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.time,
        scanner: ChunkScanner | None = None,
        publish_quarantine: Callable[[ChunksQuarantined], Awaitable[None]] | None = None,
        texts: TextStore | None = None,
        parse_options: ParseOptions | None = None,
        max_child_depth: int = 2,
        max_children: int = 1000,
        objects: ObjectStore | None = None,
        max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES,
        publish_deleted: Callable[[DocumentDeleted], Awaitable[None]] | None = None,
    ) -> None:
        """``chunker``: one splitter for every document, or the strategy per tenant and collection
        (:class:`~isthmus_ingestion.chunking.strategies.ChunkingSelection`). ``scanner``: the guardrail's
        ingest scan of every chunk before it is published (None = chunks
        are published unscanned: ``[ingestion] scan_chunks = false``); blocked chunks go to
        ``publish_quarantine``. ``publish_deleted``: deletions (``documents.deleted``)."""
        self.registry = registry
        self._chunking = (
            chunker if isinstance(chunker, ChunkingSelection) else ChunkingSelection.single(chunker)
        )
        self._tenants = tenants
        self._publish = publish_chunks
        self.max_bytes = max_bytes
        self._per_event = chunks_per_event
        self._locks: dict[str, asyncio.Lock] = {}
        self._region = region
        self._regions = tuple(regions)
        self._quotas = quotas or NoQuotas()
        self._publish_erasure = publish_erasure
        self._publish_applied = publish_applied
        self._subject_key = subject_key
        self._kafka_bus = kafka_bus
        self._kafka_retention_ms = kafka_retention_ms
        self._audit = audit
        self._clock = clock
        self._scanner = scanner
        self._publish_quarantine = publish_quarantine
        #: the parsed text of each document's current version (GetDocumentText); None = not kept
        self.texts = texts
        self._parse_options = parse_options or ParseOptions()
        self._max_child_depth = max_child_depth
        self._max_children = max_children
        self._objects = objects  # documents sent by reference (content_uri) are read from it
        self._max_inline_bytes = max_inline_bytes
        self._publish_deleted = publish_deleted
        #: the versions this process is driving (recorded, chunks published or being published, not
        #: indexed yet): a pending document not in it was left by an earlier process (:meth:`_stuck`)
        self._driven: set[tuple[str, str, int]] = set()

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ResourceExhausted(f"upload exceeds the limit of {self.max_bytes} bytes")

    def check_storage(self, tenant_id: TenantId, document_id: str, incoming_bytes: int) -> None:
        """The tenant's storage quota (QuotaExceeded), before a document is stored: a new version of a
        document replaces the old one, so the old one's bytes and count are not counted twice."""
        documents, stored = self.registry.usage(tenant_id)
        previous = self.registry.get(tenant_id, document_id)
        if previous is not None and previous.status not in NOT_STORED:
            documents, stored = documents - 1, stored - previous.size_bytes
        self._quotas.check_storage(tenant_id, documents, stored, incoming_bytes)

    async def check_tenant(self, tenant_id: str) -> TenantId:
        """``tenant_id`` parsed (else InvalidArgument) and existing (else NotFound)."""
        return await require_tenant(self._tenants, parse_tenant_id(tenant_id))

    async def get_document(self, tenant_id: str, document_id: str) -> DocumentRecord:
        tenant = await self.check_tenant(tenant_id)
        doc = parse_document_id(document_id)
        d = self.registry.get(tenant, doc)
        if d is None:
            raise NotFound(f"document {doc!r} not found in tenant {tenant!r}")
        return d

    async def list_documents(self, tenant_id: str, status: Status | None = None) -> list[DocumentRecord]:
        return self.registry.list(await self.check_tenant(tenant_id), status)

    async def ingest(
        self,
        tenant_id: str,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        document_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        trace_context: Mapping[str, str] | None = None,
        submitted_at: float | None = None,
    ) -> IngestResult:
        """Ingest one uploaded file, then the documents found inside it (attachments, an mbox's messages),
        each as a document of its own whose metadata ``parent_document_id`` names this one.
        ``submitted_at``: when a bus submission was written (None for an upload): one written before
        the document's deletion is a replay, and leaves the deleted document as it is."""
        own = {k: v for k, v in (metadata or {}).items() if k != PARENT_KEY}  # the service sets it
        return await self._ingest(
            tenant_id, filename, data, content_type, document_id, own, trace_context, 0, submitted_at
        )

    async def _ingest(
        self,
        tenant_id: str,
        filename: str,
        data: bytes,
        content_type: str | None,
        document_id: str | None,
        metadata: Mapping[str, str],
        trace_context: Mapping[str, str] | None,
        depth: int,
        submitted_at: float | None = None,
    ) -> IngestResult:
        if not filename:
            raise InvalidArgument("filename is required (its extension tells the file type)")
        self.check_size(len(data))
        tenant_id = await self.check_tenant(tenant_id)
        requested: DocumentId | None = parse_document_id(document_id) if document_id else None
        digest = content_hash(data)
        stuck = self.registry.find_by_hash(tenant_id, digest)
        if stuck is not None and self._stuck(stuck):
            # the same bytes again, of a document left pending by a process that stopped (its chunks were
            # lost): driven again, then answered as the duplicate it is, with its status now; one that
            # cannot be driven again (no text kept) is failed, and these bytes are ingested afresh
            await self.redrive(stuck, trace_context)
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:  # one tenant's dedup check and record are atomic
            existing = self.registry.find_by_hash(tenant_id, digest)
            if existing is not None:
                children = self._children_of(tenant_id, existing.document_id)
                return replace(IngestResult.of(existing, duplicate=True), child_document_ids=children)
            target = requested or document_id_for(tenant_id, digest)
            replayed = self._replayed(tenant_id, target, submitted_at)
            if replayed is not None:
                return IngestResult.of(replayed)
            self.check_storage(tenant_id, target, len(data))
            # off the event loop: a large Office file or mailbox takes a while to read
            options = self._options(metadata)
            parsed = await asyncio.to_thread(parse_document, data, filename, content_type or None, options)
            if len(parsed.children) > self._max_children:
                raise InvalidArgument(
                    f"{filename}: holds {len(parsed.children)} attachments or messages; the limit is "
                    f"{self._max_children} per upload ([ingestion] max_child_documents): split it"
                )
            # what the file says about itself (e-mail headers...) under what the upload says
            metadata = {**parsed.metadata, **metadata}
            strategy, splitter = self._chunking.select(tenant_id, (metadata or {}).get(COLLECTION_KEY))
            chunks = await asyncio.to_thread(splitter.split, parsed.text)
            if not chunks:
                raise InvalidArgument(f"{filename}: no text to index after parsing")
            doc_id = requested or parse_document_id(document_id_for(tenant_id, digest))
            # every chunk is scanned before anything is recorded or published: a scanner that cannot be
            # reached fails the upload (Unavailable: the caller, or the bus, retries), nothing unscanned
            # is ever indexed
            screened = parents_screened(await self._screen(tenant_id, doc_id, chunks))
            previous = self.registry.get(tenant_id, doc_id)
            erased = self.registry.erased(tenant_id, doc_id)  # an erased document continues above it
            last = max(previous.version if previous else 0, erased[0] if erased else 0)
            # each region draws versions from its own class: concurrent writes never tie (regions.py)
            version = next_version(last, self._region, self._regions)
            batches = self._batches(screened)
            meta = chunk_metadata(filename, parsed.title, dict(metadata or {}))
            record = DocumentRecord(
                tenant_id=tenant_id,
                document_id=doc_id,
                filename=filename,
                content_type=parsed.content_type,
                content_hash=digest,
                status=Status.RECEIVED,
                version=version,
                metadata=dict(metadata or {}),
                created_at=previous.created_at if previous else 0.0,
                size_bytes=len(data),
            )
            self._record(record, chunks, screened, batches, meta, strategy, written_at=submitted_at)
            self._keep_text(record, parsed.text, screened)
        await self._drive(record, screened, batches, meta, trace_context)
        if screened.document_quarantined:
            log.warning("document quarantined", tenant=tenant_id, document=doc_id, reason=screened.reason)
        else:
            log.info(
                "document chunked", tenant=tenant_id, document=doc_id, chunks=len(chunks), version=version
            )
        # then the documents found inside it, each on its own (its chunks are published already)
        children = await self._ingest_children(record, parsed.children, metadata, trace_context, depth)
        return replace(IngestResult.of(record), child_document_ids=children)

    def _batches(self, screened: Screening) -> list[list[IndexedChunk]]:
        kept = screened.indexed
        return [list(kept[i : i + self._per_event]) for i in range(0, len(kept), self._per_event)]

    def _record(
        self,
        record: DocumentRecord,
        chunks: Sequence[TextChunk],
        screened: Screening,
        batches: Sequence[Sequence[IndexedChunk]],
        meta: Mapping[str, str],
        strategy: str,
        *,
        written_at: float | None = None,
    ) -> None:
        """Fill ``record`` with what chunking and the scan made of it and store it; from here this process
        drives the version (:meth:`_drive`). Called with the tenant's lock held."""
        record.chunk_count = len(chunks)
        record.batch_count = len(batches)
        record.title = meta.get(TITLE_KEY, "")
        record.quarantined_chunks = len(screened.quarantined)
        record.flagged_chunks = screened.flagged
        record.redacted_chunks = screened.redacted
        record.quarantine_reason = screened.reason
        record.chunking = strategy
        if screened.document_quarantined:
            record.status = Status.QUARANTINED
            record.batch_count = 0
        self.registry.save(record, written_at=written_at)
        self._driven.add((record.tenant_id, record.document_id, record.version))

    async def _drive(
        self,
        record: DocumentRecord,
        screened: Screening,
        batches: Sequence[Sequence[IndexedChunk]],
        meta: Mapping[str, str],
        trace_context: Mapping[str, str] | None,
    ) -> None:
        """The recorded version's quarantined chunks, then its chunk events (ids and idempotency keys
        derived from tenant, document, version and index: publishing them again upserts the same chunks),
        then CHUNKED (never backwards: a batch may be indexed already). A failed publish leaves the version
        pending and undriven, so a retry of the upload drives it again."""
        key = tenant_id, doc_id, version = (record.tenant_id, record.document_id, record.version)
        try:
            await self._quarantine(record, screened, trace_context)
            if screened.document_quarantined:
                self._driven.discard(key)  # nothing of it to index
                return
            for bi, batch in enumerate(batches):
                await self._publish(
                    ChunksCreated(
                        tenant_id=tenant_id,
                        idempotency_key=f"{tenant_id}/{doc_id}/v{version}/b{bi}",
                        document_id=doc_id,
                        content_hash=record.content_hash,
                        version=version,
                        batch_index=bi,
                        batch_count=len(batches),
                        trace_context=dict(trace_context or {}),
                        chunks=[
                            ChunkPayload(
                                chunk_id=chunk_uuid(tenant_id, doc_id, k.chunk.index),
                                index=k.chunk.index,
                                text=k.text,
                                start=k.chunk.start,
                                end=k.chunk.end,
                                metadata=_chunk_meta(
                                    dict(meta), k.chunk.continues_sentence, k.flags, k.chunk.metadata
                                ),
                            )
                            for k in batch
                        ],
                    )
                )
        except BaseException:
            self._driven.discard(key)
            raise
        current = self.registry.get(tenant_id, doc_id)
        if current is None or current.version != version or current.status != Status.RECEIVED:
            if current is not None and current.version == version:
                record.status = current.status  # already further along (a version driven again)
            return  # or deleted, erased, replaced meanwhile
        record.status = Status.CHUNKED
        self.registry.save(record)
        self.registry.advance(record)  # batches marked before (a version driven again)

    # --- resuming what an earlier process left pending ---------------------------------------------------

    @property
    def _resumable(self) -> tuple[Status, ...]:
        """The pending statuses whose chunk events a stopped process may have lost: with an in-process bus
        every one (its messages lived in memory); on Kafka only RECEIVED (recorded, then stopped before
        its chunk events were all published: CHUNKED is written once Kafka acknowledged them all)."""
        return (Status.RECEIVED,) if self._kafka_bus else PENDING

    def _stuck(self, d: DocumentRecord) -> bool:
        """Whether ``d`` is pending and nobody in this process drives it: left by a process that stopped
        (:attr:`_resumable`), or by a publish that failed. A document mirrored from another region (no
        chunking recorded) is driven there, not here."""
        return (
            d.status in self._resumable
            and bool(d.chunking)
            and (d.tenant_id, d.document_id, d.version) not in self._driven
        )

    def pending(self) -> list[DocumentRecord]:
        """The documents of every tenant left pending by an earlier process, to drive again (one query)."""
        return [d for d in self.registry.pending(self._resumable) if self._stuck(d)]

    async def resume_pending(self) -> int:
        """Drive again every document of every tenant left pending (:meth:`pending`: recorded, not
        indexed) by an earlier process; how many. One registry query when none is. A dependency that is
        unreachable (the guardrail's scan, the bus) raises Unavailable: the documents not driven yet
        stay pending, for the next call."""
        pending = self.pending()
        for d in pending:
            try:
                await self.redrive(d)
            except (Unavailable, FailedPrecondition):
                raise
            except IsthmusError as exc:  # this document only (e.g. its tenant's policy refused the scan)
                log.warning(
                    "pending document not resumed", tenant=d.tenant_id, document=d.document_id, error=str(exc)
                )
        if pending:
            log.info("pending documents resumed", documents=len(pending))
        return len(pending)

    async def resume_until_done(self, *, attempts: int = 10, backoff_s: float = 0.5) -> int:
        """:meth:`resume_pending`, retried with a growing pause while a dependency is unreachable (at
        start the guardrail or the bus may not be up yet); gives up after ``attempts`` (the documents stay
        pending: a retried upload of one drives it, so does the next start)."""
        for attempt in range(1, attempts + 1):
            try:
                return await self.resume_pending()
            except (Unavailable, FailedPrecondition) as exc:
                if attempt == attempts:
                    log.error("pending documents not resumed", attempts=attempts, error=str(exc))
                    return 0
                await asyncio.sleep(min(backoff_s * 2 ** (attempt - 1), 30.0))
        return 0

    async def redrive(
        self, pending: DocumentRecord, trace_context: Mapping[str, str] | None = None
    ) -> DocumentRecord | None:
        """Drive a pending document again from the parsed text kept of its version, through the path an
        upload takes (chunk, scan, record, publish): the same version when chunking gives the chunks it
        recorded (their events upsert the same chunk ids), a new version otherwise (its first indexed
        batch replaces the older chunks). Without its text (the guardrail withheld or redacted parts of
        it, or the process stopped before keeping it) it is FAILED with the reason: an upload of the same
        bytes then ingests them afresh. None if it is no longer pending as it was (changed meanwhile)."""
        tenant = parse_tenant_id(pending.tenant_id)
        doc_id = parse_document_id(pending.document_id)
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            d = self.registry.get(tenant, doc_id)
            if d is None or d.version != pending.version or not self._stuck(d):
                return None
            stored = self.texts.get(tenant, doc_id) if self.texts is not None else None
            if stored is None or stored.version != d.version:
                d.status = Status.FAILED
                d.failure_reason = (
                    f"ingestion stopped before version {d.version} was indexed, and its parsed text was not "
                    "kept to resume it: upload it again"
                )
                self.registry.save(d)
                self.drop_text(tenant, doc_id)
                log.warning("pending document failed", tenant=tenant, document=doc_id, version=d.version)
                return d
            strategy, splitter = self._chunking.select(tenant, d.metadata.get(COLLECTION_KEY))
            chunks = await asyncio.to_thread(splitter.split, stored.text)
            if not chunks:  # the text was chunked once: only a changed configuration gets here
                d.status, d.failure_reason = Status.FAILED, f"{d.filename}: no text to index after parsing"
                self.registry.save(d)
                self.drop_text(tenant, doc_id)
                return d
            screened = parents_screened(await self._screen(tenant, doc_id, chunks))
            if len(chunks) != d.chunk_count:
                d.version = next_version(d.version, self._region, self._regions)
                d.status = Status.RECEIVED
            batches = self._batches(screened)
            meta = chunk_metadata(d.filename, stored.title, d.metadata)
            self._record(d, chunks, screened, batches, meta, strategy)
            self._keep_text(d, stored.text, screened)
        log.info("pending document driven again", tenant=tenant, document=doc_id, version=d.version)
        await self._drive(d, screened, batches, meta, trace_context)
        return d

    # --- parsed text, child documents (issue 18) --------------------------------------------------------

    def _options(self, metadata: Mapping[str, str]) -> ParseOptions:
        """The JSON field map: the upload's ``json_*`` metadata over the settings' defaults."""
        base = self._parse_options

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            if key not in metadata:
                return default
            return tuple(n for n in (f.strip() for f in metadata[key].split(",")) if n)

        text_fields = names(JSON_TEXT_FIELDS_KEY, base.text_fields)
        if not text_fields:
            raise InvalidArgument(f"upload metadata {JSON_TEXT_FIELDS_KEY!r} names no field")
        return ParseOptions(
            text_fields=text_fields,
            title_field=metadata.get(JSON_TITLE_FIELD_KEY, base.title_field).strip(),
            metadata_fields=names(JSON_METADATA_FIELDS_KEY, base.metadata_fields),
        )

    def _keep_text(self, record: DocumentRecord, text: str, screened: Screening) -> None:
        """Keep the parsed text of this version, unless the guardrail withheld or redacted any of it (the
        stored text would show what the index does not)."""
        if self.texts is None:
            return
        if record.status == Status.QUARANTINED or screened.quarantined or screened.redacted:
            self.texts.delete(record.tenant_id, record.document_id)
            return
        self.texts.put(
            record.tenant_id, record.document_id, record.version, record.content_type, record.title, text
        )

    def drop_text(self, tenant_id: str, document_id: str, *, scrub: bool = False) -> bool:
        """Remove the document's parsed text (a failed, deleted or erased document has none); ``scrub``:
        also truncate the store's write-ahead log, so no copy of it stays on disk. True if there was one."""
        if self.texts is None:
            return False
        dropped = self.texts.delete(tenant_id, document_id)
        if scrub:
            self.texts.scrub()
        return dropped

    def _children_of(self, tenant_id: TenantId, document_id: str) -> tuple[str, ...]:
        return tuple(
            d.document_id for d in self.registry.list(tenant_id) if d.metadata.get(PARENT_KEY) == document_id
        )

    async def _ingest_children(
        self,
        parent: DocumentRecord,
        children: Sequence[ChildFile],
        metadata: Mapping[str, str],
        trace_context: Mapping[str, str] | None,
        depth: int,
    ) -> tuple[str, ...]:
        """Each child as a document of its own (the parent's access metadata inherited); one that cannot
        be ingested (unparsable, too deep, over quota...) is recorded FAILED with its reason."""
        ids: list[str] = []
        inherited = {
            k: v for k, v in metadata.items() if k not in _NOT_INHERITED and not k.startswith("email_")
        }
        for child in children:
            meta = {**inherited, **child.metadata, PARENT_KEY: parent.document_id}
            try:
                if depth + 1 > self._max_child_depth:
                    raise InvalidArgument(
                        f"{child.filename}: found {depth + 1} levels deep inside {parent.filename!r}; "
                        f"documents nested deeper than {self._max_child_depth} levels are not ingested "
                        "([ingestion] max_child_depth): upload it on its own"
                    )
                result = await self._ingest(
                    parent.tenant_id,
                    child.filename,
                    child.data,
                    child.content_type or None,
                    None,
                    meta,
                    trace_context,
                    depth + 1,
                )
                ids.append(result.document_id)
            except IsthmusError as exc:
                ids.append(self._failed_child(parent, child, meta, exc))
        return tuple(ids)

    def _failed_child(
        self, parent: DocumentRecord, child: ChildFile, metadata: dict[str, str], exc: IsthmusError
    ) -> str:
        doc_id = document_id_for(parent.tenant_id, content_hash(child.data))
        previous = self.registry.get(parent.tenant_id, doc_id)
        if previous is not None and previous.status not in NOT_STORED:
            return doc_id  # the same bytes are stored already (e.g. found in another e-mail)
        reason = str(exc) if isinstance(exc, InvalidArgument) else f"{exc.code.name}: {exc}"
        self.registry.save(
            DocumentRecord(
                tenant_id=parent.tenant_id,
                document_id=doc_id,
                filename=child.filename,
                content_type=child.content_type,
                content_hash=content_hash(child.data),
                status=Status.FAILED,
                version=previous.version if previous else 1,
                failure_reason=reason,
                metadata=metadata,
                created_at=previous.created_at if previous else 0.0,
            )
        )
        log.info("child document failed", tenant=parent.tenant_id, parent=parent.document_id, reason=reason)
        return doc_id

    async def get_document_text(
        self, tenant_id: str, document_id: str, start: int = 0, end: int = 0
    ) -> tuple[DocumentRecord, StoredText, int, int]:
        """The parsed text of the document's current version and the range ``[start, end)`` asked for
        (``end`` 0 = to the end of the text). A document with an ``acl`` is served only to the principals
        it names (and to a caller with ``impersonate``), as Search filters it."""
        record = await self.get_document(tenant_id, document_id)
        self._check_acl(record)
        if record.status in NOT_STORED:
            detail = f": {record.failure_reason}" if record.failure_reason else ""
            status = record.status.value
            raise NotFound(f"document {record.document_id!r} has no text: it is {status}{detail}")
        if record.quarantined_chunks or record.redacted_chunks:
            raise NotFound(
                f"document {record.document_id!r}: the guardrail withheld or redacted parts of it, so its "
                "parsed text is not served"
            )
        stored = self.texts.get(record.tenant_id, record.document_id) if self.texts is not None else None
        if stored is None or stored.version != record.version:
            raise NotFound(
                f"no parsed text kept for version {record.version} of document {record.document_id!r} "
                "(ingested before texts were kept, or in another region): upload it again"
            )
        length = len(stored.text)
        if start < 0 or end < 0:
            raise InvalidArgument(f"start ({start}) and end ({end}) must not be negative")
        stop = end or length
        if start > length or stop > length:
            raise InvalidArgument(
                f"range [{start}, {stop}) is outside the text, which has {length} characters"
            )
        if start > stop:
            raise InvalidArgument(f"start ({start}) is after end ({stop}); the range is [start, end)")
        return record, stored, start, stop

    def _check_acl(self, record: DocumentRecord) -> None:
        acl = acl_of(record.metadata)
        access = current_access()
        if not acl or access.principal.via == "anonymous":
            return
        if set(acl) & set(access.principal.acl_principals):
            return
        if access.can(record.tenant_id, Permission.IMPERSONATE):
            return
        raise PermissionDenied(
            f"document {record.document_id!r} is restricted by its {ACL_METADATA_KEY!r} metadata to "
            f"principals {access.principal.subject!r} is not one of"
        )

    async def _screen(self, tenant_id: TenantId, document_id: str, chunks: Sequence[TextChunk]) -> Screening:
        if self._scanner is None:
            return unscanned(chunks)
        scan = await self._scanner.scan(tenant_id, document_id, [(c.index, c.text) for c in chunks])
        return screen(chunks, scan)

    async def _quarantine(
        self, record: DocumentRecord, screened: Screening, trace_context: Mapping[str, str] | None
    ) -> None:
        """The quarantined chunks, with their original text and reasons, on ``chunks.quarantined``."""
        if not screened.quarantined or self._publish_quarantine is None:
            return
        q = screened.quarantined
        key = f"{record.tenant_id}/{record.document_id}/v{record.version}/quarantine"
        for bi, at in enumerate(range(0, len(q), self._per_event)):
            await self._publish_quarantine(
                ChunksQuarantined(
                    tenant_id=record.tenant_id,
                    idempotency_key=f"{key}/b{bi}",
                    trace_context=dict(trace_context or {}),
                    document_id=record.document_id,
                    content_hash=record.content_hash,
                    version=record.version,
                    filename=record.filename,
                    policy_version=screened.policy_version,
                    scope="chunk" if screened.scope == "chunk" else "document",
                    chunks=list(q[at : at + self._per_event]),
                )
            )

    # --- bus subscribers -------------------------------------------------------------------------------

    async def on_document_submitted(self, ev: DocumentSubmitted) -> None:
        submitted_at = ev.occurred_at.timestamp()
        doc = ev.document_id
        if doc and is_document_id(doc) and is_tenant_id(ev.tenant_id):
            # a replay of a deleted document's submission is skipped before its content is read: the
            # object it references may be gone, and that failure must not replace the deleted record
            if self._replayed(parse_tenant_id(ev.tenant_id), doc, submitted_at) is not None:
                return
        try:
            await self.ingest(
                ev.tenant_id,
                ev.filename,
                await self._submitted_content(ev),
                content_type=ev.content_type,
                document_id=ev.document_id,
                metadata=ev.metadata,
                trace_context=ev.trace_context,
                submitted_at=submitted_at,
            )
        except InvalidArgument as exc:
            if ev.document_id and is_document_id(ev.document_id):  # show the failure in its status too
                self.registry.save(_failed_submission(ev, ev.document_id, str(exc)))
                self.drop_text(ev.tenant_id, ev.document_id)  # the failed version replaces the previous
            raise

    async def _submitted_content(self, ev: DocumentSubmitted) -> bytes:
        """The event's inline content, or the object its content_uri names (objects.py: limits, safety);
        the tenant is checked first, so a reference is only read for a tenant that exists."""
        tenant = await self.check_tenant(ev.tenant_id) if ev.content_uri else None
        return await submitted_content(
            ev,
            tenant,
            self._objects,
            max_inline_bytes=self._max_inline_bytes,
            max_reference_bytes=self.max_bytes,
        )

    async def on_chunks_embedded(self, ev: ChunksEmbedded) -> None:
        if self._erased_version(ev) is None:
            self.registry.mark_batch(
                ev.tenant_id, ev.document_id, ev.version, Status.EMBEDDED, ev.batch_index
            )

    async def on_chunks_indexed(self, ev: ChunksIndexed) -> None:
        erasure_id = self._erased_version(ev)
        if erasure_id is None:
            self.registry.mark_batch(ev.tenant_id, ev.document_id, ev.version, Status.INDEXED, ev.batch_index)
            self._settled(ev.tenant_id, ev.document_id, ev.version)
            await self._late_deleted(ev)
            return
        # chunks of an erased document that were still in flight when it was erased, now indexed: erase
        # them again (same erasure; retrieval deletes them, every region too)
        log.info("late chunks of an erased document", tenant=ev.tenant_id, document=ev.document_id)
        if self._publish_erasure is not None:
            await self._publish_erasure(
                ErasureRequested(
                    tenant_id=ev.tenant_id,
                    idempotency_key=f"{ev.tenant_id}/erasure/{erasure_id}/late/{ev.document_id}/"
                    f"v{ev.version}/b{ev.batch_index}",
                    erasure_id=erasure_id,
                    document_ids=[ev.document_id],
                    origin=self._region,
                )
            )

    def _settled(self, tenant_id: str, document_id: str, version: int) -> None:
        """Forget a version this process drove once it is no longer pending (indexed, failed...)."""
        key = (tenant_id, document_id, version)
        if key in self._driven:
            d = self.registry.get(tenant_id, document_id)
            if d is None or d.version != version or d.status not in PENDING:
                self._driven.discard(key)

    def _erased_version(self, ev: ChunksEmbedded | ChunksIndexed) -> str | None:
        """The erasure id if ``ev``'s version of its document was erased here and the document has not
        been uploaded again since; None otherwise."""
        tombstone = self.registry.erased(ev.tenant_id, ev.document_id)
        if tombstone is None or ev.version > tombstone[0]:
            return None
        if self.registry.get(ev.tenant_id, ev.document_id) is not None:
            return None  # uploaded again: the newer version replaces these chunks
        return tombstone[1]

    async def on_replicated_batch(self, ev: ChunksEmbedded) -> Literal["applied", "stale", "tenant_absent"]:
        """A batch of a document written in another region (mirrored ``chunks.embedded``): the registry
        learns the document, so this region lists, dedups and versions it too. The higher version wins;
        the local ``chunks.indexed`` events of this region's retrieval then mark it INDEXED here."""
        try:
            tenant = await self.check_tenant(ev.tenant_id)
        except NotFound:
            return "tenant_absent"
        if self._erased_version(ev) is not None:
            return "stale"  # erased here (before or after the origin wrote it): it does not come back
        doc_id = parse_document_id(ev.document_id)
        doc = self.registry.get(tenant, doc_id)
        if doc is not None and (doc.version > ev.version or _deleted(doc, ev.version)):
            return "stale"
        if doc is None or doc.version < ev.version:
            meta = dict(ev.chunks[0].metadata) if ev.chunks else {}
            filename = meta.pop("filename", "") or doc_id
            doc = DocumentRecord(
                tenant_id=tenant,
                document_id=doc_id,
                filename=filename,
                content_type=doc.content_type if doc and doc.content_hash == ev.content_hash else "",
                content_hash=ev.content_hash,
                status=Status.CHUNKED,
                version=ev.version,
                batch_count=ev.batch_count,
                metadata={k: v for k, v in meta.items() if k not in _DERIVED_METADATA},
                created_at=doc.created_at if doc else 0.0,
                title=meta.get(TITLE_KEY, ""),
            )
        if ev.chunks:  # chunk indexes are contiguous from 0: the last batch tells the total
            doc.chunk_count = max(doc.chunk_count, max(c.index for c in ev.chunks) + 1)
        self.registry.save(doc)
        self.registry.mark_batch(tenant, doc_id, ev.version, Status.EMBEDDED, ev.batch_index)
        self.registry.advance(doc)  # batches this region indexed before the record arrived
        return "applied"

    async def on_tenant_deleted(self, ev: TenantDeleted) -> None:
        n = self.registry.delete_tenant(parse_tenant_id(ev.tenant_id))
        if self.texts is not None:
            self.texts.delete_tenant(ev.tenant_id)
            self.texts.scrub()
        log.info("tenant documents removed", tenant=ev.tenant_id, documents=n)

    # --- erasure (isthmus_ingestion.erasure; docs/operations.md) ---------------------------------------

    async def erase(
        self,
        tenant_id: str,
        *,
        document_ids: Sequence[str] | None = None,
        data_subject: str | None = None,
        whole_tenant: bool = False,
        reason: str = "",
    ) -> Receipt:
        """Erase documents, a data subject's documents or the whole tenant: gone from this registry when
        this returns; ``erasures.requested`` then tells retrieval, evaluation and the other regions, whose
        reports complete the receipt (:meth:`on_erasure_applied`)."""
        chosen = sum((document_ids is not None, data_subject is not None, whole_tenant))
        if chosen != 1:
            raise InvalidArgument(
                "name exactly one target: documents, data_subject or whole_tenant"
                + (f" (got {chosen})" if chosen else "")
            )
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidArgument(f"reason is {len(reason)} characters; the limit is {MAX_REASON_CHARS}")
        target: Target
        ids: list[str] = []
        subject = ""
        if document_ids is not None:
            target = "documents"
            if not document_ids:
                raise InvalidArgument("documents.ids is empty; name at least one document")
            if len(document_ids) > MAX_ERASE_IDS:
                raise InvalidArgument(
                    f"documents.ids names {len(document_ids)} documents; "
                    f"the limit is {MAX_ERASE_IDS} per call"
                )
            ids = unique_ids(parse_document_id(d, f"documents.ids[{i}]") for i, d in enumerate(document_ids))
        elif data_subject is not None:
            target, subject = "data_subject", check_subject(data_subject)
        else:
            target = "whole_tenant"
        tenant = await self.check_tenant(tenant_id)
        principal = current_principal()
        requested_by = "" if principal is None or principal.via == "anonymous" else principal.subject
        erasure_id = uuid.uuid4().hex
        now = self._clock()
        async with self._locks.setdefault(tenant, asyncio.Lock()):  # no upload of the tenant in between
            if target == "data_subject":
                ids = self._subject_documents(tenant, subject)
                if len(ids) > ERASURE_MAX_DOCUMENTS:  # one request must carry them all
                    raise FailedPrecondition(
                        f"the data subject has {len(ids)} documents, more than one erasure covers "
                        f"({ERASURE_MAX_DOCUMENTS}); nothing was erased: erase them by id, in batches"
                    )
            elif target == "whole_tenant":
                ids = [d.document_id for d in self.registry.list(tenant)]
            else:  # an e-mail's attachments, a mailbox's messages go with it: they are its content
                ids = self._with_children(tenant, ids)
                if len(ids) > ERASURE_MAX_DOCUMENTS:
                    raise FailedPrecondition(
                        f"these documents and the documents found inside them are {len(ids)}, more "
                        f"than one erasure covers ({ERASURE_MAX_DOCUMENTS}); nothing was erased: "
                        "erase fewer at once"
                    )
            versions = self.registry.versions_of(tenant, ids) if target != "whole_tenant" else {}
            removed = self.registry.delete_documents(tenant, ids, erasure_id)
            scrubbed = self._erase_texts(tenant, ids, whole_tenant=target == "whole_tenant")
            scrubbed = self.registry.scrub() and scrubbed
        receipt = new_receipt(
            erasure_id=erasure_id,
            tenant_id=tenant,
            requested_by=requested_by,
            requested_at=now,
            target=target,
            reason=reason,
            document_ids=ids,
            regions=self._regions or [self._region],
        )
        here = self._erased_here(erasure_id, tenant, removed, len(ids), scrubbed)
        for r in here:
            receipt = receipt.report(r.place, r.region, r.status, r.count, r.detail, now)
        self.registry.save_receipt(receipt)
        log.info("erasure requested", tenant=tenant, erasure=erasure_id, target=target, documents=len(ids))
        if self._audit is not None:
            self._audit.record(
                AuditRecorded(
                    tenant_id=tenant,
                    idempotency_key=f"{tenant}/erasure/{erasure_id}/audit",
                    kind="erasure",
                    principal=requested_by,
                    method=ERASE_METHOD,
                    reason=reason[:2048],
                    details={"erasure_id": erasure_id, "target": target, "documents": str(len(ids))},
                    region=self._region,
                )
            )
        if self._publish_erasure is not None:
            await self._publish_erasure(
                ErasureRequested(
                    tenant_id=tenant,
                    idempotency_key=f"{tenant}/erasure/{erasure_id}",
                    erasure_id=erasure_id,
                    document_ids=[] if target == "whole_tenant" else ids,
                    versions=versions,
                    data_subject=subject if target == "data_subject" else "",
                    whole_tenant=target == "whole_tenant",
                    origin=self._region,
                )
            )
        for report in here:  # the same reports, for whoever follows erasures on the bus
            await self._applied(report)
        return self.registry.get_receipt(tenant, erasure_id) or receipt

    async def get_erasure(self, tenant_id: str, erasure_id: str) -> Receipt:
        """The receipt of one of the tenant's erasures (the tenant itself may be gone: whole-tenant)."""
        tenant = parse_tenant_id(tenant_id)
        if not _ERASURE_ID.fullmatch(erasure_id):
            raise InvalidArgument("erasure_id must be the 32 hexadecimal digits an Erase call returned")
        receipt = self.registry.get_receipt(tenant, erasure_id)
        if receipt is None:
            raise NotFound(f"no erasure {erasure_id!r} in tenant {tenant!r}")
        return receipt

    async def on_replicated_erasure(self, ev: ErasureRequested) -> ErasureOutcome:
        """An erasure requested in another region: erase here too (the origin's documents, plus what this
        region's registry holds for the data subject) and report to the origin's receipt."""
        tenant = parse_tenant_id(ev.tenant_id)
        present = True
        try:
            await self.check_tenant(tenant)
        except NotFound:
            present = False
        removed, total, scrubbed = 0, 0, True
        extra: list[str] = []
        if present:
            async with self._locks.setdefault(tenant, asyncio.Lock()):
                ids = unique_ids(
                    [
                        *(d for d in ev.document_ids if is_document_id(d)),
                        *(self._subject_documents(tenant, ev.data_subject) if ev.data_subject else ()),
                        *(d.document_id for d in self.registry.list(tenant) if ev.whole_tenant),
                    ]
                )
                total = len(ids)
                named = set(ev.document_ids)
                extra = [] if ev.whole_tenant else [d for d in ids if d not in named]
                extra_versions = self.registry.versions_of(tenant, extra)
                removed = self.registry.delete_documents(tenant, ids, ev.erasure_id, ev.versions)
                scrubbed = self._erase_texts(tenant, ids, whole_tenant=ev.whole_tenant)
                scrubbed = self.registry.scrub() and scrubbed
            if extra and self._publish_erasure is not None:
                # the subject's documents only this region held: every region's retrieval (this one's
                # too) erases them as well; by id only, so no region resolves the subject again
                await self._publish_erasure(
                    ErasureRequested(
                        tenant_id=tenant,
                        idempotency_key=f"{tenant}/erasure/{ev.erasure_id}/extra/{self._region}",
                        erasure_id=ev.erasure_id,
                        document_ids=extra[:ERASURE_MAX_DOCUMENTS],
                        versions=extra_versions,
                        origin=ev.origin,
                    )
                )
        for report in self._erased_here(ev.erasure_id, tenant, removed, total, scrubbed, present=present):
            await self._applied(report)
        return "applied" if present else "tenant_absent"

    async def on_erasure_applied(self, ev: ErasureApplied) -> ErasureOutcome:
        """A place's report (this region's, or mirrored from another): its step on the receipt, if the
        erasure was requested here (``stale`` otherwise: the receipt lives in the origin region)."""
        receipt = self.registry.get_receipt(ev.tenant_id, ev.erasure_id)
        if receipt is None:
            return "stale"
        at = ev.occurred_at.timestamp()
        self.registry.save_receipt(receipt.report(ev.place, ev.region, ev.status, ev.count, ev.detail, at))
        return "applied"

    def _erase_texts(self, tenant: TenantId, ids: Sequence[str], *, whole_tenant: bool) -> bool:
        """The erased documents' parsed texts, gone (zeroed, the write-ahead log truncated)."""
        if self.texts is None:
            return True
        if whole_tenant:
            self.texts.delete_tenant(tenant)
        else:
            self.texts.delete_many(tenant, ids)
        return self.texts.scrub()

    def _with_children(self, tenant: TenantId, ids: list[str]) -> list[str]:
        """``ids`` and, recursively, the documents found inside them (``parent_document_id``)."""
        children: dict[str, list[str]] = {}
        for d in self.registry.list(tenant):
            if parent := d.metadata.get(PARENT_KEY):
                children.setdefault(parent, []).append(d.document_id)
        out, seen = list(ids), set(ids)
        for doc in out:  # grows while it is walked: breadth first
            for child in children.get(doc, ()):
                if child not in seen:
                    seen.add(child)
                    out.append(child)
        return out

    def _subject_documents(self, tenant: TenantId, subject: str) -> list[str]:
        docs = self.registry.list(tenant)
        return documents_of_subject(((d.document_id, d.metadata) for d in docs), self._subject_key, subject)

    def _erased_here(
        self, erasure_id: str, tenant: str, removed: int, total: int, scrubbed: bool, *, present: bool = True
    ) -> list[ErasureApplied]:
        """This region's ingestion and bus steps of an erasure, as reports."""
        if present:
            detail = f"{removed} of {total} documents removed from the registry"
            if not scrubbed:
                detail += " (its write-ahead log is truncated at the next erasure: a reader was active)"
        else:
            detail = f"the tenant does not live in region {self._region!r}: nothing in the registry"
        bus_status, bus_detail = bus_step(
            self._clock(), kafka=self._kafka_bus, retention_override_ms=self._kafka_retention_ms
        )
        key = f"{tenant}/erasure/{erasure_id}"
        return [
            ErasureApplied(
                tenant_id=tenant,
                idempotency_key=f"{key}/{ERASURE_PLACE}/{self._region}",
                erasure_id=erasure_id,
                place=ERASURE_PLACE,
                region=self._region,
                count=removed,
                detail=detail,
            ),
            ErasureApplied(
                tenant_id=tenant,
                idempotency_key=f"{key}/{ERASURE_KAFKA_PLACE}/{self._region}",
                erasure_id=erasure_id,
                place=ERASURE_KAFKA_PLACE,
                region=self._region,
                status=bus_status,
                detail=bus_detail,
            ),
        ]

    async def _applied(self, report: ErasureApplied) -> None:
        if self._publish_applied is not None:
            await self._publish_applied(report)

    # --- deletion (isthmus_ingestion.deletion) -----------------------------------------------------------

    async def delete_document(
        self, tenant_id: str, document_id: str, *, reason: str = "", requested_at: float | None = None
    ) -> DocumentRecord:
        """Delete a document: status ``deleted`` (record and history kept), its parsed text dropped, and
        ``documents.deleted`` published (retrieval removes its chunks, the other regions delete it too).
        Deleting a deleted document returns it unchanged (its deletion is published again: a retry after
        a failed publish completes it). ``requested_at``: when a bus request was written; one written
        before the current version was uploaded leaves that version alone.

        The documents found inside it (an e-mail's attachments, a mailbox's messages, recursively) are its
        content: they are deleted with it, each with its own ``documents.deleted`` event."""
        d = await self._delete_one(tenant_id, document_id, reason=reason, requested_at=requested_at)
        if d.status == Status.DELETED:
            tenant = parse_tenant_id(tenant_id)
            for child in self._with_children(tenant, [d.document_id])[1:]:
                note = f"found inside {d.document_id}, deleted with it" + (f": {reason}" if reason else "")
                await self._delete_one(
                    tenant, child, reason=note[:MAX_REASON_CHARS], requested_at=requested_at
                )
        return d

    async def _delete_one(
        self, tenant_id: str, document_id: str, *, reason: str, requested_at: float | None
    ) -> DocumentRecord:
        check_reason(reason)
        tenant = await self.check_tenant(tenant_id)
        doc_id = parse_document_id(document_id)
        principal = current_principal()
        deleted_by = "" if principal is None or principal.via == "anonymous" else principal.subject
        async with self._locks.setdefault(tenant, asyncio.Lock()):  # no upload of the tenant in between
            d = self.registry.get(tenant, doc_id)
            if d is None:
                raise NotFound(f"document {doc_id!r} not found in tenant {tenant!r}")
            if requested_at is not None and requested_before(
                requested_at, self.registry.version_since(tenant, doc_id, d.version)
            ):
                log.info("deletion older than the document's version", tenant=tenant, document=doc_id)
                return d
            changed = d.status != Status.DELETED
            if changed:
                d.status = Status.DELETED
                self.registry.save(d, detail=reason, written_at=requested_at)
        if changed:
            self.drop_text(tenant, doc_id)
            log.info("document deleted", tenant=tenant, document=doc_id, version=d.version)
            if self._audit is not None:
                self._audit.record(
                    AuditRecorded(
                        tenant_id=tenant,
                        idempotency_key=deletion_key(tenant, doc_id, d.version) + "/audit",
                        kind="deletion",
                        principal=deleted_by,
                        method=DELETE_METHOD if requested_at is None else DELETIONS_REQUESTED.name,
                        reason=reason,
                        details={"document_id": doc_id, "version": str(d.version)},
                        region=self._region,
                    )
                )
        await self._deleted(d, reason, deleted_by)
        return d

    async def on_deletion_requested(self, ev: DeletionRequested) -> None:
        """A producer's deletion (``deletions.requested``): as ``DeleteDocument``, unless it predates the
        document's current version (a replayed request)."""
        await self.delete_document(
            ev.tenant_id, ev.document_id, reason=ev.reason, requested_at=ev.occurred_at.timestamp()
        )

    async def on_replicated_deletion(self, ev: DocumentDeleted) -> ErasureOutcome:
        """A deletion done in another region (mirrored ``documents.deleted``): deleted here too, unless this
        region holds a newer version. A document not seen here yet is recorded deleted, so its mirrored
        chunks arriving later do not bring it back. Not published again (the origin's event reaches this
        region's retrieval)."""
        try:
            tenant = await self.check_tenant(ev.tenant_id)
        except NotFound:
            return "tenant_absent"
        doc_id = parse_document_id(ev.document_id)
        detail = ev.reason + (f" (deleted in region {ev.origin})" if ev.origin else "")
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            d = self.registry.get(tenant, doc_id)
            if d is not None and (d.version > ev.version or _deleted(d, ev.version)):
                return "stale"
            if d is None:
                d = DocumentRecord(tenant, doc_id, doc_id, "", "", Status.DELETED, version=ev.version)
            d.status, d.version = Status.DELETED, max(d.version, ev.version)
            self.registry.save(d, detail=detail[:MAX_REASON_CHARS], written_at=ev.occurred_at.timestamp())
        self.drop_text(tenant, doc_id)
        return "applied"

    def _replayed(
        self, tenant: TenantId, document_id: str, submitted_at: float | None
    ) -> DocumentRecord | None:
        """The deleted document a submission written before its deletion would bring back; None if none."""
        d = self.registry.get(tenant, document_id)
        if submitted_at is None or d is None or d.status != Status.DELETED:
            return None
        deleted_at = self.registry.changed_at(tenant, document_id, d.status, d.version)
        if not submitted_before(submitted_at, deleted_at):
            return None
        log.info("replayed submission of a deleted document skipped", tenant=tenant, document=document_id)
        return d

    async def _late_deleted(self, ev: ChunksIndexed) -> None:
        """Chunks of a deleted version indexed after the deletion (in flight, mirrored, replayed): delete
        them again (retrieval removes them; the event's version covers theirs)."""
        d = self.registry.get(ev.tenant_id, ev.document_id)
        if d is None or not _deleted(d, ev.version):
            return
        log.info("late chunks of a deleted document", tenant=ev.tenant_id, document=ev.document_id)
        await self._deleted(d, "", "", late=f"/late/v{ev.version}/b{ev.batch_index}")

    async def _deleted(self, d: DocumentRecord, reason: str, deleted_by: str, late: str = "") -> None:
        if self._publish_deleted is None:
            return
        await self._publish_deleted(
            DocumentDeleted(
                tenant_id=d.tenant_id,
                idempotency_key=deletion_key(d.tenant_id, d.document_id, d.version) + late,
                document_id=d.document_id,
                version=d.version,
                reason=reason,
                deleted_by=deleted_by,
                origin=self._region,
            )
        )

    async def on_dead_letter(self, msg: Message) -> None:
        """A chunk event gave up downstream: the document is failed, with the reason."""
        try:
            payload = json.loads(msg.value)
            tenant, doc = payload["tenant_id"], payload["document_id"]
        except (ValueError, KeyError, TypeError):
            tenant = doc = None
        if not (is_tenant_id(tenant) and is_document_id(doc)):
            log.warning("dead letter without a document reference", topic=msg.topic)
            return
        self.registry.fail(tenant, doc, _dead_letter_reason(msg))
        self.drop_text(tenant, doc)  # a failed version has no text to serve

    async def on_submission_dead_letter(self, msg: Message) -> None:
        """A submitted document gave up (e.g. the guardrail's scan was unreachable through every retry):
        a document named by id that has no record yet gets one, ``failed`` with the reason, so whoever
        watches it sees the outcome. A document with a record keeps it (a refused submission already
        recorded its failure; an earlier version stays as it is). Only a submission that gave up on an
        outage (:data:`OUTAGE_ERRORS`) is recorded: one refused for its producer's identity
        (unauthenticated, not allowed) must not create anything in the tenant's registry."""
        if msg.headers.get(H_ERROR_CLASS) not in OUTAGE_ERRORS:
            return
        try:
            ev = DocumentSubmitted.model_validate_json(msg.value)
        except ValueError:
            log.warning("dead-lettered submission that is not a document", topic=msg.topic)
            return
        if not (is_tenant_id(ev.tenant_id) and ev.document_id and is_document_id(ev.document_id)):
            return  # no id the submitter could watch
        if self.registry.get(ev.tenant_id, ev.document_id) is not None:
            return
        self.registry.save(_failed_submission(ev, ev.document_id, _dead_letter_reason(msg)))


def _deleted(d: DocumentRecord, version: int) -> bool:
    """Whether ``version`` of the document is deleted (the record is, at that version or a later one)."""
    return d.status == Status.DELETED and version <= d.version


def _failed_submission(ev: DocumentSubmitted, document_id: str, reason: str) -> DocumentRecord:
    """The record of a submitted document that failed (refused, or dead-lettered) with ``reason``."""
    return DocumentRecord(
        tenant_id=ev.tenant_id,
        document_id=document_id,
        filename=ev.filename,
        content_type=ev.content_type or "",
        content_hash=content_hash(ev.content),
        status=Status.FAILED,
        failure_reason=reason,
    )


#: error classes of a submission dead-lettered because something it needs was down (recorded as failed)
OUTAGE_ERRORS = frozenset({"Unavailable", "DeadlineExceeded", ObjectStoreUnavailable.__name__})


def _dead_letter_reason(msg: Message) -> str:
    reason = f"{msg.topic.removesuffix('.dlq')}: {msg.headers.get(H_ERROR_CLASS, 'Error')}: "
    return reason + msg.headers.get(H_ERROR_MESSAGE, "unknown error")
