"""gRPC edge of the guardrail: run checks off the event loop, emit verdict events, answer with reasons."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_core.contracts.events import GuardrailVerdict, VerdictReason
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Action, Policy, Verdict
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore

ACTION_TO_PB = {
    Action.ALLOW: common_pb2.GUARD_ACTION_ALLOW,
    Action.REDACT: common_pb2.GUARD_ACTION_REDACT,
    Action.BLOCK: common_pb2.GUARD_ACTION_BLOCK,
}


def verdict_pb(v: Verdict) -> common_pb2.Verdict:
    return common_pb2.Verdict(
        action=ACTION_TO_PB[v.action],
        text=v.text,
        findings=[
            common_pb2.Finding(code=f.code, message=f.message, start=f.start, end=f.end, score=f.score)
            for f in v.findings
        ],
    )


class GuardrailServicer(pb_grpc.GuardrailServiceServicer):
    def __init__(
        self,
        guard: Guard,
        policies: PolicyStore,
        publish_verdict: Callable[[GuardrailVerdict], Awaitable[None]],
        max_text_chars: int,
        tenants: TenantDirectory,
    ) -> None:
        self._guard = guard
        self._policies = policies
        self._publish = publish_verdict
        self._max = max_text_chars
        self._tenants = tenants

    async def _tenant(self, raw: str) -> TenantId:
        """The request's tenant: a valid id (else INVALID_ARGUMENT) of an existing tenant (else NOT_FOUND)."""
        return await require_tenant(self._tenants, parse_tenant_id(raw))

    async def _emit(self, tenant: str, stage: str, subject: str, v: Verdict) -> None:
        await self._publish(
            GuardrailVerdict(
                tenant_id=tenant,
                idempotency_key=f"{tenant}/{subject or 'anon'}/{stage}",
                stage=stage,  # type: ignore[arg-type]
                action=v.action.value,
                subject_id=subject,
                reasons=[
                    VerdictReason(code=f.code, message=f.message, start=f.start, end=f.end)
                    for f in v.findings
                ],
            )
        )

    async def CheckInput(
        self, request: pb.CheckInputRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Verdict:
        tenant = await self._tenant(request.tenant_id)
        if len(request.text) > self._max:
            raise InvalidArgument(f"text is {len(request.text)} characters; the limit is {self._max}")
        policy = self._policies.get(tenant)
        v = await asyncio.to_thread(self._guard.check_input, request.text, policy)
        await self._emit(tenant, "input", request.subject_id, v)
        return verdict_pb(v)

    async def CheckOutput(
        self, request: pb.CheckOutputRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Verdict:
        tenant = await self._tenant(request.tenant_id)
        sentences = [
            AnswerSentence(
                text=s.text,
                citations=tuple(CitedSpan(c.chunk_id, c.document_id, c.start, c.end) for c in s.citations),
            )
            for s in request.sentences
        ]
        contexts = [Context(c.chunk_id, c.document_id, c.text, c.start, c.score) for c in request.contexts]
        policy = self._policies.get(tenant)
        v = await asyncio.to_thread(self._guard.check_output, sentences, contexts, policy)
        await self._emit(tenant, "output", request.subject_id, v)
        return verdict_pb(v)

    async def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext) -> pb.Policy:
        tenant = await self._tenant(request.tenant_id)
        return policy_pb(tenant, self._policies.get(tenant))

    async def PutPolicy(self, request: pb.Policy, context: grpc.aio.ServicerContext) -> pb.Policy:
        tenant = await self._tenant(request.tenant_id)
        p = Policy(
            block_injection=request.block_injection,
            injection_threshold=request.injection_threshold,
            redact_pii=request.redact_pii,
            pii_entities=tuple(request.pii_entities) or Policy().pii_entities,
            pii_threshold=request.pii_threshold,
            grounding_threshold=request.grounding_threshold,
            block_ungrounded=request.block_ungrounded,
        )
        return policy_pb(tenant, self._policies.put(tenant, p))


def policy_pb(tenant_id: str, p: Policy) -> pb.Policy:
    return pb.Policy(
        tenant_id=tenant_id,
        block_injection=p.block_injection,
        injection_threshold=p.injection_threshold,
        redact_pii=p.redact_pii,
        pii_entities=list(p.pii_entities),
        pii_threshold=p.pii_threshold,
        grounding_threshold=p.grounding_threshold,
        block_ungrounded=p.block_ungrounded,
    )
