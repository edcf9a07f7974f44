from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, model_validator

from isthmus_core.settings import SectionSettings, section_config
from isthmus_ingestion.chunking.strategies import StrategyName, override_key_problem


def _override_key(key: str) -> str:
    problem = override_key_problem(key)
    if problem is not None:
        raise ValueError(problem)
    return key


#: a ``chunking_overrides`` key: ``<tenant>`` or ``<tenant>/<collection>``
OverrideKey = Annotated[str, AfterValidator(_override_key)]


class IngestionSettings(SectionSettings):
    section: ClassVar[str] = "ingestion"
    model_config = section_config("ingestion")

    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="larger uploads get RESOURCE_EXHAUSTED")
    chunk_max_tokens: int = Field(512, ge=16, le=512, description="bge-small reads at most 512 tokens")
    chunk_overlap_tokens: int = Field(64, ge=0)
    chunking: StrategyName = Field(
        "token",
        description="how documents are chunked: token (windows), sentence, markdown (heading-aware), "
        "semantic (embedding-similarity breakpoints), parent-child (small chunks indexed, their parent "
        "section answered from)",
    )
    chunking_overrides: dict[OverrideKey, StrategyName] = Field(
        default_factory=dict,
        description="'<tenant>' or '<tenant>/<collection>' -> strategy, overriding chunking (the collection "
        "is the upload metadata 'collection'; tenant/collection wins over tenant)",
    )
    chunking_child_max_tokens: int = Field(
        128, ge=16, le=512, description="parent-child: tokens of an indexed child chunk"
    )
    chunking_parent_max_tokens: int = Field(
        1024,
        ge=32,
        le=2048,
        description="parent-child: tokens of a parent section (answered from); every child carries its "
        "parent's text, so a chunk event of chunks_per_event children stays well under Kafka's 1 MiB",
    )
    chunking_semantic_percentile: float = Field(
        90.0,
        gt=0,
        lt=100,
        description="semantic: a chunk ends where neighbouring sentences are further apart than this "
        "percentile of the document's sentence distances",
    )
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

    @model_validator(mode="after")
    def _chunking_is_consistent(self) -> IngestionSettings:
        """Checks across the chunking settings, every problem found one per line."""
        problems = []
        if self.chunk_overlap_tokens >= self.chunk_max_tokens:
            problems.append(
                f"chunk_overlap_tokens ({self.chunk_overlap_tokens}) must be smaller than "
                f"chunk_max_tokens ({self.chunk_max_tokens})"
            )
        if self.chunking_child_max_tokens >= self.chunking_parent_max_tokens:
            problems.append(
                f"chunking_child_max_tokens ({self.chunking_child_max_tokens}) must be smaller than "
                f"chunking_parent_max_tokens ({self.chunking_parent_max_tokens})"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self
