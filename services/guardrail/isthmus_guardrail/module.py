"""The guardrail module: injection/PII input checks, grounding output checks, verdict events."""

from __future__ import annotations

import asyncio
from functools import partial

from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus_core.bus.typed import publisher
from isthmus_core.contracts import topics
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_guardrail.api import GuardrailServicer
from isthmus_guardrail.policies import PolicyStore
from isthmus_guardrail.settings import GuardrailSettings

NAME = "guardrail"


async def build(ctx: ModuleContext[GuardrailSettings]) -> Offer:
    from isthmus_guardrail.guard import Guard
    from isthmus_guardrail.pii import PiiDetector

    s = ctx.settings
    pii = await asyncio.to_thread(PiiDetector, s.spacy_model) if s.pii_enabled else None
    servicer = GuardrailServicer(
        Guard(pii),
        PolicyStore(ctx.data_dir / "guardrail" / "policies"),
        publisher(ctx.bus, topics.GUARDRAIL_VERDICTS),
        s.max_text_chars,
    )
    return Offer(
        registrars=[partial(guardrail_pb2_grpc.add_GuardrailServiceServicer_to_server, servicer)],
        grpc_service_names=[guardrail_pb2.DESCRIPTOR.services_by_name["GuardrailService"].full_name],
        topics=[topics.GUARDRAIL_VERDICTS],
    )


MODULE = Module(
    name=NAME, settings_cls=GuardrailSettings, build=build, description="injection, PII and grounding checks"
)
