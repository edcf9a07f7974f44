from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class RetrievalSettings(SectionSettings):
    section: ClassVar[str] = "retrieval"
    model_config = section_config("retrieval")

    store: Literal["embedded"] = Field("embedded", description="vector store adapter (weaviate: planned)")
    store_dir: Path | None = Field(None, description="embedded store location; default <data_dir>/store")
    default_top_k: int = Field(10, ge=1, le=1000)
    max_top_k: int = Field(1000, ge=1)
    max_query_chars: int = Field(4096, ge=1)
    hybrid_alpha: float = Field(0.5, ge=0.0, le=1.0)
    candidates: int = Field(100, ge=1, description="candidates per side for hybrid fusion")
