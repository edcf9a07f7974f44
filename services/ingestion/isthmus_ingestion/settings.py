from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class IngestionSettings(SectionSettings):
    section: ClassVar[str] = "ingestion"
    model_config = section_config("ingestion")

    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="larger uploads get RESOURCE_EXHAUSTED")
    chunk_max_tokens: int = Field(512, ge=16, le=512, description="bge-small reads at most 512 tokens")
    chunk_overlap_tokens: int = Field(64, ge=0)
    chunks_per_event: int = Field(32, ge=1, le=512, description="chunks per chunks.created event")
    tokenizer_file: Path | None = Field(None, description="default: the bundled bge-small tokenizer.json")
    erasure_subject_key: str = Field(
        "data_subject",
        min_length=1,
        max_length=256,
        description="the upload metadata key naming a document's data subject (Erase --data-subject)",
    )
    scan_chunks: bool = Field(
        True,
        description="the guardrail scans every chunk before it is indexed (tenant policy: block, redact "
        "or flag); off = chunks are indexed unscanned",
    )
