"""A :class:`~isthmus_core.ports.embedding_client.QueryEmbedder` that remembers recent queries' vectors.

Embedding a query is the costliest step of a dense or hybrid search (an ONNX run in the embedding
service, plus the call), and the same questions come back (FAQ traffic, retries, dashboards). The vectors
of the last ``maxsize`` distinct query texts are kept for ``ttl_s`` seconds: long enough to absorb
repeats, short enough that a model rollout in the embedding service reaches searches within ``ttl_s``
(a vector carries its ``model_id``, and the store only compares vectors of one model). Failures are not
cached. Concurrent misses for one text each call the embedder (no request coalescing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cachetools

from isthmus_core.ports.embedding_client import QueryEmbedder, QueryEmbedding


class CachedQueryEmbedder:
    """:class:`QueryEmbedder` over another, with an LRU + TTL cache keyed by the exact query text."""

    def __init__(
        self,
        inner: QueryEmbedder,
        *,
        maxsize: int = 4096,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._maxsize = maxsize
        self._cache: cachetools.TTLCache[str, QueryEmbedding] = cachetools.TTLCache(
            maxsize=maxsize, ttl=ttl_s, timer=clock
        )
        self._lock = threading.Lock()  # the metrics scrape reads from another thread
        self._hits = self._misses = 0

    async def embed_query(self, text: str) -> QueryEmbedding:
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._hits += 1
                return cached
            self._misses += 1
        embedded = await self._inner.embed_query(text)
        with self._lock:
            self._cache[text] = embedded
        return embedded

    def clear(self) -> None:
        """Forget every cached query (an erasure: a query text may name what was erased)."""
        with self._lock:
            self._cache.clear()

    def cache_info(self) -> tuple[int, int, int, int]:
        """``(hits, misses, size, maxsize)``."""
        with self._lock:
            return self._hits, self._misses, len(self._cache), self._maxsize
