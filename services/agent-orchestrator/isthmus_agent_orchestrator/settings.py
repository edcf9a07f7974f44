from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from isthmus_core.settings import SectionSettings, section_config


class OrchestratorSettings(SectionSettings):
    section: ClassVar[str] = "agent-orchestrator"
    model_config = section_config("agent-orchestrator")

    generator: Literal["extractive", "openai"] = Field(
        "extractive",
        description="extractive = offline, citation-grounded; openai = any OpenAI-compatible API",
    )
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = ""
    openai_api_key: SecretStr = SecretStr("")
    openai_timeout_s: float = Field(30.0, gt=0)
    openai_max_retries: int = Field(3, ge=0)
    top_k: int = Field(5, ge=1, le=50, description="contexts handed to the generator")
    max_question_chars: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _openai_needs_model(self) -> OrchestratorSettings:
        if self.generator == "openai" and not self.openai_model:
            raise ValueError("generator=openai needs openai_model (ISTHMUS_AGENT_ORCHESTRATOR_OPENAI_MODEL)")
        return self
