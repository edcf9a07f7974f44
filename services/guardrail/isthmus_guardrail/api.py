"""gRPC edge of the guardrail: run checks off the event loop, emit verdict events, answer with reasons."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Literal

import grpc

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_core.contracts.events import GuardrailVerdict, VerdictReason
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import Action, Policy, Verdict
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_guardrail import ingest_scan
from isthmus_guardrail.guard import Guard
from isthmus_guardrail.policies import PolicyStore

#: initial-metadata key sent once a CheckOutputStream header is accepted (the client waits for it)
OUTPUT_CHECK_OPEN = "isthmus-output-check"

ACTION_TO_PB = {
    Action.ALLOW: common_pb2.GUARD_ACTION_ALLOW,
    Action.REDACT: common_pb2.GUARD_ACTION_REDACT,
    Action.BLOCK: common_pb2.GUARD_ACTION_BLOCK,
    Action.FLAG: common_pb2.GUARD_ACTION_FLAG,
}


def verdict_pb(v: Verdict, policy_version: str = "") -> common_pb2.Verdict:
    """``policy_version``: the :attr:`Policy.version` the check applied (answers' provenance)."""
    return common_pb2.Verdict(
        action=ACTION_TO_PB[v.action],
        text=v.text,
        policy_version=policy_version or v.policy_version,
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

    async def _emit(
        self,
        tenant: str,
        stage: Literal["input", "output", "chunk"],
        subject: str,
        v: Verdict,
        part: str = "",
    ) -> None:
        """Publish a verdict event. Its idempotency key names the subject, the stage and ``part`` (the
        sentence index of a streamed output check), so distinct checks never share a key; a check without
        a subject gets a fresh one."""
        key = f"{tenant}/{subject or 'anon-' + uuid.uuid4().hex}/{stage}" + (f"/{part}" if part else "")
        await self._publish(
            GuardrailVerdict(
                tenant_id=tenant,
                idempotency_key=key,
                stage=stage,
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
        return verdict_pb(v, policy.digest)

    async def CheckOutput(
        self, request: pb.CheckOutputRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Verdict:
        tenant = await self._tenant(request.tenant_id)
        sentences = [_sentence(s) for s in request.sentences]
        self._check_length(" ".join(s.text for s in sentences))
        contexts = _contexts(request.contexts)
        policy = self._policies.get(tenant)
        v = await asyncio.to_thread(self._guard.check_output, sentences, contexts, policy)
        await self._emit(tenant, "output", request.subject_id, v)
        return verdict_pb(v, policy.digest)

    async def CheckOutputStream(
        self,
        requests: AsyncIterator[pb.CheckOutputStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[common_pb2.Verdict]:
        """Header first (tenant, subject, contexts: sent once), then one verdict per sentence, in order."""
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("request") != "header":
            raise InvalidArgument("the first message of CheckOutputStream must be the header")
        header = first.header
        tenant = await self._tenant(header.tenant_id)
        contexts = _contexts(header.contexts)
        policy = self._policies.get(tenant)
        # tells the client the header was accepted (a refusal ends the call with the reason instead)
        await context.send_initial_metadata(((OUTPUT_CHECK_OPEN, "1"),))
        index = 0
        async for message in requests:
            if message.WhichOneof("request") != "sentence":
                raise InvalidArgument(f"message {index + 1} of CheckOutputStream must be a sentence")
            sentence = _sentence(message.sentence)
            self._check_length(sentence.text)
            v = await asyncio.to_thread(self._guard.check_output, [sentence], contexts, policy)
            await self._emit(tenant, "output", header.subject_id, v, part=str(index))
            yield verdict_pb(v, policy.digest)
            index += 1

    def _check_length(self, text: str) -> None:
        if len(text) > self._max:
            raise InvalidArgument(f"text is {len(text)} characters; the limit is {self._max}")

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
        return policy_pb(tenant, self._policies.put(tenant, self._guard.validate_policy(p)))

    # placeholders until the policy and ingest slices of issue 16 land (the generated base class would
    # answer UNIMPLEMENTED without a reason)
    async def ListPolicyVersions(
        self, request: pb.ListPolicyVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPolicyVersionsResponse:
        raise FailedPrecondition("policy versions are not served yet")

    async def RollbackPolicy(
        self, request: pb.RollbackPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.Policy:
        raise FailedPrecondition("policy versions are not served yet")

    async def ApplyPolicyRef(
        self, request: pb.ApplyPolicyRefRequest, context: grpc.aio.ServicerContext
    ) -> pb.Policy:
        raise FailedPrecondition("policy references are not served yet")

    async def ScanChunks(
        self, request: pb.ScanChunksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScanChunksResponse:
        """A document's chunks under the tenant's current policy, before ingestion indexes them (the
        ingest stage of :mod:`isthmus_guardrail.guard`); verdict events for the chunks not ALLOWed."""
        tenant = await self._tenant(request.tenant_id)
        document, chunks = ingest_scan.chunks_of(request, self._max)
        policy = self._policies.get(tenant)
        verdicts = await asyncio.to_thread(self._guard.scan_chunks, chunks, policy)
        label = policy.digest
        for event in ingest_scan.verdict_events(tenant, document, chunks, verdicts, label):
            await self._publish(event)
        return ingest_scan.response_pb(verdicts, label, policy.ingest_scope)


def _sentence(s: common_pb2.AnswerSentence) -> AnswerSentence:
    return AnswerSentence(
        text=s.text,
        citations=tuple(CitedSpan(c.chunk_id, c.document_id, c.start, c.end) for c in s.citations),
    )


def _contexts(contexts: Iterable[common_pb2.Context]) -> list[Context]:
    return [Context(c.chunk_id, c.document_id, c.text, c.start, c.score) for c in contexts]


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
