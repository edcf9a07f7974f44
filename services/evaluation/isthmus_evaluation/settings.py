from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class EvaluationSettings(SectionSettings):
    section: ClassVar[str] = "evaluation"
    model_config = section_config("evaluation")

    upload_concurrency: int = Field(8, ge=1, le=64)
    search_concurrency: int = Field(4, ge=1, le=64)
    index_timeout_s: float = Field(
        3600.0, gt=0, description="how long RunEval waits for the corpus to be indexed"
    )
    top_k: int = Field(100, ge=10, le=1000)
