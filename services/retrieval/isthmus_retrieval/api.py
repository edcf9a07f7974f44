"""gRPC edge of retrieval: translate protos ↔ core calls, nothing else."""

from __future__ import annotations

import grpc

from isthmus.common.v1 import common_pb2
from isthmus.retrieval.v1 import retrieval_pb2 as pb
from isthmus.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from isthmus_core.auth.context import current_access
from isthmus_core.auth.identity import Permission
from isthmus_core.contracts.ids import parse_principals
from isthmus_core.store.port import Fusion, SearchMode
from isthmus_retrieval.service import Retrieval, SearchParams

_MODES = {
    pb.SEARCH_MODE_UNSPECIFIED: SearchMode.HYBRID,
    pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
    pb.SEARCH_MODE_BM25: SearchMode.BM25,
    pb.SEARCH_MODE_DENSE: SearchMode.DENSE,
}
_FUSIONS = {
    pb.FUSION_RANKED: Fusion.RANKED,
    pb.FUSION_RELATIVE_SCORE: Fusion.RELATIVE_SCORE,
}


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    def __init__(
        self,
        core: Retrieval,
        default_top_k: int,
        default_alpha: float,
        default_fusion: Fusion = Fusion.RANKED,
        default_rerank: bool = False,
    ) -> None:
        self._core = core
        self._fusion = default_fusion
        self._rerank = default_rerank
        self._top_k = default_top_k
        self._alpha = default_alpha

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        params = SearchParams(
            tenant_id=request.tenant_id,
            query=request.query,
            mode=_MODES.get(request.mode, SearchMode.HYBRID),
            top_k=request.top_k or self._top_k,
            alpha=request.alpha if request.HasField("alpha") else self._alpha,
            fusion=_FUSIONS.get(request.fusion, self._fusion),
            filters=dict(request.filters),
            rerank=request.rerank if request.HasField("rerank") else self._rerank,
            principals=parse_principals(list(request.access.principals)),  # no scope = no principals
        )
        hits, model_id = await self._core.search(params)
        return pb.SearchResponse(
            model_id=model_id,
            hits=[
                pb.Hit(
                    context=common_pb2.Context(
                        chunk_id=h.chunk_id,
                        document_id=h.document_id,
                        text=h.text,
                        start=h.start,
                        score=h.score,
                    ),
                    chunk_index=h.chunk_index,
                    end=h.end,
                    metadata=dict(h.metadata),
                )
                for h in hits
            ],
        )

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.Tenant:
        await self._core.create_tenant(request.tenant_id)
        return pb.Tenant(tenant_id=request.tenant_id, chunk_count=0)

    async def GetTenant(self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext) -> pb.Tenant:
        return pb.Tenant(
            tenant_id=request.tenant_id, chunk_count=await self._core.tenant_count(request.tenant_id)
        )

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTenantsResponse:
        readable = current_access().tenants(Permission.TENANT_READ)  # None: every tenant
        out = []
        for t in await self._core.store.list_tenants():
            if readable is not None and t not in readable:
                continue
            out.append(pb.Tenant(tenant_id=t, chunk_count=await self._core.store.count(t)))
        return pb.ListTenantsResponse(tenants=out)

    async def ClearTenant(
        self, request: pb.ClearTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.Tenant:
        await self._core.clear_tenant(request.tenant_id)
        return pb.Tenant(tenant_id=request.tenant_id, chunk_count=0)

    async def DeleteTenant(
        self, request: pb.DeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteTenantResponse:
        await self._core.delete_tenant(request.tenant_id)
        return pb.DeleteTenantResponse()
