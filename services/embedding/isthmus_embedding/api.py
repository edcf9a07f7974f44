"""gRPC edge of embedding."""

from __future__ import annotations

import grpc

from isthmus.embedding.v1 import embedding_pb2 as pb
from isthmus.embedding.v1 import embedding_pb2_grpc as pb_grpc
from isthmus_core.ports.embedder import Embedder
from isthmus_embedding.service import EmbeddingCore


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(self, core: EmbeddingCore, embedder: Embedder, model_dir: str, max_tokens: int) -> None:
        self._core = core
        self._embedder = embedder
        self._model_dir = model_dir
        self._max_tokens = max_tokens

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        kind = "query" if request.kind == pb.TEXT_KIND_QUERY else "passage"
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
        )
