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
    json_text_fields: list[str] = Field(
        ["text", "content", "body"],
        min_length=1,
        description="JSON/JSON Lines: the record fields holding the text (dotted paths for nested ones); "
        "an upload overrides them with its metadata json_text_fields (comma-separated)",
    )
    json_title_field: str = Field("title", description="JSON: the record field holding the title")
    json_metadata_fields: list[str] = Field(
        [], description="JSON: record fields kept as document metadata (a single record) or in the text"
    )
    max_child_depth: int = Field(
        2, ge=0, le=8, description="how deep documents inside documents (attachments of attachments) go"
    )
    max_child_documents: int = Field(
        1000, ge=0, description="attachments or mbox messages per upload; more is INVALID_ARGUMENT"
    )
    scan_chunks: bool = Field(
        True,
        description="the guardrail scans every chunk before it is indexed (tenant policy: block, redact "
        "or flag); off = chunks are indexed unscanned",
    )
