"""The agent-orchestrator module: Ask/AskStream over guardrail + retrieval + a generator."""

from __future__ import annotations

from functools import partial

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2, agent_orchestrator_pb2_grpc
from isthmus_agent_orchestrator.api import AgentOrchestratorServicer
from isthmus_agent_orchestrator.clients import GrpcGuardClient, GrpcSearcher
from isthmus_agent_orchestrator.pipeline import Orchestrator
from isthmus_agent_orchestrator.settings import OrchestratorSettings
from isthmus_core.bus.typed import publisher
from isthmus_core.contracts import topics
from isthmus_core.ports.generator import Generator
from isthmus_core.runtime.module import Hook, Module, ModuleContext, Offer
from isthmus_core.telemetry.caches import register_cache

NAME = "agent-orchestrator"


def make_generator(s: OrchestratorSettings) -> tuple[Generator, list[Hook]]:
    if s.generator == "openai":
        from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator

        gen = OpenAICompatibleGenerator(
            s.openai_base_url,
            s.openai_model,
            s.openai_api_key.get_secret_value() or None,
            timeout_s=s.openai_timeout_s,
            max_retries=s.openai_max_retries,
        )
        return gen, [gen.aclose]
    from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
    from isthmus_agent_orchestrator.sentences import spans_cache_info

    generator = ExtractiveGenerator()
    register_cache("sentence_spans", spans_cache_info)
    register_cache("sentence_terms", generator.cache_info)
    return generator, []


async def build(ctx: ModuleContext[OrchestratorSettings]) -> Offer:
    s = ctx.settings
    generator, stops = make_generator(s)
    core = Orchestrator(
        GrpcGuardClient(ctx.channel("guardrail")),
        GrpcSearcher(ctx.channel("retrieval")),
        generator,
        publisher(ctx.bus, topics.ANSWERS_PRODUCED),
        top_k=s.top_k,
        max_question_chars=s.max_question_chars,
        quotas=ctx.auth.quotas,
    )
    return Offer(
        registrars=[
            partial(
                agent_orchestrator_pb2_grpc.add_AgentOrchestratorServiceServicer_to_server,
                AgentOrchestratorServicer(core),
            )
        ],
        grpc_service_names=[
            agent_orchestrator_pb2.DESCRIPTOR.services_by_name["AgentOrchestratorService"].full_name
        ],
        topics=[topics.ANSWERS_PRODUCED],
        on_stop=stops,
    )


MODULE = Module(
    name=NAME,
    settings_cls=OrchestratorSettings,
    build=build,
    depends_on=("guardrail", "retrieval"),
    description="answers questions with citations",
)
