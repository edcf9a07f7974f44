from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from isthmus_core.settings import SectionSettings, section_config

#: the graphs the orchestrator ships (agents/graphs.py)
GraphName = Literal["rag", "react", "plan-execute", "reflect"]
Provider = Literal["openai", "anthropic", "bedrock"]


class Price(BaseModel):
    """USD per 1,000 tokens of one model."""

    model_config = ConfigDict(extra="forbid")

    prompt_per_1k: float = Field(0.0, ge=0)
    completion_per_1k: float = Field(0.0, ge=0)


class OrchestratorSettings(SectionSettings):
    section: ClassVar[str] = "agent-orchestrator"
    model_config = section_config("agent-orchestrator")

    generator: Literal["extractive", "openai", "anthropic", "bedrock"] = Field(
        "extractive",
        description="extractive = offline, citation-grounded; openai = any OpenAI-compatible API; "
        "anthropic = the Anthropic Messages API; bedrock = AWS Bedrock Converse",
    )
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = ""
    openai_api_key: SecretStr = SecretStr("")
    openai_timeout_s: float = Field(30.0, gt=0)
    openai_max_retries: int = Field(3, ge=0)
    openai_stream: bool = Field(
        True,
        description="stream answers; false = ask for each answer whole (its sentences still pass the output "
        "guardrail one by one), for servers that report no token usage in streams (llama.cpp's Python "
        "server): its usage is then the server's count, not an estimate",
    )
    top_k: int = Field(5, ge=1, le=50, description="contexts handed to the generator")
    max_question_chars: int = Field(2000, ge=1)

    # ---- agent graphs -------------------------------------------------------------------------------
    default_graph: GraphName = Field("rag", description="the graph of requests that name none")
    tenant_graphs: dict[str, GraphName] = Field(
        default_factory=dict, description="a tenant's default graph, overriding default_graph"
    )
    planner: Literal["heuristic", "llm"] = Field(
        "heuristic", description="plan-execute's planner: heuristic (deterministic) or llm (chat_provider)"
    )
    max_sub_questions: int = Field(4, ge=1, le=8)
    reflect_max_retries: int = Field(1, ge=0, le=3)
    budget_max_steps: int = Field(16, ge=1, le=200, description="agent steps per run")
    budget_max_tokens: int = Field(20_000, ge=1, description="LLM tokens per run")
    budget_max_wall_s: float = Field(60.0, gt=0, description="wall time per run (approval waits excluded)")
    budget_max_cost_usd: float = Field(0.0, ge=0, description="USD per run; 0 = no limit")

    # ---- chat models (the agents' own LLM: planning, tool choice, condensing, critique) ---------------
    chat_provider: Literal["none", "openai", "anthropic", "bedrock"] = Field(
        "none", description="none = deterministic agents only (heuristic planner, condenser, critic)"
    )
    chat_fallback: list[Provider] = Field(
        default_factory=list, description="providers tried in order when chat_provider fails"
    )
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_model: str = ""
    anthropic_api_key: SecretStr = SecretStr("")
    bedrock_region: str = "us-east-1"
    bedrock_model: str = ""
    bedrock_endpoint_url: str = Field("", description="empty = the region's public endpoint")
    provider_timeout_s: float = Field(30.0, gt=0)
    provider_max_retries: int = Field(2, ge=0, le=10)
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open a circuit")
    breaker_reset_s: float = Field(30.0, gt=0, description="how long an open circuit refuses calls")

    # ---- tools ------------------------------------------------------------------------------------------
    tool_timeout_s: float = Field(10.0, gt=0)
    sensitive_tools: list[str] = Field(
        default_factory=lambda: ["http_get"], description="tools whose every call needs an approval"
    )
    tool_graphs: dict[str, list[str]] = Field(
        default_factory=dict, description="tool -> the graphs that may call it (absent = every graph)"
    )
    approval_timeout_s: float = Field(3600.0, gt=0, description="an approval not decided by then expires")
    http_get_enabled: bool = Field(False, description="the http_get tool (off by default)")
    http_get_allow: list[str] = Field(
        default_factory=list, description="URL prefixes http_get may fetch (scheme://host[:port]/path)"
    )
    http_get_max_bytes: int = Field(200_000, ge=1)
    subagent_max_depth: int = Field(2, ge=0, le=4)

    # ---- memory ----------------------------------------------------------------------------------------
    session_turns: int = Field(6, ge=1, le=50, description="earlier turns a follow-up is condensed with")
    session_ttl_s: float = Field(7 * 24 * 3600.0, gt=0)
    episodic_tenants: list[str] = Field(
        default_factory=list, description="tenants that opted in to episodic memory ('*' = every tenant)"
    )
    episodic_k: int = Field(3, ge=1, le=20)

    # ---- caches ------------------------------------------------------------------------------------------
    cache_enabled: bool = True
    cache_max_entries: int = Field(2048, ge=1)
    cache_ttl_s: float = Field(3600.0, gt=0)
    semantic_cache_threshold: float = Field(
        1.0,
        gt=0,
        le=1,
        description="cosine similarity of two questions' embeddings above which a cached answer is reused; "
        "1 = off (the default: questions with different answers, 'when does it open?' and 'when does it "
        "close?', can score nearly as high as paraphrases — opt in with a threshold measured on your own "
        "questions)",
    )

    # ---- online evaluation -------------------------------------------------------------------------------
    eval_sample_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of answers whose content (question, answer, contexts) rides on their "
        "answers.produced event for online evaluation (chosen by a hash of the answer id); 0 = none",
    )
    eval_sample_rates: dict[str, float] = Field(
        default_factory=dict, description="tenant -> its own sample rate (0..1), overriding eval_sample_rate"
    )

    # ---- cost --------------------------------------------------------------------------------------------
    prices: dict[str, Price] = Field(
        default_factory=dict, description="model -> USD per 1,000 prompt and completion tokens"
    )

    @model_validator(mode="after")
    def _providers_need_models(self) -> OrchestratorSettings:
        errors: list[str] = []
        used = {self.generator, self.chat_provider, *self.chat_fallback}
        if "openai" in used and not self.openai_model:
            errors.append("openai needs openai_model (ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_MODEL)")
        if "anthropic" in used and not self.anthropic_model:
            errors.append("anthropic needs anthropic_model (ISTHMUS_AGENT_ORCHESTRATOR_ANTHROPIC_MODEL)")
        if "bedrock" in used and not self.bedrock_model:
            errors.append("bedrock needs bedrock_model (ISTHMUS_AGENT_ORCHESTRATOR_BEDROCK_MODEL)")
        if self.planner == "llm" and self.chat_provider == "none":
            errors.append("planner=llm needs a chat_provider")
        if errors:
            raise ValueError("; ".join(errors))
        return self
