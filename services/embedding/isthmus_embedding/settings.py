from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from isthmus_core.settings import SectionSettings, section_config


class EmbeddingSettings(SectionSettings):
    section: ClassVar[str] = "embedding"
    model_config = section_config("embedding")

    model_dir: Path | None = Field(
        None,
        description="ONNX model dir (model.onnx + tokenizer.json); default: bundled bge-small-en-v1.5 int8",
    )
    query_prefix: str = "Represent this sentence for searching relevant passages: "
    max_tokens: int = Field(512, ge=8, le=8192)
    max_batch: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0)
    max_texts_per_request: int = Field(256, ge=1)
    max_text_chars: int = Field(100_000, ge=1)
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX threads per run (default 1)")
    parallel_runs: int | None = Field(
        None, ge=1, description="concurrent model runs (default: CPUs / threads)"
    )
    rows_per_run: int = Field(
        1, ge=1, description="texts per model run; 1 keeps int8 dynamic-quantised vectors batch-independent"
    )
    reranker_enabled: bool = Field(True, description="serve Rerank (cross-encoder) next to Embed")
    reranker_dir: Path | None = Field(
        None, description="cross-encoder ONNX dir; default: bundled ms-marco-MiniLM-L-12-v2 int8"
    )
    reranker_max_tokens: int = Field(512, ge=8, le=512, description="query + passage tokens per pair")
    max_rerank_passages: int = Field(200, ge=1, le=1000)
