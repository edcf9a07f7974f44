from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from isthmus_core.settings import SectionSettings, section_config


class RetrievalSettings(SectionSettings):
    section: ClassVar[str] = "retrieval"
    model_config = section_config("retrieval")

    store: Literal["embedded", "weaviate"] = Field(
        "embedded", description="embedded = on local disk (one machine); weaviate = a Weaviate server"
    )
    store_dir: Path | None = Field(None, description="embedded store location; default <data_dir>/store")
    weaviate_url: str = Field("", description="Weaviate HTTP endpoint, e.g. http://weaviate.data:8080")
    weaviate_grpc_port: int = Field(50051, ge=1, le=65535)
    weaviate_grpc_host: str = Field("", description="default: the host of weaviate_url")
    weaviate_api_key: SecretStr = Field(
        SecretStr(""), description="from a Secret (chart: weaviate.apiKeySecretRef)"
    )
    weaviate_collection: str = Field(
        "IsthmusChunks", pattern=r"^[A-Z][A-Za-z0-9_]{0,99}$", description="one collection per index"
    )
    weaviate_timeout_s: float = Field(10.0, gt=0, description="deadline of one query")
    weaviate_insert_timeout_s: float = Field(60.0, gt=0, description="deadline of one insert batch")
    weaviate_attempts: int = Field(3, ge=1, le=10, description="tries per call while Weaviate is unreachable")
    readiness_interval_s: float = Field(5.0, gt=0, description="how often the store's health is probed")
    default_top_k: int = Field(10, ge=1, le=1000)
    max_top_k: int = Field(1000, ge=1)
    max_query_chars: int = Field(4096, ge=1)
    hybrid_alpha: float = Field(0.5, ge=0.0, le=1.0)
    candidates: int = Field(100, ge=1, description="candidates per side for hybrid fusion")
    fusion: Literal["ranked", "relative_score"] = Field(
        "relative_score", description="default hybrid fusion (a request may choose)"
    )
    rerank: bool = Field(
        False,
        description="rerank by default with the cross-encoder (a request may choose); off: on the "
        "benchmarks it adds ~0.01 nDCG@10 at most for hundreds of ms per query (docs/benchmarks.md)",
    )
    query_cache_size: int = Field(
        4096, ge=0, description="distinct query texts whose vectors are kept (0: no query-vector cache)"
    )
    query_cache_ttl_s: float = Field(
        60.0, gt=0, description="how long a query's vector is kept (a model rollout shows within this)"
    )
    rerank_candidates: int = Field(20, ge=1, le=200, description="first-stage hits the cross-encoder scores")
    rerank_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="cross-encoder share of the blended score (1 = cross-encoder alone)"
    )

    @model_validator(mode="after")
    def _weaviate_needs_url(self) -> RetrievalSettings:
        if self.store == "weaviate" and not self.weaviate_url:
            raise ValueError("store=weaviate needs weaviate_url (ISTHMUS_RETRIEVAL_WEAVIATE_URL)")
        return self
