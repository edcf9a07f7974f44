"""What both store adapters check the same way: records, queries, vectors and tenant names.

Pure functions (values in, :class:`~isthmus_core.errors.InvalidArgument` out), so the embedded store and
the Weaviate adapter reject exactly the same inputs with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from isthmus_core.contracts.ids import TENANT_ID_RULE, TenantId, is_tenant_id
from isthmus_core.errors import InvalidArgument
from isthmus_core.store.port import ChunkRecord, Fusion, SearchMode, SearchQuery


def validate_tenant_id(tenant_id: str) -> TenantId:
    """The stores' own check of a tenant name: exactly the platform's rule
    (:data:`~isthmus_core.contracts.ids.TENANT_ID_PATTERN`), so both adapters accept what every service
    accepts and nothing more (Weaviate's own rule is wider: upper case, '_', 64 characters)."""
    if not is_tenant_id(tenant_id):
        raise InvalidArgument(f"invalid tenant id {tenant_id!r}: {TENANT_ID_RULE}")
    return TenantId(tenant_id)


def validate_record(r: ChunkRecord) -> None:
    """Field checks that need no knowledge of the tenant (its dimension and model come later)."""
    if not isinstance(r.chunk_id, str) or not r.chunk_id:
        raise InvalidArgument("every chunk needs a non-empty chunk_id")
    where = f"chunk {r.chunk_id!r}"
    if not isinstance(r.document_id, str) or not r.document_id:
        raise InvalidArgument(f"{where} has no document_id")
    if not isinstance(r.text, str) or not r.text.strip():
        raise InvalidArgument(f"{where} has empty text; only chunks with text can be indexed")
    if not isinstance(r.model_id, str) or not r.model_id:
        raise InvalidArgument(f"{where} has no model_id; say which embedding model made its vector")
    if r.chunk_index < 0:
        raise InvalidArgument(f"{where} has a negative chunk_index ({r.chunk_index})")
    if r.start < 0 or r.end < r.start:
        raise InvalidArgument(f"{where} has an invalid span: start={r.start}, end={r.end}")
    if len(r.vector) == 0:
        raise InvalidArgument(f"{where} has an empty vector")
    for name, value in r.metadata.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise InvalidArgument(
                f"{where}: metadata maps non-empty string keys to strings; got {name!r}: {value!r}"
            )


def as_vector(values: Sequence[float], what: str) -> npt.NDArray[np.float32]:
    """A finite, non-zero float32 vector, or InvalidArgument naming ``what``."""
    try:
        vector = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what}: a vector must be a flat list of numbers") from None
    if vector.ndim != 1:
        raise InvalidArgument(f"{what}: a vector must be a flat list of numbers")
    if not np.all(np.isfinite(vector)):
        raise InvalidArgument(f"{what}: the vector contains NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise InvalidArgument(f"{what}: the vector has zero length; cosine similarity is undefined for it")
    return vector


@dataclass(frozen=True, slots=True)
class IndexShape:
    """What a tenant's index holds: vectors of one dimension from one embedding model."""

    dimension: int
    model_id: str


def check_against(r: ChunkRecord, shape: IndexShape, origin: str) -> None:
    """InvalidArgument naming both values when ``r`` does not fit ``shape`` (``origin`` says who set it)."""
    if r.model_id != shape.model_id:
        raise InvalidArgument(
            f"chunk {r.chunk_id!r} was embedded with model {r.model_id!r} but {origin} vectors of "
            f"model {shape.model_id!r}; re-embed it with {shape.model_id!r} or use another tenant"
        )
    if len(r.vector) != shape.dimension:
        raise InvalidArgument(
            f"chunk {r.chunk_id!r} has a vector of dimension {len(r.vector)} but {origin} vectors "
            f"of dimension {shape.dimension}"
        )


def check_query(query: SearchQuery) -> tuple[SearchMode, Fusion]:
    try:
        mode = SearchMode(query.mode)
    except ValueError:
        raise InvalidArgument(
            f"unknown search mode {query.mode!r}; use one of {[m.value for m in SearchMode]}"
        ) from None
    try:
        fusion = Fusion(query.fusion)
    except ValueError:
        raise InvalidArgument(
            f"unknown fusion {query.fusion!r}; use one of {[f.value for f in Fusion]}"
        ) from None
    if query.top_k < 1:
        raise InvalidArgument(f"top_k must be at least 1, got {query.top_k}")
    if query.candidates < 1:
        raise InvalidArgument(f"candidates must be at least 1, got {query.candidates}")
    if not 0.0 <= query.alpha <= 1.0:
        raise InvalidArgument(f"alpha must be between 0 and 1, got {query.alpha}")
    if mode is SearchMode.BM25 and not query.text.strip():
        raise InvalidArgument("a bm25 search needs query text")
    if mode is not SearchMode.BM25 and query.vector is None:
        raise InvalidArgument(f"a {mode.value} search needs a query vector")
    for name, value in query.filters.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument(f"filters map metadata keys to string values; got {name!r}: {value!r}")
    if isinstance(query.principals, str | bytes) or not isinstance(query.principals, Sequence):
        # None once meant "no ACL check"; that mode is gone, so refuse it rather than guess
        raise InvalidArgument(f"principals must be a sequence of strings, got {query.principals!r}")
    if any(not isinstance(p, str) or not p.strip() for p in query.principals):
        raise InvalidArgument("principals must be non-empty strings")
    return mode, fusion


def check_query_vector(tenant_id: str, query: SearchQuery, shape: IndexShape | None) -> None:
    """The query's vector must come from the tenant's model and have its dimension."""
    if query.vector is None or shape is None:
        return
    if query.model_id is not None and query.model_id != shape.model_id:
        raise InvalidArgument(
            f"the query was embedded with model {query.model_id!r} but tenant {tenant_id!r} "
            f"holds vectors of model {shape.model_id!r}"
        )
    if len(query.vector) != shape.dimension:
        raise InvalidArgument(
            f"the query vector has dimension {len(query.vector)} but tenant {tenant_id!r} "
            f"holds vectors of dimension {shape.dimension}"
        )
