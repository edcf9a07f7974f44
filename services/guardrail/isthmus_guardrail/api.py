"""gRPC edge of the guardrail: run checks off the event loop, emit verdict events, answer with reasons."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Literal, cast

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from isthmus.common.v1 import common_pb2
from isthmus.guardrail.v1 import guardrail_pb2 as pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
from isthmus_core.auth.context import current_principal
from isthmus_core.contracts.events import GuardrailVerdict, VerdictReason
from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import FailedPrecondition, InvalidArgument
from isthmus_core.ports.generator import AnswerSentence, CitedSpan, Context
from isthmus_core.ports.guard import (
    Action,
    BannedTopic,
    IngestScope,
    Policy,
    PolicyAction,
    Verdict,
)
from isthmus_core.ports.tenants import TenantDirectory, require_tenant
from isthmus_guardrail import ingest_scan
from isthmus_guardrail.guard import ORIGINS, Guard
from isthmus_guardrail.judging import Judges
from isthmus_guardrail.policies import PolicyStore, PolicyVersion

#: initial-metadata key sent once a CheckOutputStream header is accepted (the client waits for it)
OUTPUT_CHECK_OPEN = "isthmus-output-check"

ACTION_TO_PB = {
    Action.ALLOW: common_pb2.GUARD_ACTION_ALLOW,
    Action.REDACT: common_pb2.GUARD_ACTION_REDACT,
    Action.BLOCK: common_pb2.GUARD_ACTION_BLOCK,
    Action.FLAG: common_pb2.GUARD_ACTION_FLAG,
}


def verdict_pb(v: Verdict, policy_version: str = "") -> common_pb2.Verdict:
    """``policy_version``: the label of the policy version the check applied (``v3``, ``default``:
    answers' provenance)."""
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
        judging: Judges | None = None,
    ) -> None:
        """``judging``: the evaluation judges (None: the grounding model is off, Entail and
        ScoreRelevance answer FAILED_PRECONDITION)."""
        self._guard = guard
        self._judging = judging
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
        policy_version: str,
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
                policy_version=policy_version,
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
        origin = request.origin or "user"
        if origin not in ORIGINS:
            raise InvalidArgument(f"origin must be one of {list(ORIGINS)} (or empty), got {request.origin!r}")
        stored = self._policies.current(tenant)
        v = await asyncio.to_thread(self._guard.check_input, request.text, stored.policy, origin)
        await self._emit(tenant, "input", request.subject_id, v, stored.label)
        return verdict_pb(v, stored.label)

    async def CheckOutput(
        self, request: pb.CheckOutputRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Verdict:
        tenant = await self._tenant(request.tenant_id)
        sentences = [_sentence(s) for s in request.sentences]
        self._check_length(" ".join(s.text for s in sentences))
        contexts = _contexts(request.contexts)
        stored = self._policies.current(tenant)
        v = await asyncio.to_thread(self._guard.check_output, sentences, contexts, stored.policy)
        await self._emit(tenant, "output", request.subject_id, v, stored.label)
        return verdict_pb(v, stored.label)

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
        stored = self._policies.current(tenant)  # one version for the whole answer
        # tells the client the header was accepted (a refusal ends the call with the reason instead)
        await context.send_initial_metadata(((OUTPUT_CHECK_OPEN, "1"),))
        index = 0
        async for message in requests:
            if message.WhichOneof("request") != "sentence":
                raise InvalidArgument(f"message {index + 1} of CheckOutputStream must be a sentence")
            sentence = _sentence(message.sentence)
            self._check_length(sentence.text)
            v = await asyncio.to_thread(self._guard.check_output, [sentence], contexts, stored.policy)
            await self._emit(tenant, "output", header.subject_id, v, stored.label, part=str(index))
            yield verdict_pb(v, stored.label)
            index += 1

    def _check_length(self, text: str) -> None:
        if len(text) > self._max:
            raise InvalidArgument(f"text is {len(text)} characters; the limit is {self._max}")

    # ---- policies: versions are kept by the store (policies.py); these translate and delegate

    async def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.aio.ServicerContext) -> pb.Policy:
        tenant = await self._tenant(request.tenant_id)
        stored = self._policies.version(tenant, request.version)
        return policy_pb(stored, self._policies.current(tenant).number)

    async def PutPolicy(self, request: pb.Policy, context: grpc.aio.ServicerContext) -> pb.Policy:
        tenant = await self._tenant(request.tenant_id)
        policy = self._guard.validate_policy(policy_from_pb(request))
        stored = self._policies.put(tenant, policy, created_by=caller_subject())
        return policy_pb(stored, stored.number)

    async def ListPolicyVersions(
        self, request: pb.ListPolicyVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPolicyVersionsResponse:
        tenant = await self._tenant(request.tenant_id)
        history = self._policies.history(tenant)
        return pb.ListPolicyVersionsResponse(
            versions=[policy_pb(v, history.current) for v in history.versions], current=history.current
        )

    async def RollbackPolicy(
        self, request: pb.RollbackPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.Policy:
        tenant = await self._tenant(request.tenant_id)
        stored = self._policies.rollback(tenant, request.version)
        return policy_pb(stored, stored.number)

    async def ApplyPolicyRef(
        self, request: pb.ApplyPolicyRefRequest, context: grpc.aio.ServicerContext
    ) -> pb.Policy:
        tenant = await self._tenant(request.tenant_id)
        stored = self._policies.apply_ref(
            tenant,
            name=request.name,
            version=request.version,
            created_by=caller_subject(),
            validate=self._guard.validate_policy,
        )
        return policy_pb(stored, stored.number)

    # placeholder until the ingest slice of issue 16 lands (the generated base class would answer
    # UNIMPLEMENTED without a reason)
    async def ScanChunks(
        self, request: pb.ScanChunksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScanChunksResponse:
        """A document's chunks under the tenant's current policy, before ingestion indexes them (the
        ingest stage of :mod:`isthmus_guardrail.guard`); verdict events for the chunks not ALLOWed."""
        tenant = await self._tenant(request.tenant_id)
        document, chunks = ingest_scan.chunks_of(request, self._max)
        stored = self._policies.current(tenant)
        policy, label = stored.policy, stored.label
        verdicts = await asyncio.to_thread(self._guard.scan_chunks, chunks, policy)
        for event in ingest_scan.verdict_events(tenant, document, chunks, verdicts, label):
            await self._publish(event)
        return ingest_scan.response_pb(verdicts, label, policy.ingest_scope)

    # ---- evaluation judges (judging.py): stateless, no verdict events

    def _judges(self) -> Judges:
        if self._judging is None:
            raise FailedPrecondition(
                "the evaluation judges need the grounding model, which is off on this guardrail "
                "(guardrail.grounding_model_enabled = false)"
            )
        return self._judging

    async def Entail(self, request: pb.EntailRequest, context: grpc.aio.ServicerContext) -> pb.EntailResponse:
        await self._tenant(request.tenant_id)
        judging = self._judges()
        results = await asyncio.to_thread(judging.entail, [(p.premise, p.hypothesis) for p in request.pairs])
        return pb.EntailResponse(
            results=[
                pb.Entailment(entailment=r.entailment, neutral=r.neutral, contradiction=r.contradiction)
                for r in results
            ],
            model=judging.entailment_model,
        )

    async def ScoreRelevance(
        self, request: pb.ScoreRelevanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreRelevanceResponse:
        await self._tenant(request.tenant_id)
        judging = self._judges()
        scores = await asyncio.to_thread(judging.relevance, request.query, list(request.passages))
        return pb.ScoreRelevanceResponse(scores=scores, model=judging.relevance_model)


def _sentence(s: common_pb2.AnswerSentence) -> AnswerSentence:
    return AnswerSentence(
        text=s.text,
        citations=tuple(CitedSpan(c.chunk_id, c.document_id, c.start, c.end) for c in s.citations),
    )


def _contexts(contexts: Iterable[common_pb2.Context]) -> list[Context]:
    return [Context(c.chunk_id, c.document_id, c.text, c.start, c.score) for c in contexts]


def caller_subject() -> str:
    """Who makes the current call: its verified subject ("" outside a call)."""
    principal = current_principal()
    return "" if principal is None else principal.subject


def _unit(value: float) -> float:
    """A float32 field as the decimal it was written as (0.6, not 0.6000000238): a policy read back and
    stored again has the same content, hence the same digest."""
    return round(value, 6)


def policy_from_pb(request: pb.Policy) -> Policy:
    """The policy a request asks for. Unset ``optional`` fields take the built-in defaults; the plain
    fields (block_injection … block_ungrounded) are taken as sent, except an empty ``pii_entities`` (the
    default set); ``output_pii_entities``/``ingest_pii_entities`` count when non-empty or marked set.
    Action and scope names are passed on as sent: :meth:`Guard.validate_policy` checks them with
    everything else. The output-only fields (version, label, digest…) are ignored."""
    d = Policy()

    def given(name: str) -> object:
        return getattr(request, name) if request.HasField(name) else getattr(d, name)

    def unit(name: str) -> float:
        return _unit(getattr(request, name)) if request.HasField(name) else float(getattr(d, name))

    return Policy(
        block_injection=request.block_injection,
        injection_threshold=_unit(request.injection_threshold),
        redact_pii=request.redact_pii,
        pii_entities=tuple(request.pii_entities) or d.pii_entities,
        pii_threshold=_unit(request.pii_threshold),
        grounding_threshold=_unit(request.grounding_threshold),
        block_ungrounded=request.block_ungrounded,
        pii_action=cast(PolicyAction, given("pii_action")),
        block_toxicity=bool(given("block_toxicity")),
        toxicity_threshold=unit("toxicity_threshold"),
        banned_topics=tuple(
            BannedTopic(
                t.name,
                t.description,
                _unit(t.threshold) if t.HasField("threshold") else BannedTopic("", "").threshold,
            )
            for t in request.banned_topics
        ),
        output_pii_entities=(
            tuple(request.output_pii_entities)
            if request.output_pii_entities or request.set_output_pii_entities
            else None
        ),
        output_pii_action=cast(PolicyAction, given("output_pii_action")),
        grounding_model=bool(given("grounding_model")),
        contradiction_threshold=unit("contradiction_threshold"),
        entailment_threshold=unit("entailment_threshold"),
        scan_ingest=bool(given("scan_ingest")),
        ingest_injection_action=cast(PolicyAction, given("ingest_injection_action")),
        ingest_injection_threshold=unit("ingest_injection_threshold"),
        ingest_pii_entities=(
            tuple(request.ingest_pii_entities)
            if request.ingest_pii_entities or request.set_ingest_pii_entities
            else d.ingest_pii_entities
        ),
        ingest_pii_action=cast(PolicyAction, given("ingest_pii_action")),
        ingest_scope=cast(IngestScope, given("ingest_scope")),
    )


#: Policy message fields without presence (proto3 plain scalars: unset reads as false/0)
PLAIN_FIELDS: Final = (
    "block_injection",
    "injection_threshold",
    "redact_pii",
    "pii_threshold",
    "grounding_threshold",
    "block_ungrounded",
)
#: fields of a Policy message the server fills in (ignored in a policy file)
OUTPUT_FIELDS: Final = frozenset(
    {"tenant_id", "version", "label", "digest", "created_at", "created_by", "source", "current"}
)


def policy_request(tenant_id: str, data: Mapping[str, Any]) -> pb.Policy:
    """The PutPolicy request of a policy file (TOML or JSON: the Policy message's fields by name, as
    ``isthmus policy get --json`` prints them). A field the file leaves out takes the built-in default —
    the plain fields too (a file holding only ``banned_topics`` does not turn injection blocking off);
    ``output_pii_entities``/``ingest_pii_entities`` given count as set unless ``set_…`` says otherwise;
    the output-only fields (version, label, digest…) are ignored. Unknown fields or values of the wrong
    type are :class:`InvalidArgument` (values themselves are checked by the server)."""
    fields = {f.name for f in pb.Policy.DESCRIPTOR.fields}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InvalidArgument(f"unknown policy fields {unknown}; known: {sorted(fields - OUTPUT_FIELDS)}")
    given = {k: v for k, v in data.items() if k not in OUTPUT_FIELDS}
    d = Policy()
    for name in PLAIN_FIELDS:
        given.setdefault(name, getattr(d, name))
    for name in ("output_pii_entities", "ingest_pii_entities"):
        if name in given:
            given.setdefault(f"set_{name}", True)
    try:
        request = json_format.ParseDict(given, pb.Policy())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"not a policy: {exc}") from None
    request.tenant_id = tenant_id
    return request


def policy_pb(stored: PolicyVersion, current: int) -> pb.Policy:
    """A stored version (or the built-in default, version 0) with every field set; ``current``: the
    number of the tenant's current version."""
    p = stored.policy
    created_at = None
    if stored.created_at is not None:
        created_at = Timestamp()
        created_at.FromDatetime(stored.created_at)
    return pb.Policy(
        tenant_id=stored.tenant_id,
        block_injection=p.block_injection,
        injection_threshold=p.injection_threshold,
        redact_pii=p.redact_pii,
        pii_entities=list(p.pii_entities),
        pii_threshold=p.pii_threshold,
        grounding_threshold=p.grounding_threshold,
        block_ungrounded=p.block_ungrounded,
        version=stored.number,
        label=stored.label,
        digest=p.digest,
        created_at=created_at,
        created_by=stored.created_by,
        source=stored.source,
        current=stored.number == current,
        pii_action=p.pii_action.value,
        block_toxicity=p.block_toxicity,
        toxicity_threshold=p.toxicity_threshold,
        banned_topics=[
            pb.BannedTopic(name=t.name, description=t.description, threshold=t.threshold)
            for t in p.banned_topics
        ],
        output_pii_entities=list(p.output_pii_entities or ()),
        set_output_pii_entities=p.output_pii_entities is not None,
        output_pii_action=p.output_pii_action.value,
        grounding_model=p.grounding_model,
        contradiction_threshold=p.contradiction_threshold,
        entailment_threshold=p.entailment_threshold,
        scan_ingest=p.scan_ingest,
        ingest_injection_action=p.ingest_injection_action.value,
        ingest_injection_threshold=p.ingest_injection_threshold,
        ingest_pii_entities=list(p.ingest_pii_entities),
        set_ingest_pii_entities=True,
        ingest_pii_action=p.ingest_pii_action.value,
        ingest_scope=p.ingest_scope.value,
    )
