"""LLM providers for the agents (chat models) and for answers (generators): OpenAI-compatible
(:mod:`.openai_chat`), Anthropic Messages (:mod:`.anthropic`), AWS Bedrock Converse (:mod:`.bedrock`), the
resilience around them (:mod:`.resilience`) and the LLM planner/condenser/critic (:mod:`.llm_agents`).

Nothing is imported at import time beyond this module: the factories import a provider's SDK only when
the settings name it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from isthmus_agent_orchestrator.agents.providers.resilience import Resilience
    from isthmus_agent_orchestrator.agents.types import ChatModel
    from isthmus_agent_orchestrator.settings import OrchestratorSettings
    from isthmus_core.ports.generator import Generator

Stop = Callable[[], Awaitable[None]]


def _policy(provider: str, s: OrchestratorSettings, policies: dict[str, Resilience] | None) -> Resilience:
    from isthmus_agent_orchestrator.agents.providers.resilience import Resilience

    if policies is not None and provider in policies:
        return policies[provider]
    policy = Resilience(
        provider,
        timeout_s=s.provider_timeout_s,
        max_retries=s.provider_max_retries,
        breaker_failures=s.breaker_failures,
        breaker_reset_s=s.breaker_reset_s,
    )
    if policies is not None:
        policies[provider] = policy
    return policy


def _chain(first: str, s: OrchestratorSettings) -> list[str]:
    return list(
        dict.fromkeys(p for p in (first, *s.chat_fallback) if p in ("openai", "anthropic", "bedrock"))
    )


def build_chat_model(
    s: OrchestratorSettings,
    stops: list[Stop] | None = None,
    policies: dict[str, Resilience] | None = None,
) -> ChatModel | None:
    """The agents' chat model: ``chat_provider`` then ``chat_fallback`` in order, each behind its
    time-out/retries/circuit breaker; ``None`` when ``chat_provider`` is ``none``. Clients to close are
    added to ``stops``; pass the same ``policies`` to :func:`build_generator` so a provider's chat model
    and generator share one circuit."""
    from isthmus_agent_orchestrator.agents.providers.resilience import FallbackChatModel, ResilientChatModel

    if s.chat_provider == "none":
        return None
    models: list[ChatModel] = []
    for provider in _chain(s.chat_provider, s):
        model: ChatModel
        if provider == "openai":
            from isthmus_agent_orchestrator.agents.providers.openai_chat import OpenAIChatModel

            openai = OpenAIChatModel(
                s.openai_base_url,
                s.openai_model,
                s.openai_api_key.get_secret_value() or None,
                timeout_s=s.provider_timeout_s,
            )
            model, stop = openai, openai.aclose
        elif provider == "anthropic":
            from isthmus_agent_orchestrator.agents.providers.anthropic import AnthropicChatModel

            claude = AnthropicChatModel(
                s.anthropic_model,
                s.anthropic_api_key.get_secret_value(),
                base_url=s.anthropic_base_url,
                timeout_s=s.provider_timeout_s,
            )
            model, stop = claude, claude.aclose
        else:
            from isthmus_agent_orchestrator.agents.providers.bedrock import BedrockChatModel

            model = BedrockChatModel(
                s.bedrock_model,
                region=s.bedrock_region,
                endpoint_url=s.bedrock_endpoint_url,
                timeout_s=s.provider_timeout_s,
            )
            stop = None
        if stops is not None and stop is not None:
            stops.append(stop)
        models.append(ResilientChatModel(model, _policy(provider, s, policies)))
    return models[0] if len(models) == 1 else FallbackChatModel(models)


def build_generator(
    s: OrchestratorSettings,
    stops: list[Stop] | None = None,
    policies: dict[str, Resilience] | None = None,
) -> Generator | None:
    """The answer generator for ``generator`` = openai/anthropic/bedrock, then the ``chat_fallback``
    providers in order, each behind its time-out/retries/circuit breaker (``None`` for ``extractive``).
    Clients to close are added to ``stops``."""
    from isthmus_agent_orchestrator.agents.providers.resilience import FallbackGenerator, ResilientGenerator

    if s.generator == "extractive":
        return None
    generators: list[Generator] = []
    for provider in _chain(s.generator, s):
        generator: Generator
        if provider == "openai":
            from isthmus_agent_orchestrator.openai_compat import OpenAICompatibleGenerator

            openai = OpenAICompatibleGenerator(
                s.openai_base_url,
                s.openai_model,
                s.openai_api_key.get_secret_value() or None,
                timeout_s=s.provider_timeout_s,
                max_retries=0,  # the policy retries
                stream=s.openai_stream,
            )
            generator, stop = openai, openai.aclose
        elif provider == "anthropic":
            from isthmus_agent_orchestrator.agents.providers.anthropic import AnthropicGenerator

            claude = AnthropicGenerator(
                s.anthropic_model,
                s.anthropic_api_key.get_secret_value(),
                base_url=s.anthropic_base_url,
                timeout_s=s.provider_timeout_s,
            )
            generator, stop = claude, claude.aclose
        else:
            from isthmus_agent_orchestrator.agents.providers.bedrock import BedrockGenerator

            generator = BedrockGenerator(
                s.bedrock_model,
                region=s.bedrock_region,
                endpoint_url=s.bedrock_endpoint_url,
                timeout_s=s.provider_timeout_s,
            )
            stop = None
        if stops is not None and stop is not None:
            stops.append(stop)
        generators.append(ResilientGenerator(generator, _policy(provider, s, policies)))
    return generators[0] if len(generators) == 1 else FallbackGenerator(generators)
