"""gRPC edge of embedding."""

from __future__ import annotations

import asyncio

import grpc

from isthmus.embedding.v1 import embedding_pb2 as pb
from isthmus.embedding.v1 import embedding_pb2_grpc as pb_grpc
from isthmus_core.errors import FailedPrecondition, InvalidArgument
from isthmus_core.onnx_reranker import OnnxCrossEncoder
from isthmus_core.ports.embedder import Embedder, TextKind
from isthmus_embedding.service import EmbeddingCore


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(
        self,
        core: EmbeddingCore,
        embedder: Embedder,
        model_dir: str,
        max_tokens: int,
        reranker: OnnxCrossEncoder | None = None,
        max_rerank_passages: int = 200,
        max_text_chars: int = 100_000,
        model_bundle: str = "",
    ) -> None:
        self._model_bundle = model_bundle
        self._core = core
        self._reranker = reranker
        self._max_rerank = max_rerank_passages
        self._max_chars = max_text_chars
        self._embedder = embedder
        self._model_dir = model_dir
        self._max_tokens = max_tokens

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        kind: TextKind = "query" if request.kind == pb.TEXT_KIND_QUERY else "passage"
        result = await self._core.embed(list(request.texts), kind)
        return pb.EmbedResponse(
            vectors=[pb.Vector(values=row.tolist()) for row in result.vectors],
            model_id=result.model_id,
            dimension=int(result.vectors.shape[1]) if result.vectors.ndim == 2 else 0,
        )

    async def GetModel(self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return pb.ModelInfo(
            model_id=self._embedder.model_id,
            dimension=self._embedder.dimension,
            model_dir=self._model_dir,
            max_tokens=self._max_tokens,
            model_bundle=self._model_bundle,
        )

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        if self._reranker is None:
            raise FailedPrecondition("the reranker is disabled on this embedding service (reranker_enabled)")
        passages = list(request.passages)
        if not request.query.strip():
            raise InvalidArgument("rerank needs a non-empty query")
        if len(passages) > self._max_rerank:
            raise InvalidArgument(f"{len(passages)} passages to rerank; the limit is {self._max_rerank}")
        for i, text in enumerate([request.query, *passages]):
            if len(text) > self._max_chars:
                what = "the query" if i == 0 else f"passage {i - 1}"
                raise InvalidArgument(f"{what} is {len(text)} characters; the limit is {self._max_chars}")
        scores = await asyncio.to_thread(self._reranker.score, request.query, passages)
        return pb.RerankResponse(scores=scores.tolist(), model_id=self._reranker.model_id)
