"""Evaluation's clients of other services, over gRPC: retrieval, ingestion and the agent orchestrator.

:class:`GrpcEvalPlatform` implements :class:`isthmus_core.ports.eval_platform.EvalPlatform` over
``RetrievalService`` (tenants, search), ``IngestionService`` (upload, document statuses) and
``AgentOrchestratorService.Ask`` (answers with their contexts), so an
evaluation run measures exactly what users get (conformance:
:mod:`isthmus_core.testing.eval_platform_conformance`, run in ``tests/e2e`` against the real platform).
A failed call raises the matching :mod:`isthmus_core.errors` error (``NotFound``, ``AlreadyExists``,
``Unavailable``...), so the runner never sees a gRPC type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2, agent_orchestrator_pb2_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import FailedPrecondition
from isthmus_core.grpc.deadline import remaining
from isthmus_core.grpc.status import from_rpc_error
from isthmus_core.ports.eval_platform import (
    AskedCitation,
    AskedContext,
    AskedSentence,
    AskOutcome,
    DocumentHit,
    IndexProgress,
)
from isthmus_core.store.port import SearchMode

_MODES: Final = {
    SearchMode.BM25: retrieval_pb2.SEARCH_MODE_BM25,
    SearchMode.DENSE: retrieval_pb2.SEARCH_MODE_DENSE,
    SearchMode.HYBRID: retrieval_pb2.SEARCH_MODE_HYBRID,
}


class GrpcEvalPlatform:
    """:class:`~isthmus_core.ports.eval_platform.EvalPlatform` over retrieval's and ingestion's gRPC APIs.

    ``timeout_s`` bounds each call but tenant deletion, uploads and asks, which get ``long_timeout_s``.
    Without an ``orchestrator`` channel :meth:`ask` is a ``FailedPrecondition``.
    """

    def __init__(
        self,
        retrieval: grpc.aio.Channel,
        ingestion: grpc.aio.Channel,
        orchestrator: grpc.aio.Channel | None = None,
        *,
        timeout_s: float = 60.0,
        long_timeout_s: float = 120.0,
    ) -> None:
        self._retrieval = retrieval_pb2_grpc.RetrievalServiceStub(retrieval)
        self._ingestion = ingestion_pb2_grpc.IngestionServiceStub(ingestion)
        self._orchestrator = (
            None
            if orchestrator is None
            else agent_orchestrator_pb2_grpc.AgentOrchestratorServiceStub(orchestrator)
        )
        self._timeout = timeout_s
        self._long_timeout = long_timeout_s

    async def create_tenant(self, tenant_id: TenantId) -> None:
        try:
            await self._retrieval.CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=tenant_id), timeout=remaining(self._timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    async def delete_tenant(self, tenant_id: TenantId) -> None:
        try:
            await self._retrieval.DeleteTenant(
                retrieval_pb2.DeleteTenantRequest(tenant_id=tenant_id), timeout=remaining(self._long_timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    async def upload(self, tenant_id: TenantId, document_id: str, filename: str, data: bytes) -> None:
        async def parts() -> AsyncIterator[ingestion_pb2.UploadRequest]:
            yield ingestion_pb2.UploadRequest(
                header=ingestion_pb2.UploadHeader(
                    tenant_id=tenant_id, filename=filename, document_id=document_id
                )
            )
            yield ingestion_pb2.UploadRequest(data=data)

        try:
            await self._ingestion.Upload(parts(), timeout=remaining(self._long_timeout))
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

    async def progress(self, tenant_id: TenantId) -> IndexProgress:
        try:
            resp = await self._ingestion.ListDocuments(
                ingestion_pb2.ListDocumentsRequest(tenant_id=tenant_id), timeout=remaining(self._timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        indexed = sum(d.status == ingestion_pb2.DOCUMENT_STATUS_INDEXED for d in resp.documents)
        # a quarantined document (the guardrail's ingest scan) is never indexed either: done, not searchable
        not_indexed = (ingestion_pb2.DOCUMENT_STATUS_FAILED, ingestion_pb2.DOCUMENT_STATUS_QUARANTINED)
        failed = sum(d.status in not_indexed for d in resp.documents)
        return IndexProgress(indexed, failed, len(resp.documents))

    async def search(
        self, tenant_id: TenantId, query: str, mode: SearchMode, top_k: int, *, rerank: bool = False
    ) -> list[DocumentHit]:
        # rerank is always sent: every eval mode says whether it reranks, whatever the service default
        request = retrieval_pb2.SearchRequest(
            tenant_id=tenant_id, query=query, mode=_MODES[mode], top_k=top_k, rerank=rerank
        )
        try:
            resp = await self._retrieval.Search(request, timeout=remaining(self._timeout))
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return [DocumentHit(h.context.document_id, h.context.score) for h in resp.hits]

    async def ask(self, tenant_id: TenantId, question: str) -> AskOutcome:
        if self._orchestrator is None:
            raise FailedPrecondition("this evaluation platform has no agent orchestrator to ask")
        # no_cache: each judged answer is generated (a throwaway tenant has no cache worth measuring)
        request = agent_orchestrator_pb2.AskRequest(
            tenant_id=tenant_id, question=question, include_contexts=True, no_cache=True
        )
        try:
            resp = await self._orchestrator.Ask(request, timeout=remaining(self._long_timeout))
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return ask_outcome(resp)


def ask_outcome(resp: agent_orchestrator_pb2.AskResponse) -> AskOutcome:
    """An ``AskResponse`` as the port's :class:`AskOutcome`."""
    return AskOutcome(
        answer_id=resp.question_id,
        answer=resp.answer,
        sentences=tuple(
            AskedSentence(
                s.text,
                tuple(AskedCitation(c.chunk_id, c.document_id, c.start, c.end) for c in s.citations),
            )
            for s in resp.sentences
        ),
        contexts=tuple(
            AskedContext(c.chunk_id, c.document_id, c.start, c.end, c.text, c.score) for c in resp.contexts
        ),
        blocked=resp.blocked,
        latency_ms=resp.latency_ms,
        cached=resp.cached,
        generator=resp.generator,
    )
