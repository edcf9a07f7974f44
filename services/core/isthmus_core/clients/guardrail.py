"""Ingestion's client of the guardrail: :class:`GrpcChunkScanner` implements
:class:`isthmus_core.ports.guard.ChunkScanner` over ``GuardrailService.ScanChunks``.

A document's chunks are sent in requests of at most ``chunks_per_call`` chunks (a long document is not one
huge message); the verdicts come back in order. A failed call raises the matching :mod:`isthmus_core.errors`
error (:class:`~isthmus_core.errors.Unavailable` when the guardrail cannot be reached), so the caller never
sees a gRPC type and never indexes an unscanned chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus_core.errors import Unavailable
from isthmus_core.grpc.deadline import remaining
from isthmus_core.grpc.status import from_rpc_error
from isthmus_core.ports.guard import Action, ChunkScan, ChunkVerdict, Finding, IngestScope

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_CHUNKS_PER_CALL = 64

_ACTIONS = {
    common_pb2.GUARD_ACTION_ALLOW: Action.ALLOW,
    common_pb2.GUARD_ACTION_REDACT: Action.REDACT,
    common_pb2.GUARD_ACTION_BLOCK: Action.BLOCK,
    common_pb2.GUARD_ACTION_FLAG: Action.FLAG,
}


def chunk_verdict_from_pb(v: guardrail_pb2.ChunkVerdict) -> ChunkVerdict:
    """An unknown (or unset) action is read as BLOCK: the scan fails closed."""
    action = _ACTIONS.get(v.action, Action.BLOCK)
    findings = tuple(
        Finding(
            code=f.code,
            message=f.message,
            start=f.start if f.HasField("start") else None,
            end=f.end if f.HasField("end") else None,
            score=f.score,
        )
        for f in v.findings
    )
    return ChunkVerdict(index=v.index, action=action, findings=findings, text=v.text)


class GrpcChunkScanner:
    """:class:`~isthmus_core.ports.guard.ChunkScanner` over ``GuardrailService.ScanChunks``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        chunks_per_call: int = DEFAULT_CHUNKS_PER_CALL,
    ) -> None:
        self._stub = guardrail_pb2_grpc.GuardrailServiceStub(channel)
        self._timeout = timeout_s
        self._per_call = max(1, chunks_per_call)

    async def scan(self, tenant_id: str, document_id: str, chunks: Sequence[tuple[int, str]]) -> ChunkScan:
        verdicts: list[ChunkVerdict] = []
        policy_version, scope = "", IngestScope.DOCUMENT
        for at in range(0, len(chunks), self._per_call):
            part = chunks[at : at + self._per_call]
            request = guardrail_pb2.ScanChunksRequest(
                tenant_id=tenant_id,
                document_id=document_id,
                chunks=[guardrail_pb2.ChunkToScan(index=i, text=t) for i, t in part],
            )
            try:
                resp = await self._stub.ScanChunks(request, timeout=remaining(self._timeout))
            except grpc.aio.AioRpcError as exc:
                raise from_rpc_error(exc) from exc
            if [v.index for v in resp.verdicts] != [i for i, _ in part]:
                raise Unavailable(
                    f"the guardrail answered {len(resp.verdicts)} verdicts for {len(part)} chunks, "
                    "not one per chunk in order"
                )
            verdicts += [chunk_verdict_from_pb(v) for v in resp.verdicts]
            # one document, one scope: the strictest answer of its calls (a policy changed mid-document)
            policy_version = policy_version or resp.policy_version
            if resp.scope != IngestScope.CHUNK.value:
                scope = IngestScope.DOCUMENT
            elif at == 0:
                scope = IngestScope.CHUNK
        return ChunkScan(tuple(verdicts), policy_version=policy_version, scope=scope)
