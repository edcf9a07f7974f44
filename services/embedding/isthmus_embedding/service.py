"""Embedding's core: validate requests, embed through the micro-batcher, embed chunk batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from isthmus_core.contracts.events import ChunksCreated, ChunksEmbedded, EmbeddedChunk
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.embedder import Embeddings, TextKind
from isthmus_embedding.batcher import MicroBatcher


class EmbeddingCore:
    def __init__(
        self,
        batcher: MicroBatcher,
        publish_embedded: Callable[[ChunksEmbedded], Awaitable[None]],
        *,
        max_texts: int,
        max_text_chars: int,
    ) -> None:
        self._batcher = batcher
        self._publish = publish_embedded
        self._max_texts = max_texts
        self._max_chars = max_text_chars

    async def embed(self, texts: Sequence[str], kind: TextKind) -> Embeddings:
        if not texts:
            raise InvalidArgument("texts is empty: send at least one text")
        if len(texts) > self._max_texts:
            raise InvalidArgument(f"{len(texts)} texts in one request; the limit is {self._max_texts}")
        for i, t in enumerate(texts):
            if len(t) > self._max_chars:
                raise InvalidArgument(f"text {i} has {len(t)} characters; the limit is {self._max_chars}")
        return await self._batcher.embed(list(texts), kind)

    async def on_chunks_created(self, ev: ChunksCreated) -> None:
        if not ev.chunks:
            raise InvalidArgument("chunk batch has no chunks")
        result = await self._batcher.embed([c.text for c in ev.chunks], "passage")
        chunks = [
            EmbeddedChunk(**c.model_dump(), vector=[float(x) for x in vec])
            for c, vec in zip(ev.chunks, result.vectors, strict=True)
        ]
        await self._publish(
            ChunksEmbedded(
                tenant_id=ev.tenant_id,
                idempotency_key=ev.idempotency_key + "/embedded",
                document_id=ev.document_id,
                content_hash=ev.content_hash,
                version=ev.version,
                batch_index=ev.batch_index,
                batch_count=ev.batch_count,
                model_id=result.model_id,
                chunks=chunks,
                trace_context=dict(ev.trace_context),
            )
        )
