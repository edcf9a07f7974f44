"""Ingestion's core: size/tenant checks → dedup by content hash → parse → chunk → chunk events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

import structlog

from isthmus_core.auth.stack import NoQuotas, QuotaGate
from isthmus_core.bus.port import H_ERROR_CLASS, H_ERROR_MESSAGE, Message
from isthmus_core.contracts.events import (
    ChunkPayload,
    ChunksCreated,
    ChunksEmbedded,
    ChunksIndexed,
    DocumentSubmitted,
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
from isthmus_core.errors import InvalidArgument, NotFound, ResourceExhausted
from isthmus_core.ports.generator import CONTINUES_SENTENCE_KEY, SOURCE_NAME_KEY, TITLE_KEY, URI_KEY
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_core.regions import next_version
from isthmus_core.store.port import chunk_uuid
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.dedup import content_hash, document_id_for
from isthmus_ingestion.parsing import parse_document
from isthmus_ingestion.registry import DocumentRecord, DocumentRegistry, Status

log = structlog.get_logger("isthmus.ingestion")


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: str
    status: Status
    content_hash: str
    chunk_count: int
    duplicate: bool = False


#: chunk metadata keys ingestion derives (not the upload's own metadata)
_DERIVED_METADATA = frozenset({SOURCE_NAME_KEY, CONTINUES_SENTENCE_KEY})

#: upload metadata keys that give the source's URI, first found wins
URI_METADATA_KEYS = (URI_KEY, "source_uri")


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
    return {"filename": filename, **metadata, **{k: v for k, v in source.items() if v}}


class Ingestion:
    def __init__(
        self,
        registry: DocumentRegistry,
        chunker: Chunker,
        tenants: TenantDirectory,
        publish_chunks: Callable[[ChunksCreated], Awaitable[None]],
        *,
        max_bytes: int,
        chunks_per_event: int,
        region: str = "",
        regions: Sequence[str] = (),
        quotas: QuotaGate | None = None,
    ) -> None:
        self.registry = registry
        self._chunker = chunker
        self._tenants = tenants
        self._publish = publish_chunks
        self.max_bytes = max_bytes
        self._per_event = chunks_per_event
        self._locks: dict[str, asyncio.Lock] = {}
        self._region = region
        self._regions = tuple(regions)
        self._quotas = quotas or NoQuotas()

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise ResourceExhausted(f"upload exceeds the limit of {self.max_bytes} bytes")

    def check_storage(self, tenant_id: TenantId, document_id: str, incoming_bytes: int) -> None:
        """The tenant's storage quota (QuotaExceeded), before a document is stored: a new version of a
        document replaces the old one, so the old one's bytes and count are not counted twice."""
        documents, stored = self.registry.usage(tenant_id)
        previous = self.registry.get(tenant_id, document_id)
        if previous is not None and previous.status != Status.FAILED:
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
    ) -> IngestResult:
        if not filename:
            raise InvalidArgument("filename is required (its extension tells the file type)")
        self.check_size(len(data))
        tenant_id = await self.check_tenant(tenant_id)
        requested: DocumentId | None = parse_document_id(document_id) if document_id else None
        digest = content_hash(data)
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:  # one tenant's dedup check and record are atomic
            existing = self.registry.find_by_hash(tenant_id, digest)
            if existing is not None:
                return IngestResult(existing.document_id, existing.status, digest, existing.chunk_count, True)
            self.check_storage(tenant_id, requested or document_id_for(tenant_id, digest), len(data))
            parsed = parse_document(data, filename, content_type or None)
            chunks = await asyncio.to_thread(self._chunker.split, parsed.text)
            if not chunks:
                raise InvalidArgument(f"{filename}: no text to index after parsing")
            doc_id = requested or parse_document_id(document_id_for(tenant_id, digest))
            previous = self.registry.get(tenant_id, doc_id)
            # each region draws versions from its own class: concurrent writes never tie (regions.py)
            version = next_version(previous.version if previous else 0, self._region, self._regions)
            batches = [chunks[i : i + self._per_event] for i in range(0, len(chunks), self._per_event)]
            meta = chunk_metadata(filename, parsed.title, dict(metadata or {}))
            record = DocumentRecord(
                tenant_id=tenant_id,
                document_id=doc_id,
                filename=filename,
                content_type=parsed.content_type,
                content_hash=digest,
                status=Status.RECEIVED,
                version=version,
                chunk_count=len(chunks),
                batch_count=len(batches),
                metadata=dict(metadata or {}),
                created_at=previous.created_at if previous else 0.0,
                title=meta.get(TITLE_KEY, ""),
                size_bytes=len(data),
            )
            self.registry.save(record)
        for bi, batch in enumerate(batches):
            await self._publish(
                ChunksCreated(
                    tenant_id=tenant_id,
                    idempotency_key=f"{tenant_id}/{doc_id}/v{version}/b{bi}",
                    document_id=doc_id,
                    content_hash=digest,
                    version=version,
                    batch_index=bi,
                    batch_count=len(batches),
                    trace_context=dict(trace_context or {}),
                    chunks=[
                        ChunkPayload(
                            chunk_id=chunk_uuid(tenant_id, doc_id, c.index),
                            index=c.index,
                            text=c.text,
                            start=c.start,
                            end=c.end,
                            metadata={**meta, CONTINUES_SENTENCE_KEY: "true"}
                            if c.continues_sentence
                            else meta,
                        )
                        for c in batch
                    ],
                )
            )
        record.status = Status.CHUNKED
        self.registry.save(record)
        log.info("document chunked", tenant=tenant_id, document=doc_id, chunks=len(chunks), version=version)
        return IngestResult(doc_id, Status.CHUNKED, digest, len(chunks))

    # --- bus subscribers -------------------------------------------------------------------------------

    async def on_document_submitted(self, ev: DocumentSubmitted) -> None:
        try:
            await self.ingest(
                ev.tenant_id,
                ev.filename,
                ev.content,
                content_type=ev.content_type,
                document_id=ev.document_id,
                metadata=ev.metadata,
                trace_context=ev.trace_context,
            )
        except InvalidArgument as exc:
            if ev.document_id and is_document_id(ev.document_id):  # show the failure in its status too
                self.registry.save(
                    DocumentRecord(
                        tenant_id=ev.tenant_id,
                        document_id=ev.document_id,
                        filename=ev.filename,
                        content_type=ev.content_type or "",
                        content_hash=content_hash(ev.content),
                        status=Status.FAILED,
                        failure_reason=str(exc),
                    )
                )
            raise

    async def on_chunks_embedded(self, ev: ChunksEmbedded) -> None:
        self.registry.mark_batch(ev.tenant_id, ev.document_id, ev.version, Status.EMBEDDED, ev.batch_index)

    async def on_chunks_indexed(self, ev: ChunksIndexed) -> None:
        self.registry.mark_batch(ev.tenant_id, ev.document_id, ev.version, Status.INDEXED, ev.batch_index)

    async def on_replicated_batch(self, ev: ChunksEmbedded) -> Literal["applied", "stale", "tenant_absent"]:
        """A batch of a document written in another region (mirrored ``chunks.embedded``): the registry
        learns the document, so this region lists, dedups and versions it too. The higher version wins;
        the local ``chunks.indexed`` events of this region's retrieval then mark it INDEXED here."""
        try:
            tenant = await self.check_tenant(ev.tenant_id)
        except NotFound:
            return "tenant_absent"
        doc_id = parse_document_id(ev.document_id)
        doc = self.registry.get(tenant, doc_id)
        if doc is not None and doc.version > ev.version:
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
        log.info("tenant documents removed", tenant=ev.tenant_id, documents=n)

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
        reason = f"{msg.topic.removesuffix('.dlq')}: {msg.headers.get(H_ERROR_CLASS, 'Error')}: "
        reason += msg.headers.get(H_ERROR_MESSAGE, "unknown error")
        self.registry.fail(tenant, doc, reason)
