"""The guardrail module: injection/PII input checks, grounding output checks, verdict events.

Tenants are looked up in retrieval's registry (an unknown tenant gets NOT_FOUND, never a default
policy); a tenant's policy versions are removed when its ``tenants.deleted`` event arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus_core.bus.purge import purge_on_erasure
from isthmus_core.bus.replication import replica_topics
from isthmus_core.bus.typed import publisher, subscribe
from isthmus_core.clients.tenant_directory import GrpcTenantDirectory
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import TenantDeleted
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_core.telemetry.caches import register_cache
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.judging import Judging
from isthmus_guardrail.policies import PolicyStore
from isthmus_guardrail.settings import GuardrailSettings

NAME = "guardrail"
#: the consumer group of the tenants.deleted subscription (not named GROUP: guardrail is not scaled on lag)
TENANT_EVENTS_GROUP = "guardrail"


def _checks(s: GuardrailSettings) -> tuple[dict[str, Any], list[Callable[[], None]], Judging | None]:
    """The checks beside the rules and PII, each loaded only when enabled (models load here, at build),
    what closes the models' run threads on stop, and the evaluation judges (``Entail``,
    ``ScoreRelevance``: the grounding model and its cross-encoder; None when the grounding model is off).

    One bundled bge-small encoder serves the injection model and the topic matcher; the bundled
    cross-encoder serves the grounding model and the judges."""
    checks: dict[str, Any] = {}
    closers: list[Callable[[], None]] = []
    judging: Judging | None = None
    encoder = None
    if s.injection_model_enabled or s.topics_enabled:
        from isthmus_core.onnx_embedder import OnnxEmbedder

        # one ONNX thread per run: a check is one short text, and runs of concurrent checks go in parallel
        encoder = OnnxEmbedder(max_tokens=s.encoder_max_tokens, intra_op_threads=1)
        closers.append(encoder.close)
    if s.injection_model_enabled and encoder is not None:
        from isthmus_guardrail.detector import load_default as load_injection_model

        checks["injection_model"] = load_injection_model(encoder)
    if s.topics_enabled and encoder is not None:
        from isthmus_guardrail.topics import load_default as load_topics

        checks["topics"] = load_topics(encoder)
    if s.grounding_model_enabled:
        from isthmus_core.onnx_reranker import OnnxCrossEncoder
        from isthmus_guardrail.entailment import load_default as load_grounding_model

        # the bundled ms-marco cross-encoder; a pair is one answer sentence and one cited sentence
        cross_encoder = OnnxCrossEncoder()
        closers.append(cross_encoder.close)
        checks["grounding_model"] = grounding = load_grounding_model(cross_encoder)
        judging = Judging(grounding, cross_encoder)
    if s.toxicity_enabled:
        from isthmus_guardrail.toxicity import load_default as load_toxicity

        checks["toxicity"] = load_toxicity()
    return checks, closers, judging


async def build(ctx: ModuleContext[GuardrailSettings]) -> Offer:
    from isthmus_guardrail.grounding import clear_word_caches
    from isthmus_guardrail.guard import Guard
    from isthmus_guardrail.pii import PiiDetector

    s = ctx.settings
    pii = await asyncio.to_thread(PiiDetector, s.spacy_model) if s.pii_enabled else None
    if pii is not None:
        register_cache("pii_findings", pii.cache_info)
    checks, closers, judging = await asyncio.to_thread(_checks, s)
    guard = Guard(pii, **checks)
    policies = PolicyStore(ctx.data_dir / "guardrail")  # policies.sqlite (migrates policies/*.json)
    closers.append(policies.close)

    async def close() -> None:
        for closer in closers:
            closer()

    tenants = GrpcTenantDirectory(ctx.channel("retrieval"))
    servicer = GuardrailServicer(
        guard,
        policies,
        publisher(ctx.bus, topics.GUARDRAIL_VERDICTS),
        s.max_text_chars,
        tenants,
        judging,
    )

    peers = ctx.common.peer_regions()

    async def on_tenant_deleted(ev: TenantDeleted) -> None:
        tenant = parse_tenant_id(ev.tenant_id)
        tenants.forget(tenant)
        policies.delete(tenant, written_before=ev.occurred_at)

    return Offer(
        registrars=[partial(guardrail_pb2_grpc.add_GuardrailServiceServicer_to_server, servicer)],
        on_stop=[close],
        grpc_service_names=[guardrail_pb2.DESCRIPTOR.services_by_name["GuardrailService"].full_name],
        subscriptions=[
            subscribe(topics.TENANTS_DELETED, TENANT_EVENTS_GROUP, on_tenant_deleted),
            # grounding's word caches are keyed by chunk and answer text: purged on every erasure (the
            # PII findings cache is keyed by a digest and holds no text)
            *purge_on_erasure(NAME, peers, [clear_word_caches]),
        ],
        topics=[
            topics.GUARDRAIL_VERDICTS,
            topics.TENANTS_DELETED,
            topics.ERASURES_REQUESTED,
            *replica_topics([topics.ERASURES_REQUESTED], peers),
        ],
    )


MODULE = Module(
    name=NAME,
    settings_cls=GuardrailSettings,
    build=build,
    depends_on=("retrieval",),
    description="injection, PII and grounding checks",
)
