"""Retrieval's core: tenant registry, search (query embedding + store), indexing of embedded chunks.

It reaches the embedding service only through the core ports :class:`QueryEmbedder` and
:class:`Reranker` (gRPC adapters in :mod:`isthmus_core.clients.embedding`, fakes in the tests).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from isthmus_core.contracts.events import (
    ChunksEmbedded,
    ChunksIndexed,
    DocumentDeleted,
    ErasureApplied,
    ErasureRequested,
    TenantDeleted,
)
from isthmus_core.contracts.ids import is_document_id, parse_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument, IsthmusError, NotFound, Unavailable
from isthmus_core.ports.embedding_client import QueryEmbedder, Reranker
from isthmus_core.ports.generator import DOCUMENT_VERSION_KEY
from isthmus_core.store.port import (
    ChunkRecord,
    Fusion,
    Hit,
    RejectedRecords,
    Scrubbable,
    SearchMode,
    SearchQuery,
    VectorStore,
)
from isthmus_retrieval.rerank import blend_rerank

log = structlog.get_logger("isthmus.retrieval")

Publish = Callable[[object], Awaitable[None]]
#: marks the dead letter split out of a batch (its chunks only): replaying it must not replace the document
REJECTED_SUFFIX = "/rejected"
#: ``dead_letter(event, error)``: the rejected part of a consumed event to its dead-letter topic
DeadLetter = Callable[[ChunksEmbedded, Exception], Awaitable[None]]
#: what indexing did with a batch: written, or skipped as older than the indexed version
IndexOutcome = Literal["applied", "stale"]
#: the place name of retrieval's erasure step (isthmus_core.contracts.events.ERASURE_PLACES)
ERASURE_PLACE = "retrieval"
#: striped per-document locks: a document's local and mirrored batches are applied one at a time
_LOCK_STRIPES = 64


@dataclass(frozen=True, slots=True)
class SearchParams:
    tenant_id: str
    query: str
    mode: SearchMode = SearchMode.HYBRID
    top_k: int = 10
    alpha: float = 0.5
    fusion: Fusion = Fusion.RANKED
    filters: Mapping[str, str] | None = None
    #: rerank the first ``rerank_candidates`` hits with the cross-encoder
    rerank: bool = False
    #: document ACLs: the caller's principals (empty = only documents without an ACL)
    principals: Sequence[str] = ()


class Retrieval:
    def __init__(
        self,
        store: VectorStore,
        embed_query: QueryEmbedder,
        publish_indexed: Callable[[ChunksIndexed], Awaitable[None]],
        publish_tenant_deleted: Callable[[TenantDeleted], Awaitable[None]],
        dead_letter: DeadLetter | None = None,
        *,
        max_top_k: int = 1000,
        max_query_chars: int = 4096,
        candidates: int = 100,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
        rerank_weight: float = 0.3,
        publish_applied: Callable[[ErasureApplied], Awaitable[None]] | None = None,
        region: str = "",
    ) -> None:
        self.store = store
        self._embed_query = embed_query
        self._publish_indexed = publish_indexed
        self._publish_tenant_deleted = publish_tenant_deleted
        self._dead_letter = dead_letter
        self._max_top_k = max_top_k
        self._max_query_chars = max_query_chars
        self._candidates = candidates
        self._reranker = reranker
        self._rerank_candidates = rerank_candidates
        self._rerank_weight = rerank_weight
        self._doc_locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self._publish_applied = publish_applied
        self._region = region

    async def create_tenant(self, tenant_id: str) -> None:
        await self.store.create_tenant(parse_tenant_id(tenant_id))

    async def delete_tenant(self, tenant_id: str) -> None:
        tenant = parse_tenant_id(tenant_id)
        await self.store.delete_tenant(tenant)
        await self._publish_tenant_deleted(
            TenantDeleted(tenant_id=tenant, idempotency_key=f"{tenant}/deleted")
        )

    async def clear_tenant(self, tenant_id: str) -> None:
        """Drop every object of the tenant but keep the tenant (no tenants.deleted event)."""
        tenant = parse_tenant_id(tenant_id)
        await self.store.delete_tenant(tenant)  # NotFound for an unknown tenant
        await self.store.create_tenant(tenant)

    async def tenant_count(self, tenant_id: str) -> int:
        return await self.store.count(parse_tenant_id(tenant_id))  # NotFound for an unknown tenant

    async def search(self, p: SearchParams) -> tuple[list[Hit], str]:
        parse_tenant_id(p.tenant_id)
        if not p.query.strip():
            raise InvalidArgument("query is empty")
        if len(p.query) > self._max_query_chars:
            raise InvalidArgument(f"query is {len(p.query)} characters; the limit is {self._max_query_chars}")
        if not 1 <= p.top_k <= self._max_top_k:
            raise InvalidArgument(f"top_k must be between 1 and {self._max_top_k}, got {p.top_k}")
        if not 0.0 <= p.alpha <= 1.0:
            raise InvalidArgument(f"alpha must be between 0 and 1, got {p.alpha}")
        if not await self.store.has_tenant(p.tenant_id):
            raise NotFound(f"tenant {p.tenant_id!r} does not exist")
        vector: list[float] | None = None
        model_id: str = ""
        if p.mode != SearchMode.BM25:
            embedded = await self._embed_query.embed_query(p.query)
            vector, model_id = list(embedded.vector), embedded.model_id
        q = SearchQuery(
            text=p.query,
            vector=vector,
            model_id=model_id or None,
            mode=p.mode,
            top_k=max(p.top_k, self._rerank_candidates) if p.rerank else p.top_k,
            alpha=p.alpha,
            fusion=p.fusion,
            filters=dict(p.filters or {}),
            candidates=max(self._candidates, p.top_k),
            principals=tuple(p.principals),
        )
        hits = await self.store.search(p.tenant_id, q)
        if p.rerank and hits:
            if self._reranker is None:
                raise FailedPrecondition("reranking is not available: no reranker is configured")
            head = hits[: self._rerank_candidates]
            scores = await self._reranker.rerank(p.query, [h.text for h in head])
            if len(scores) != len(head):
                raise Unavailable(f"the reranker returned {len(scores)} scores for {len(head)} passages")
            hits = blend_rerank(hits, scores, weight=self._rerank_weight)
        return hits[: p.top_k], model_id

    # --- erasure ------------------------------------------------------------------------------------------

    async def on_erasure(self, ev: ErasureRequested) -> None:
        """An erasure requested in this region (see :meth:`erase`)."""
        await self.erase(ev)

    async def erase(self, ev: ErasureRequested) -> Literal["applied", "tenant_absent"]:
        """Delete the erased documents' chunks from the store — or, for a whole tenant, the tenant itself
        (as DeleteTenant does: ``tenants.deleted`` tells every service to drop its state) — and report
        how many chunks went (``erasures.applied``, place ``retrieval``, this region). A failure is
        reported too, then raised, so the bus retries (a later success replaces the failed step)."""
        tenant = parse_tenant_id(ev.tenant_id)
        if not await self.store.has_tenant(tenant):
            await self._report(ev, 0, f"the tenant does not live in region {self._region!r}: no chunks")
            return "tenant_absent"
        try:
            if ev.whole_tenant:
                count = await self.store.count(tenant)
                await self.delete_tenant(tenant)
                detail = f"tenant deleted with its {count} chunks; tenants.deleted published"
            else:
                ids = [d for d in dict.fromkeys(ev.document_ids) if is_document_id(d)]
                count = 0
                for doc in ids:
                    key = zlib.crc32(f"{tenant}/{doc}".encode())
                    async with self._doc_locks[key % _LOCK_STRIPES]:
                        count += await self.store.delete_document(tenant, doc)
                detail = f"{count} chunks of {len(ids)} documents deleted from the store"
                if isinstance(self.store, Scrubbable):
                    await self.store.scrub(tenant)
                else:
                    detail += " (the store frees their bytes at its own compaction)"
        except NotFound:  # the tenant went away meanwhile: nothing of it is left here
            await self._report(ev, 0, "the tenant was deleted meanwhile: no chunks left")
            return "applied"
        except IsthmusError as exc:
            await self._report(ev, 0, f"{type(exc).__name__}: {exc}", failed=True)
            raise
        await self._report(ev, count, detail)
        return "applied"

    # --- deletion ---------------------------------------------------------------------------------------

    async def on_document_deleted(self, ev: DocumentDeleted) -> None:
        """A document deleted in this region (see :meth:`delete_document`)."""
        await self.delete_document(ev)

    async def delete_document(self, ev: DocumentDeleted) -> Literal["applied", "stale", "tenant_absent"]:
        """Delete a deleted document's chunks from the store, if the version indexed is one the deletion
        covers (``<= ev.version``); a newer version, uploaded after the deletion, stays (``stale``).
        Chunks of a covered version indexed later are deleted when ingestion sees them indexed."""
        tenant = parse_tenant_id(ev.tenant_id)
        if not await self.store.has_tenant(tenant):
            return "tenant_absent"
        if not is_document_id(ev.document_id):
            return "stale"  # no document could have been indexed under it
        key = zlib.crc32(f"{tenant}/{ev.document_id}".encode())
        try:
            async with self._doc_locks[key % _LOCK_STRIPES]:
                current = await self.store.document_version(tenant, ev.document_id)
                if current is not None and current > ev.version:
                    return "stale"
                count = await self.store.delete_document(tenant, ev.document_id)
        except NotFound:  # the tenant went away meanwhile: nothing of it is left here
            return "applied"
        log.info("document deleted", tenant=tenant, document=ev.document_id, version=ev.version, chunks=count)
        return "applied"

    async def _report(self, ev: ErasureRequested, count: int, detail: str, *, failed: bool = False) -> None:
        if self._publish_applied is None:
            return
        await self._publish_applied(
            ErasureApplied(
                tenant_id=ev.tenant_id,
                idempotency_key=f"{ev.tenant_id}/erasure/{ev.erasure_id}/{ERASURE_PLACE}/{self._region}",
                erasure_id=ev.erasure_id,
                place=ERASURE_PLACE,
                region=self._region,
                count=count,
                status="failed" if failed else "done",
                detail=detail[:2048],
            )
        )

    async def index(self, ev: ChunksEmbedded) -> None:
        """Upsert one batch of embedded chunks of this region (see :meth:`apply`)."""
        await self.apply(ev)

    async def apply_replica(self, ev: ChunksEmbedded) -> IndexOutcome | Literal["tenant_absent"]:
        """A batch mirrored from another region: applied like a local one if the tenant lives here."""
        if not await self.store.has_tenant(ev.tenant_id):
            return "tenant_absent"
        return await self.apply(ev)

    async def apply(self, ev: ChunksEmbedded) -> IndexOutcome:
        """Upsert one batch of embedded chunks; the higher version of a document wins.

        A batch older than the version indexed is skipped (``stale``: a late or replayed batch, or one
        mirrored from a region whose write lost); the first batch of a newer version replaces the older
        one. A document's batches are applied one at a time, whichever topic (local or mirrored) brings
        them, so two versions never interleave in the store."""
        key = zlib.crc32(f"{ev.tenant_id}/{ev.document_id}".encode())
        async with self._doc_locks[key % _LOCK_STRIPES]:
            return await self._apply(ev)

    async def _apply(self, ev: ChunksEmbedded) -> IndexOutcome:
        split_out = ev.idempotency_key.endswith(REJECTED_SUFFIX)
        current = await self.store.document_version(ev.tenant_id, ev.document_id)
        if current is not None and ev.version < current:
            return "stale"
        if ev.batch_index == 0 and current is not None and ev.version > current and not split_out:
            await self.store.delete_document(ev.tenant_id, ev.document_id)
        records: Sequence[ChunkRecord] = [
            ChunkRecord(
                chunk_id=c.chunk_id,
                document_id=ev.document_id,
                chunk_index=c.index,
                text=c.text,
                vector=c.vector,
                model_id=ev.model_id,
                start=c.start,
                end=c.end,
                version=ev.version,
                metadata={**c.metadata, DOCUMENT_VERSION_KEY: str(ev.version)},  # hits carry it
            )
            for c in ev.chunks
        ]
        written = await self._upsert(ev, records)
        await self._publish_indexed(
            ChunksIndexed(
                tenant_id=ev.tenant_id,
                idempotency_key=ev.idempotency_key + "/indexed",
                document_id=ev.document_id,
                content_hash=ev.content_hash,
                version=ev.version,
                batch_index=ev.batch_index,
                batch_count=ev.batch_count,
                count=written,
                trace_context=dict(ev.trace_context),
            )
        )
        return "applied"

    async def _upsert(self, ev: ChunksEmbedded, records: Sequence[ChunkRecord]) -> int:
        """Write the batch; bad chunks go to the dead-letter topic, the good ones are indexed.

        A batch nothing of which could be written raises (the bus dead-letters the whole event, with
        its offset). Otherwise the rejected chunks are split into their own dead letter with each
        reason: an adapter that reports per-object errors (:class:`RejectedRecords`) names them; one
        that rejects a batch whole is retried chunk by chunk to find them.
        """
        try:
            await self.store.upsert(ev.tenant_id, records)
            return len(records)
        except RejectedRecords as exc:
            rejected, written = exc.rejected, exc.written
            error: InvalidArgument = exc
        except InvalidArgument:
            if len(records) <= 1 or self._dead_letter is None:
                raise
            rejected, written = {}, 0
            for r in records:
                try:
                    await self.store.upsert(ev.tenant_id, [r])
                    written += 1
                except InvalidArgument as one:
                    rejected[r.chunk_id] = str(one)
            error = RejectedRecords(rejected, written)
        if written == 0 or self._dead_letter is None:
            raise error
        bad = ev.model_copy(
            update={
                "chunks": [c for c in ev.chunks if c.chunk_id in rejected],
                "idempotency_key": ev.idempotency_key + REJECTED_SUFFIX,
            }
        )
        await self._dead_letter(bad, error)
        return written
