from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator

from isthmus_core.settings import SectionSettings, section_config
from isthmus_ingestion.chunking.strategies import StrategyName, override_key_problem
from isthmus_ingestion.objects import DEFAULT_MAX_INLINE_BYTES, MAX_INLINE_BYTES_CEILING


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

    max_upload_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1,
        description="larger uploads get RESOURCE_EXHAUSTED; also the limit of a document sent by reference "
        "(content_uri), checked before it is read",
    )
    max_inline_bytes: int = Field(
        DEFAULT_MAX_INLINE_BYTES,
        ge=1,
        le=MAX_INLINE_BYTES_CEILING,
        description="the largest document carried inline (content) in a documents.submitted event; larger "
        "ones are dead-lettered: send them by reference (content_uri). At most 6 MiB - 256 KiB, so the "
        "base64 in the event's JSON stays below the bus's 8 MiB message limit",
    )
    object_store: Literal["local", "s3"] = Field(
        "local", description="where documents sent by reference (content_uri) are read: local or s3"
    )
    object_store_dir: Path | None = Field(
        None, description="the local object store's directory; default <data_dir>/ingestion/objects"
    )
    object_store_s3_bucket: str = Field("", max_length=63, description="the bucket (object_store = s3)")
    object_store_s3_prefix: str = Field(
        "", max_length=512, description="the key prefix in the bucket ('' or ending in '/')"
    )
    object_store_s3_endpoint_url: str = Field(
        "", description="an S3-compatible endpoint (MinIO, Ceph...); '' = AWS S3"
    )
    object_store_s3_region: str = Field("", description="the bucket's region; '' = the AWS default chain's")
    object_store_timeout_s: float = Field(
        30.0, gt=0, le=600, description="connect and read time-out of one object store call"
    )
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

    @field_validator("object_store_s3_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if value and (not value.endswith("/") or value.startswith("/") or "//" in value):
            raise ValueError("a prefix is '' or a relative folder ending in '/', e.g. 'isthmus/'")
        return value

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Self:
        if self.object_store == "s3" and not self.object_store_s3_bucket:
            raise ValueError("object_store = 's3' needs object_store_s3_bucket")
        return self

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
