"""The ingestion module: gRPC Upload, the documents topic, document status from downstream events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus_core.bus.port import RetryPolicy, Subscription
from isthmus_core.bus.replication import replica_subscriptions, replica_topics
from isthmus_core.bus.typed import publisher, subscribe
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_ingestion.api import IngestionServicer
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.registry import DocumentRegistry
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.settings import IngestionSettings
from isthmus_ingestion.watch import DocumentWatch, WatchedRegistry

NAME = "ingestion"
GROUP = "ingestion"


async def build(ctx: ModuleContext[IngestionSettings]) -> Offer:
    s = ctx.settings
    tokenizer = s.tokenizer_file or bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json"
    chunker = Chunker(tokenizer, max_tokens=s.chunk_max_tokens, overlap_tokens=s.chunk_overlap_tokens)
    watch = DocumentWatch()
    registry = WatchedRegistry(ctx.data_dir / "ingestion" / "documents.sqlite", watch)
    tenants = GrpcTenantDirectory(ctx.channel("retrieval"))  # the tenant registry is retrieval's
    core = Ingestion(
        registry,
        chunker,
        tenants,
        publisher(ctx.bus, topics.CHUNKS_CREATED),
        max_bytes=s.max_upload_bytes,
        chunks_per_event=s.chunks_per_event,
        region=ctx.common.region,
        regions=ctx.common.regions,
        quotas=ctx.auth.quotas,
    )
    peers = ctx.common.peer_regions()

    async def forget_tenant(ev: TenantDeleted) -> None:
        tenants.forget(parse_tenant_id(ev.tenant_id))
        await core.on_tenant_deleted(ev)

    status_retry = RetryPolicy(max_attempts=5)
    return Offer(
        registrars=[
            partial(ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, IngestionServicer(core, watch))
        ],
        grpc_service_names=[ingestion_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name],
        subscriptions=[
            subscribe(topics.DOCUMENTS_SUBMITTED, GROUP, core.on_document_submitted),
            subscribe(topics.CHUNKS_EMBEDDED, GROUP + "-status", core.on_chunks_embedded, status_retry),
            subscribe(topics.CHUNKS_INDEXED, GROUP + "-status", core.on_chunks_indexed, status_retry),
            subscribe(topics.TENANTS_DELETED, GROUP, forget_tenant),
            # documents written in the other regions (docs/multi-region.md)
            *replica_subscriptions(
                topics.CHUNKS_EMBEDDED, GROUP + "-replica", peers, core.on_replicated_batch, service=NAME
            ),
            Subscription(topics.CHUNKS_CREATED.dlq, GROUP + "-dlq", core.on_dead_letter, status_retry),
            Subscription(topics.CHUNKS_EMBEDDED.dlq, GROUP + "-dlq", core.on_dead_letter, status_retry),
        ],
        topics=[
            topics.DOCUMENTS_SUBMITTED,
            topics.CHUNKS_CREATED,
            topics.CHUNKS_EMBEDDED,
            topics.CHUNKS_INDEXED,
            topics.TENANTS_DELETED,
            *replica_topics([topics.CHUNKS_EMBEDDED], peers),
        ],
        on_stop=[_closer(registry)],
    )


def _closer(registry: DocumentRegistry) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        registry.close()

    return close


MODULE = Module(
    name=NAME,
    settings_cls=IngestionSettings,
    build=build,
    depends_on=("retrieval",),
    description="documents in: parse, dedup, chunk, chunk events out",
)
