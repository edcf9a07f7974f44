"""The ingestion module: gRPC Upload, the documents topic, the guardrail's scan of every chunk (blocked
chunks to the quarantine topic), document status from downstream events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus_core.auth.identity import Permission
from isthmus_core.auth.producers import checked_producer
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.port import RetryPolicy, Subscription
from isthmus_core.bus.replication import replica_subscriptions, replica_topics
from isthmus_core.bus.typed import event_handler, publisher, subscribe
from isthmus_core.clients.guardrail import GrpcChunkScanner
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.onnx_embedder import OnnxEmbedder
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_ingestion.api import IngestionServicer
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.chunking.strategies import build_selection
from isthmus_ingestion.objects import ObjectStore, build_object_store
from isthmus_ingestion.parsing import ParseOptions
from isthmus_ingestion.registry import DocumentRegistry
from isthmus_ingestion.service import Ingestion
from isthmus_ingestion.settings import IngestionSettings
from isthmus_ingestion.texts import TextStore
from isthmus_ingestion.watch import DocumentWatch, WatchedRegistry

EventT = TypeVar("EventT")

NAME = "ingestion"
GROUP = "ingestion"


async def build(ctx: ModuleContext[IngestionSettings]) -> Offer:
    s = ctx.settings
    tokenizer = s.tokenizer_file or bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json"
    chunking = build_selection(
        s.chunking,
        s.chunking_overrides,
        partial(Chunker, tokenizer),
        max_tokens=s.chunk_max_tokens,
        overlap_tokens=s.chunk_overlap_tokens,
        child_max_tokens=s.chunking_child_max_tokens,
        parent_max_tokens=s.chunking_parent_max_tokens,
        # the semantic strategy's sentence embeddings: the bundled bge-small, in this process
        embedder=partial(OnnxEmbedder, intra_op_threads=1),
        breakpoint_percentile=s.chunking_semantic_percentile,
    )
    watch = DocumentWatch()
    registry = WatchedRegistry(ctx.data_dir / "ingestion" / "documents.sqlite", watch)
    tenants = GrpcTenantDirectory(ctx.channel("retrieval"))  # the tenant registry is retrieval's
    texts = TextStore(ctx.data_dir / "ingestion" / "texts.sqlite")
    core = Ingestion(
        registry,
        chunking,
        tenants,
        publisher(ctx.bus, topics.CHUNKS_CREATED),
        max_bytes=s.max_upload_bytes,
        chunks_per_event=s.chunks_per_event,
        region=ctx.common.region,
        regions=ctx.common.regions,
        quotas=ctx.auth.quotas,
        publish_erasure=publisher(ctx.bus, topics.ERASURES_REQUESTED),
        publish_applied=publisher(ctx.bus, topics.ERASURES_APPLIED),
        subject_key=s.erasure_subject_key,
        kafka_bus=not isinstance(ctx.bus, InProcessBus),
        kafka_retention_ms=ctx.common.kafka_retention_ms,
        audit=ctx.auth.audit,
        # every chunk scanned by the guardrail before it is published (the tenant's policy decides)
        scanner=GrpcChunkScanner(ctx.channel("guardrail")) if s.scan_chunks else None,
        publish_quarantine=publisher(ctx.bus, topics.CHUNKS_QUARANTINED),
        texts=texts,
        parse_options=ParseOptions(
            text_fields=tuple(s.json_text_fields),
            title_field=s.json_title_field,
            metadata_fields=tuple(s.json_metadata_fields),
        ),
        max_child_depth=s.max_child_depth,
        max_children=s.max_child_documents,
        objects=object_store(s, ctx.data_dir),
        max_inline_bytes=s.max_inline_bytes,
        publish_deleted=publisher(ctx.bus, topics.DOCUMENTS_DELETED),
    )
    peers = ctx.common.peer_regions()
    resume = _Resume(core)

    async def forget_tenant(ev: TenantDeleted) -> None:
        tenants.forget(parse_tenant_id(ev.tenant_id))
        await core.on_tenant_deleted(ev)

    status_retry = RetryPolicy(max_attempts=5)
    # a document is retried while the guardrail (its chunk scan) or retrieval (its tenant) is unreachable,
    # for ~15 s, then dead-lettered: never indexed unscanned
    submitted_retry = RetryPolicy(max_attempts=6, initial_backoff_s=0.5, max_backoff_s=8.0)
    return Offer(
        registrars=[
            partial(ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, IngestionServicer(core, watch))
        ],
        grpc_service_names=[ingestion_pb2.DESCRIPTOR.services_by_name["IngestionService"].full_name],
        subscriptions=[
            # with authentication on, only producers with documents.write in the event's tenant
            Subscription(
                topics.DOCUMENTS_SUBMITTED.name,
                GROUP,
                checked_producer(
                    topics.DOCUMENTS_SUBMITTED,
                    event_handler(topics.DOCUMENTS_SUBMITTED, core.on_document_submitted),
                    ctx.auth,
                    Permission.DOCUMENTS_WRITE,
                ),
                submitted_retry,
            ),
            # deletions a producer asks for: the same check (documents.write in the event's tenant)
            Subscription(
                topics.DELETIONS_REQUESTED.name,
                GROUP,
                checked_producer(
                    topics.DELETIONS_REQUESTED,
                    event_handler(topics.DELETIONS_REQUESTED, core.on_deletion_requested),
                    ctx.auth,
                    Permission.DOCUMENTS_WRITE,
                ),
                status_retry,
            ),
            subscribe(topics.CHUNKS_EMBEDDED, GROUP + "-status", core.on_chunks_embedded, status_retry),
            subscribe(topics.CHUNKS_INDEXED, GROUP + "-status", core.on_chunks_indexed, status_retry),
            subscribe(topics.TENANTS_DELETED, GROUP, forget_tenant),
            # documents written in the other regions (docs/multi-region.md)
            *replica_subscriptions(
                topics.CHUNKS_EMBEDDED, GROUP + "-replica", peers, core.on_replicated_batch, service=NAME
            ),
            # documents deleted in the other regions: deleted here too
            *replica_subscriptions(
                topics.DOCUMENTS_DELETED,
                GROUP + "-deletion",
                peers,
                core.on_replicated_deletion,
                service=NAME,
            ),
            # erasures: requested in another region (erase here too), reports for the receipts kept here
            *replica_subscriptions(
                topics.ERASURES_REQUESTED, GROUP + "-erasure", peers, core.on_replicated_erasure, service=NAME
            ),
            subscribe(
                topics.ERASURES_APPLIED, GROUP + "-erasure", _local(core.on_erasure_applied), status_retry
            ),
            *replica_subscriptions(
                topics.ERASURES_APPLIED, GROUP + "-erasure", peers, core.on_erasure_applied, service=NAME
            ),
            # a submission that gave up (e.g. the guardrail unreachable): failed, with the reason
            Subscription(
                topics.DOCUMENTS_SUBMITTED.dlq, GROUP + "-dlq", core.on_submission_dead_letter, status_retry
            ),
            Subscription(topics.CHUNKS_CREATED.dlq, GROUP + "-dlq", core.on_dead_letter, status_retry),
            Subscription(topics.CHUNKS_EMBEDDED.dlq, GROUP + "-dlq", core.on_dead_letter, status_retry),
        ],
        topics=[
            topics.DOCUMENTS_SUBMITTED,
            topics.DELETIONS_REQUESTED,
            topics.DOCUMENTS_DELETED,
            topics.CHUNKS_CREATED,
            topics.CHUNKS_EMBEDDED,
            topics.CHUNKS_INDEXED,
            topics.CHUNKS_QUARANTINED,
            topics.TENANTS_DELETED,
            topics.ERASURES_REQUESTED,
            topics.ERASURES_APPLIED,
            *replica_topics(
                [
                    topics.CHUNKS_EMBEDDED,
                    topics.DOCUMENTS_DELETED,
                    topics.ERASURES_REQUESTED,
                    topics.ERASURES_APPLIED,
                ],
                peers,
            ),
        ],
        on_start=[resume.start],
        on_stop=[resume.stop, _closer(registry), _closer(texts)],
    )


def object_store(s: IngestionSettings, data_dir: Path) -> ObjectStore:
    """Where documents sent by reference are read (``[ingestion] object_store*``); ``isthmus submit``
    writes to the same store."""
    return build_object_store(
        s.object_store,
        directory=s.object_store_dir or data_dir / "ingestion" / "objects",
        bucket=s.object_store_s3_bucket,
        prefix=s.object_store_s3_prefix,
        endpoint_url=s.object_store_s3_endpoint_url,
        region=s.object_store_s3_region,
        timeout_s=s.object_store_timeout_s,
    )


def _local(apply: Callable[[EventT], Awaitable[object]]) -> Callable[[EventT], Awaitable[None]]:
    """A replica-style handler (it says what it did) as a plain handler of a local topic."""

    async def handle(ev: EventT) -> None:
        await apply(ev)

    return handle


class _Resume:
    """Documents an earlier process left pending (recorded, not indexed: their chunk events lost with an
    in-process bus, or never published before a crash) driven again once this process is up, in the
    background: the guardrail's scan and the bus are reached through the server and the bus the runtime
    starts after the start hooks (retried until they answer)."""

    def __init__(self, core: Ingestion) -> None:
        self._core = core
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        if not self._core.pending():  # nothing pending: nothing started (one query)
            return
        self._task = asyncio.create_task(self._core.resume_until_done(), name="ingestion-resume")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _closer(store: DocumentRegistry | TextStore) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        store.close()

    return close


MODULE = Module(
    name=NAME,
    settings_cls=IngestionSettings,
    build=build,
    depends_on=("retrieval", "guardrail"),
    description="documents in: parse, dedup, chunk, guardrail scan, chunk events out",
)
