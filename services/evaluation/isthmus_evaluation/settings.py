from __future__ import annotations

from pathlib import Path
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
    datasets_root: Path | None = Field(
        None,
        description="RunEval reads datasets only under this directory (paths relative to it); "
        "unset: RunEval is refused, RunEvalUpload still works",
    )
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="RunEvalUpload: cap on a dataset's total size (all files)"
    )
