"""Clients of the embedding service over gRPC, for every service that needs a query's vector or a
reranking (retrieval; the agent orchestrator's semantic cache and episodic memory).

:class:`GrpcQueryEmbedder` implements :class:`isthmus_core.ports.embedding_client.QueryEmbedder` over
``EmbeddingService.Embed``; :class:`GrpcReranker` implements
:class:`isthmus_core.ports.embedding_client.Reranker` over ``EmbeddingService.Rerank`` (conformance:
:mod:`isthmus_core.testing.embedding_client_conformance`, run in ``tests/e2e`` against the real
embedding service). A failed call raises the matching :mod:`isthmus_core.errors` error
(``InvalidArgument``, ``Unavailable``...), so callers never see a gRPC type.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus_core.errors import Unavailable
from isthmus_core.grpc.deadline import remaining
from isthmus_core.grpc.status import from_rpc_error
from isthmus_core.ports.embedding_client import QueryEmbedding

DEFAULT_TIMEOUT_S = 30.0


class GrpcQueryEmbedder:
    """:class:`~isthmus_core.ports.embedding_client.QueryEmbedder` over ``EmbeddingService.Embed``."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        self._timeout = timeout_s

    async def embed_query(self, text: str) -> QueryEmbedding:
        try:
            resp = await self._stub.Embed(
                embedding_pb2.EmbedRequest(texts=[text], kind=embedding_pb2.TEXT_KIND_QUERY),
                timeout=remaining(self._timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        if len(resp.vectors) != 1 or not resp.model_id:
            raise Unavailable(
                f"the embedding service returned {len(resp.vectors)} vectors "
                f"(model id {resp.model_id!r}) for one query"
            )
        return QueryEmbedding(tuple(resp.vectors[0].values), resp.model_id)


class GrpcReranker:
    """:class:`~isthmus_core.ports.embedding_client.Reranker` over ``EmbeddingService.Rerank``."""

    def __init__(self, channel: grpc.aio.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
        self._timeout = timeout_s

    async def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []  # nothing to score; the service would refuse an empty query itself
        try:
            resp = await self._stub.Rerank(
                embedding_pb2.RerankRequest(query=query, passages=list(passages)),
                timeout=remaining(self._timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        if len(resp.scores) != len(passages):
            raise Unavailable(f"the reranker returned {len(resp.scores)} scores for {len(passages)} passages")
        return list(resp.scores)
