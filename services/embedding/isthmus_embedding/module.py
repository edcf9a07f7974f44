"""The embedding module: ONNX embedder behind a micro-batcher; gRPC Embed; chunks.created consumer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus_core.bus.typed import publisher, subscribe
from isthmus_core.contracts import topics
from isthmus_core.errors import ConfigurationError
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_embedding.api import EmbeddingServicer
from isthmus_embedding.service import EmbeddingCore
from isthmus_embedding.settings import EmbeddingSettings

if TYPE_CHECKING:
    from isthmus_core.model_bundles import ModelBundle
    from isthmus_core.onnx_reranker import OnnxCrossEncoder

NAME = "embedding"
GROUP = "embedding"


async def build(ctx: ModuleContext[EmbeddingSettings]) -> Offer:
    from isthmus_core.onnx_embedder import OnnxEmbedder
    from isthmus_embedding.batcher import MicroBatcher

    s = ctx.settings
    bundle = ctx.common.loaded_model_bundle()
    model_dir = embedding_model_dir(s, bundle)
    embedder = OnnxEmbedder(
        model_dir,
        query_prefix=s.query_prefix,
        max_tokens=s.max_tokens,
        intra_op_threads=s.intra_op_threads,
        parallel_runs=s.parallel_runs,
        rows_per_run=s.rows_per_run,
    )
    batcher = MicroBatcher(embedder, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms)
    core = EmbeddingCore(
        batcher,
        publisher(ctx.bus, topics.CHUNKS_EMBEDDED),
        max_texts=s.max_texts_per_request,
        max_text_chars=s.max_text_chars,
    )
    reranker = None
    if s.reranker_enabled:
        from isthmus_core.onnx_reranker import OnnxCrossEncoder

        reranker = OnnxCrossEncoder(
            s.reranker_dir, max_tokens=s.reranker_max_tokens, parallel_runs=s.parallel_runs
        )
    servicer = EmbeddingServicer(
        core,
        embedder,
        str(model_dir),
        s.max_tokens,
        reranker,
        max_rerank_passages=s.max_rerank_passages,
        max_text_chars=s.max_text_chars,
        model_bundle=str(bundle.ref) if bundle is not None and bundle.embedding_model_dir else "",
    )
    return Offer(
        registrars=[partial(embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server, servicer)],
        grpc_service_names=[embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name],
        subscriptions=[subscribe(topics.CHUNKS_CREATED, GROUP, core.on_chunks_created)],
        topics=[topics.CHUNKS_CREATED, topics.CHUNKS_EMBEDDED],
        on_start=[batcher.start],
        on_stop=[batcher.stop, *([_closer(reranker)] if reranker is not None else [])],
    )


def embedding_model_dir(settings: EmbeddingSettings, bundle: ModelBundle | None) -> Path:
    """The ONNX model this service serves: the bundle's embedding model when the bundle provides one
    (then ``[embedding] model_dir`` must be unset: two models named, refused), else ``model_dir``, else
    the bundled bge-small-en-v1.5."""
    if bundle is not None and bundle.embedding_model_dir is not None:
        if settings.model_dir is not None:
            raise ConfigurationError(
                f"[embedding] model_dir (env ISTHMUS_EMBEDDING_MODEL_DIR) is {settings.model_dir} but "
                f"[common] model_bundle {bundle.ref} provides the embedding model: unset one of them"
            )
        return bundle.embedding_model_dir
    return settings.model_dir or bundled_model_dir(BGE_SMALL_EN)


def _closer(reranker: OnnxCrossEncoder) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        reranker.close()

    return close


MODULE = Module(
    name=NAME,
    settings_cls=EmbeddingSettings,
    build=build,
    description="ONNX Runtime embeddings, micro-batched",
)
