"""The retrieval module: embedded store, gRPC RetrievalService, consumer of chunks.embedded."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.bus.purge import purge_on_deletion, purge_on_erasure
from isthmus_core.bus.replication import replica_subscriptions, replica_topics
from isthmus_core.bus.typed import dead_letterer, publisher, subscribe
from isthmus_core.clients.embedding import GrpcQueryEmbedder, GrpcReranker
from isthmus_core.contracts import topics
from isthmus_core.ports.embedding_client import QueryEmbedder
from isthmus_core.runtime.module import Module, ModuleContext, Offer, Probe
from isthmus_core.store.port import Fusion, VectorStore
from isthmus_core.telemetry.caches import register_cache
from isthmus_retrieval.api import RetrievalServicer
from isthmus_retrieval.query_cache import CachedQueryEmbedder
from isthmus_retrieval.service import Retrieval
from isthmus_retrieval.settings import RetrievalSettings

NAME = "retrieval"
GROUP = "retrieval"


def make_store(s: RetrievalSettings, data_dir: Path) -> tuple[VectorStore, list[Probe]]:
    """The configured store adapter and its readiness probes (nothing connects until first use)."""
    if s.store == "weaviate":
        from isthmus_retrieval.store_weaviate import WeaviateConfig, WeaviateStore

        store = WeaviateStore(
            WeaviateConfig(
                url=s.weaviate_url,
                grpc_port=s.weaviate_grpc_port,
                grpc_host=s.weaviate_grpc_host or None,
                api_key=s.weaviate_api_key.get_secret_value() or None,
                collection=s.weaviate_collection,
                query_timeout_s=s.weaviate_timeout_s,
                insert_timeout_s=s.weaviate_insert_timeout_s,
                attempts=s.weaviate_attempts,
            )
        )
        return store, [store.ready]
    from isthmus_retrieval.store_embedded import EmbeddedStore

    return EmbeddedStore(s.store_dir or data_dir / "store"), []


async def build(ctx: ModuleContext[RetrievalSettings]) -> Offer:
    s = ctx.settings
    store, probes = make_store(s, ctx.data_dir)
    embedding = ctx.channel("embedding")
    embed_query: QueryEmbedder = GrpcQueryEmbedder(embedding)
    caches: list[Callable[[], None]] = []  # content caches, purged on every erasure and deletion
    if s.query_cache_size:
        cached = CachedQueryEmbedder(embed_query, maxsize=s.query_cache_size, ttl_s=s.query_cache_ttl_s)
        register_cache("query_vectors", cached.cache_info)
        caches.append(cached.clear)
        embed_query = cached
    core = Retrieval(
        store,
        embed_query,
        publisher(ctx.bus, topics.CHUNKS_INDEXED),
        publisher(ctx.bus, topics.TENANTS_DELETED),
        dead_letterer(ctx.bus, topics.CHUNKS_EMBEDDED, group=GROUP),
        max_top_k=s.max_top_k,
        max_query_chars=s.max_query_chars,
        candidates=s.candidates,
        reranker=GrpcReranker(embedding),
        rerank_candidates=s.rerank_candidates,
        rerank_weight=s.rerank_weight,
        publish_applied=publisher(ctx.bus, topics.ERASURES_APPLIED),
        region=ctx.common.region,
    )
    peers = ctx.common.peer_regions()
    servicer = RetrievalServicer(core, s.default_top_k, s.hybrid_alpha, Fusion(s.fusion), s.rerank)
    return Offer(
        registrars=[partial(retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, servicer)],
        grpc_service_names=[retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name],
        subscriptions=[
            subscribe(topics.CHUNKS_EMBEDDED, GROUP, core.index),
            # documents indexed in the other regions, mirrored by MirrorMaker 2 (docs/multi-region.md)
            *replica_subscriptions(topics.CHUNKS_EMBEDDED, GROUP, peers, core.apply_replica, service=NAME),
            # erasures requested here and in the other regions: their chunks leave this region's store
            subscribe(topics.ERASURES_REQUESTED, GROUP + "-erasure", core.on_erasure),
            *replica_subscriptions(
                topics.ERASURES_REQUESTED, GROUP + "-erasure", peers, core.erase, service=NAME
            ),
            *purge_on_erasure(NAME, peers, caches),
            # documents deleted here and in the other regions: their chunks leave this region's store
            subscribe(topics.DOCUMENTS_DELETED, GROUP + "-deletion", core.on_document_deleted),
            *replica_subscriptions(
                topics.DOCUMENTS_DELETED, GROUP + "-deletion", peers, core.delete_document, service=NAME
            ),
            *purge_on_deletion(NAME, peers, caches),
        ],
        topics=[
            topics.CHUNKS_EMBEDDED,
            topics.CHUNKS_INDEXED,
            topics.TENANTS_DELETED,
            topics.ERASURES_REQUESTED,
            topics.ERASURES_APPLIED,
            topics.DOCUMENTS_DELETED,
            *replica_topics(
                [topics.CHUNKS_EMBEDDED, topics.ERASURES_REQUESTED, topics.DOCUMENTS_DELETED], peers
            ),
        ],
        on_stop=[store.close],
        probes=probes,
        probe_interval_s=s.readiness_interval_s,
    )


MODULE = Module(
    name=NAME,
    settings_cls=RetrievalSettings,
    build=build,
    depends_on=("embedding",),
    description="per-tenant hybrid search over the vector store",
)
