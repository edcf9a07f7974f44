"""The retrieval module: embedded store, gRPC RetrievalService, consumer of chunks.embedded."""

from __future__ import annotations

from functools import partial

from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.port import Subscription
from isthmus_core.bus.typed import event_handler, publish_event
from isthmus_core.contracts import topics
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_retrieval.api import RetrievalServicer
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.settings import RetrievalSettings

NAME = "retrieval"
GROUP = "retrieval"


async def build(ctx: ModuleContext) -> Offer:
    from isthmus_retrieval.store_embedded import EmbeddedStore

    s = ctx.settings
    assert isinstance(s, RetrievalSettings)
    store = EmbeddedStore(s.store_dir or ctx.data_dir / "store")
    embedding = embedding_pb2_grpc.EmbeddingServiceStub(ctx.channel("embedding"))

    async def embed_query(text: str) -> tuple[list[float], str]:
        resp = await embedding.Embed(
            embedding_pb2.EmbedRequest(texts=[text], kind=embedding_pb2.TEXT_KIND_QUERY), timeout=30
        )
        return list(resp.vectors[0].values), resp.model_id

    core = Retrieval(
        store,
        embed_query,
        partial(publish_event, ctx.bus, topics.CHUNKS_INDEXED),
        partial(publish_event, ctx.bus, topics.TENANTS_DELETED),
        max_top_k=s.max_top_k,
        max_query_chars=s.max_query_chars,
        candidates=s.candidates,
    )
    servicer = RetrievalServicer(core, s.default_top_k, s.hybrid_alpha)
    return Offer(
        registrars=[partial(retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, servicer)],
        grpc_service_names=[retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name],
        subscriptions=[
            Subscription(
                topics.CHUNKS_EMBEDDED.name, GROUP, event_handler(topics.CHUNKS_EMBEDDED, core.index)
            )
        ],
        topics=[topics.CHUNKS_EMBEDDED, topics.CHUNKS_INDEXED, topics.TENANTS_DELETED],
        on_stop=[store.close],
    )


MODULE = Module(
    name=NAME,
    settings_cls=RetrievalSettings,
    build=build,
    depends_on=("embedding",),
    description="per-tenant hybrid search over the vector store",
)
