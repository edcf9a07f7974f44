"""Ports for what other services ask the embedding service: a query's vector and a reranking.

:class:`QueryEmbedder` embeds one search query (→ its vector and the id of the model that made it);
:class:`Reranker` scores passages against a query with a cross-encoder (→ one relevance per passage, in
the passages' order, higher = more relevant). Retrieval depends on these Protocols only; their gRPC
implementations (over ``EmbeddingService.Embed`` / ``Rerank``) live in :mod:`isthmus_core.clients.embedding`.
Failures are :mod:`isthmus_core.errors` (``InvalidArgument`` for a bad request, ``Unavailable`` when the
embedding service cannot be reached...), never a gRPC type.

:class:`LocalQueryEmbedder` and :class:`SimilarityReranker` adapt an in-process
:class:`~isthmus_core.ports.embedder.Embedder` (e.g. the
:class:`~isthmus_core.ports.hashing_embedder.HashingEmbedder`): the fakes for unit tests, passing the
same suites. Conformance: :mod:`isthmus_core.testing.embedding_client_conformance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.embedder import Embedder


@dataclass(frozen=True, slots=True)
class QueryEmbedding:
    vector: tuple[float, ...]  # L2-normalised, the model's dimension
    model_id: str  # the embedding model's id/version: only vectors of the same model are comparable


@runtime_checkable
class QueryEmbedder(Protocol):
    async def embed_query(self, text: str) -> QueryEmbedding:
        """The vector of one search query (embedded as a query, not as a passage)."""
        ...


@runtime_checkable
class Reranker(Protocol):
    async def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, in the passages' order; ``[]`` for no passages.
        An empty query is :class:`~isthmus_core.errors.InvalidArgument`."""
        ...


def check_rerank_query(query: str) -> None:
    """The argument check every reranker makes (the embedding service's ``Rerank`` makes it too)."""
    if not query.strip():
        raise InvalidArgument("rerank needs a non-empty query")


class LocalQueryEmbedder:
    """A :class:`QueryEmbedder` over an in-process :class:`Embedder` (run inline: fakes are fast)."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    async def embed_query(self, text: str) -> QueryEmbedding:
        out = self._embedder.embed([text], "query")
        return QueryEmbedding(tuple(float(x) for x in out.vectors[0]), out.model_id)


class SimilarityReranker:
    """A :class:`Reranker` scoring each passage by the cosine of its embedding with the query's (an
    in-process :class:`Embedder`'s): no cross-encoder, but relevant passages still score higher."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    async def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        check_rerank_query(query)
        if not passages:
            return []
        q = self._embedder.embed([query], "query").vectors[0]
        p = self._embedder.embed(list(passages), "passage").vectors
        return [float(x) for x in p @ q]
