"""The agent-orchestrator module: Ask/AskStream over guardrail + retrieval + a generator, run by the
agent graphs (agents/), with approvals, conversations, episodic memory, prompt versions, the answer cache
and prices; its SQLite state lives in ``<data_dir>/agent-orchestrator/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2, agent_orchestrator_pb2_grpc
from isthmus_agent_orchestrator.api import AgentOrchestratorServicer
from isthmus_agent_orchestrator.clients import GrpcGuardClient, GrpcSearcher
from isthmus_agent_orchestrator.pipeline import Answer, Orchestrator
from isthmus_agent_orchestrator.settings import OrchestratorSettings
from isthmus_core.bus.purge import purge_on_erasure
from isthmus_core.bus.replication import replica_topics
from isthmus_core.bus.typed import publisher
from isthmus_core.contracts import topics
from isthmus_core.contracts.topics import AnyTopic
from isthmus_core.ports.generator import Generator
from isthmus_core.runtime.module import Hook, Module, ModuleContext, Offer
from isthmus_core.telemetry.caches import register_cache

NAME = "agent-orchestrator"


def make_generator(
    s: OrchestratorSettings,
    caches: list[Callable[[], None]] | None = None,
    policies: dict[str, Any] | None = None,
) -> tuple[Generator, list[Hook]]:
    """The configured generator and its stop hooks; the content caches it keeps are added to ``caches``
    (purged on every erasure). ``policies``: the providers' resilience, shared with the chat model so a
    provider has one circuit breaker."""
    if s.generator in ("anthropic", "bedrock") or (s.generator == "openai" and s.chat_fallback):
        # behind the providers' time-out, retries and circuit breaker, then the fallback chain
        from isthmus_agent_orchestrator.agents.providers import build_generator

        hooks: list[Hook] = []
        built = build_generator(s, hooks, policies)
        assert built is not None  # not extractive
        return built, hooks
    if s.generator == "openai":
        from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator

        gen = OpenAICompatibleGenerator(
            s.openai_base_url,
            s.openai_model,
            s.openai_api_key.get_secret_value() or None,
            timeout_s=s.openai_timeout_s,
            max_retries=s.openai_max_retries,
            stream=s.openai_stream,
        )
        return gen, [gen.aclose]
    from isthmus_agent_orchestrator.extractive import ExtractiveGenerator
    from isthmus_agent_orchestrator.sentences import clear_spans_cache, spans_cache_info

    generator = ExtractiveGenerator()
    register_cache("sentence_spans", spans_cache_info)
    register_cache("sentence_terms", generator.cache_info)
    if caches is not None:
        caches += [clear_spans_cache, generator.clear_cache]
    return generator, []


def made_with(s: OrchestratorSettings) -> tuple[str, str]:
    """The generator's model and the version of its prompt, for answers' provenance ("" if none)."""
    from isthmus_agent_orchestrator.openai_compat import PROMPT_VERSION

    match s.generator:
        case "openai":
            return s.openai_model, PROMPT_VERSION
        case "anthropic":
            return s.anthropic_model, PROMPT_VERSION
        case "bedrock":
            return s.bedrock_model, PROMPT_VERSION
        case _:
            return "", ""


def make_embed(channel: Any) -> Callable[[Sequence[str]], Awaitable[list[list[float]]]]:
    """Texts → query vectors over the embedding service (the semantic cache, episodic memory)."""
    from isthmus_core.clients.embedding import GrpcQueryEmbedder

    embedder = GrpcQueryEmbedder(channel)

    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return [list((await embedder.embed_query(t)).vector) for t in texts]

    return embed


async def build(ctx: ModuleContext[OrchestratorSettings]) -> Offer:
    from isthmus_agent_orchestrator.agents.caches import Coalescer, TenantResponseCache, invalidation_topics
    from isthmus_agent_orchestrator.agents.checkpoint import (
        CheckpointPurger,
        open_sqlite_checkpointer,
        runs_path,
    )
    from isthmus_agent_orchestrator.agents.cost import PriceMeter
    from isthmus_agent_orchestrator.agents.critic import Critic, HeuristicCritic
    from isthmus_agent_orchestrator.agents.graphs import GRAPHS
    from isthmus_agent_orchestrator.agents.memory.condense import HeuristicCondenser
    from isthmus_agent_orchestrator.agents.memory.conversations import SqliteConversationStore
    from isthmus_agent_orchestrator.agents.memory.episodic import SqliteEpisodicMemory
    from isthmus_agent_orchestrator.agents.planner import HeuristicPlanner
    from isthmus_agent_orchestrator.agents.prompts import SqlitePromptBook, prompt_topics
    from isthmus_agent_orchestrator.agents.providers import build_chat_model
    from isthmus_agent_orchestrator.agents.providers.llm_agents import LlmCondenser, LlmCritic, LlmPlanner
    from isthmus_agent_orchestrator.agents.runtime import AgentRuntime
    from isthmus_agent_orchestrator.agents.tools.approvals import SqliteApprovalBook, approval_topics
    from isthmus_agent_orchestrator.agents.tools.registry import TenantToolRegistry
    from isthmus_agent_orchestrator.agents.types import Condenser, Planner, RunBudget

    s = ctx.settings
    peers = ctx.common.peer_regions()
    base = ctx.common.data_dir / NAME
    caches: list[Callable[[], None]] = []
    policies: dict[str, Any] = {}  # one time-out/retry/breaker policy per provider, chat and answers alike
    generator, stops = make_generator(s, caches, policies)
    generator_model, prompt_version = made_with(s)
    chat = build_chat_model(s, stops, policies)
    embed = make_embed(ctx.channel("embedding"))
    searcher = GrpcSearcher(ctx.channel("retrieval"))

    planner: Planner = HeuristicPlanner()
    condenser: Condenser = HeuristicCondenser()
    critic: Critic = HeuristicCritic()
    if chat is not None:
        condenser = LlmCondenser(chat, condenser)
        critic = LlmCritic(chat, critic)
        if s.planner == "llm":
            planner = LlmPlanner(chat, planner)
    approvals = SqliteApprovalBook(
        base / "approvals.sqlite",
        timeout_s=s.approval_timeout_s,
        publish_requested=publisher(ctx.bus, topics.APPROVALS_REQUESTED),
        publish_decided=publisher(ctx.bus, topics.APPROVALS_DECIDED),
    )
    conversations = SqliteConversationStore(base / "memory.sqlite", ttl_s=s.session_ttl_s)
    episodic = SqliteEpisodicMemory(base / "episodic.sqlite", embed=embed, tenants=s.episodic_tenants)
    prompts = SqlitePromptBook(
        base / "prompts.sqlite",
        publish_created=publisher(ctx.bus, topics.PROMPTS_CREATED),
        publish_split=publisher(ctx.bus, topics.PROMPTS_SPLIT),
    )
    cache = TenantResponseCache(
        max_entries=s.cache_max_entries,
        ttl_s=s.cache_ttl_s,
        semantic_threshold=s.semantic_cache_threshold,
        embed=embed,
        enabled=s.cache_enabled,
    )
    register_cache("agent_answers", cache.cache_info)
    cost = PriceMeter(s.prices, publisher(ctx.bus, topics.USAGE_RECORDED))
    tools = TenantToolRegistry(s, searcher)
    saver, close_saver = await open_sqlite_checkpointer(runs_path(ctx.common.data_dir))
    runtime = AgentRuntime(
        tools=tools,
        generator=generator,
        approvals=approvals,
        chat=chat,
        planner=planner,
        critic=critic,
        cost=cost,
        budget=RunBudget(s.budget_max_steps, s.budget_max_tokens, s.budget_max_wall_s, s.budget_max_cost_usd),
        checkpointer=saver,
        max_sub_questions=s.max_sub_questions,
        reflect_max_retries=s.reflect_max_retries,
        subagent_max_depth=s.subagent_max_depth,
    )
    tools.bind_run_graph(runtime.run_graph)
    # paused runs' checkpoints hold retrieved passages: deleted on an erasure or the tenant's deletion
    runs_purger = CheckpointPurger(saver, live=runtime.live_runs)
    runtime.warm()  # LangGraph's import and the graphs' compilation at start, not at the first question
    core = Orchestrator(
        GrpcGuardClient(ctx.channel("guardrail")),
        searcher,
        generator,
        publisher(ctx.bus, topics.ANSWERS_PRODUCED),
        top_k=s.top_k,
        max_question_chars=s.max_question_chars,
        generator_model=generator_model,
        prompt_version=prompt_version,
        quotas=ctx.auth.quotas,
        runtime=runtime,
        default_graph=s.default_graph,
        tenant_graphs=s.tenant_graphs,
        conversations=conversations,
        condenser=condenser,
        session_turns=s.session_turns,
        episodic=episodic,
        episodic_k=s.episodic_k,
        prompts=prompts,
        cache=cache,
        cost=cost,
        coalescer=Coalescer[Answer]() if s.cache_enabled else None,
        sample_rate=s.eval_sample_rate,
        sample_rates=s.eval_sample_rates,
        model_bundle=ctx.common.model_bundle,
    )
    servicer = AgentOrchestratorServicer(
        core,
        approvals=approvals,
        graphs=GRAPHS,
        default_graph=core.graph_of,
        tools=tools,
        prompts=prompts,
    )

    def close_stores() -> None:
        for store in (conversations, episodic, prompts, approvals):
            store.close()

    async def stop_stores() -> None:
        await close_saver()
        close_stores()

    return Offer(
        registrars=[
            partial(agent_orchestrator_pb2_grpc.add_AgentOrchestratorServiceServicer_to_server, servicer)
        ],
        grpc_service_names=[
            agent_orchestrator_pb2.DESCRIPTOR.services_by_name["AgentOrchestratorService"].full_name
        ],
        subscriptions=[
            # chunk texts in the sentence caches: purged on every erasure, in every replica
            *purge_on_erasure(NAME, peers, caches),
            *cache.subscriptions(NAME, peers),
            *approvals.subscriptions(NAME, peers),
            *prompts.subscriptions(NAME, peers),
            *runs_purger.subscriptions(NAME, peers),
            *conversations.subscriptions(NAME, peers),
            *episodic.subscriptions(NAME, peers),
        ],
        topics=_distinct(
            [
                topics.ANSWERS_PRODUCED,
                topics.USAGE_RECORDED,
                topics.ERASURES_REQUESTED,
                topics.TENANTS_DELETED,
                *replica_topics([topics.ERASURES_REQUESTED], peers),
                *invalidation_topics(peers),
                *approval_topics(peers),
                *prompt_topics(),
            ]
        ),
        on_stop=[*stops, stop_stores],
    )


def _distinct(specs: Sequence[AnyTopic]) -> list[AnyTopic]:
    """Each topic once (several stores subscribe to the erasure and tenant topics)."""
    return list({t.name: t for t in specs}.values())


MODULE = Module(
    name=NAME,
    settings_cls=OrchestratorSettings,
    build=build,
    depends_on=("guardrail", "retrieval", "embedding"),
    description="answers questions with citations",
)
