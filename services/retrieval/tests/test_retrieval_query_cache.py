"""The query-vector cache: a QueryEmbedder like any other (conformance), that calls its inner embedder
once per distinct text within the TTL, and never caches a failure."""

from __future__ import annotations

import pytest

from isthmus_core.errors import Unavailable
from isthmus_core.ports.embedding_client import LocalQueryEmbedder, QueryEmbedder, QueryEmbedding
from isthmus_core.ports.hashing_embedder import HashingEmbedder
from isthmus_core.testing.embedding_client_conformance import QueryEmbedderConformance
from isthmus_retrieval.query_cache import CachedQueryEmbedder


class Counting:
    def __init__(self, fail: bool = False) -> None:
        self.inner = LocalQueryEmbedder(HashingEmbedder())
        self.calls: list[str] = []
        self.fail = fail

    async def embed_query(self, text: str) -> QueryEmbedding:
        self.calls.append(text)
        if self.fail:
            raise Unavailable("the embedding service is down")
        return await self.inner.embed_query(text)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestCachedQueryEmbedder(QueryEmbedderConformance):
    @pytest.fixture
    def query_embedder(self) -> QueryEmbedder:
        return CachedQueryEmbedder(LocalQueryEmbedder(HashingEmbedder()), maxsize=4)


async def test_a_repeated_query_is_embedded_once_within_the_ttl() -> None:
    inner, clock = Counting(), Clock()
    cached = CachedQueryEmbedder(inner, maxsize=8, ttl_s=60.0, clock=clock)
    first = await cached.embed_query("how do gliders soar?")
    assert await cached.embed_query("how do gliders soar?") == first
    await cached.embed_query("How do gliders soar?")  # the exact text is the key
    assert inner.calls == ["how do gliders soar?", "How do gliders soar?"]
    assert cached.cache_info() == (1, 2, 2, 8)
    clock.now = 61.0  # past the TTL: embedded again (a model rollout reaches searches)
    assert await cached.embed_query("how do gliders soar?") == first
    assert inner.calls[-1] == "how do gliders soar?" and len(inner.calls) == 3


async def test_the_least_recently_used_query_leaves_first() -> None:
    inner = Counting()
    cached = CachedQueryEmbedder(inner, maxsize=2)
    for text in ("a query", "b query", "a query", "c query", "a query", "b query"):
        await cached.embed_query(text)
    assert inner.calls == ["a query", "b query", "c query", "b query"]


async def test_a_failure_is_raised_and_not_cached() -> None:
    inner = Counting(fail=True)
    cached = CachedQueryEmbedder(inner)
    for _ in range(2):
        with pytest.raises(Unavailable):
            await cached.embed_query("q")
    assert inner.calls == ["q", "q"]
    inner.fail = False
    assert (await cached.embed_query("q")).vector
