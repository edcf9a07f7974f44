"""The vector store port: per-tenant chunk storage with dense, BM25 and hybrid search.

Shaped after what Weaviate offers natively so the production adapter is a straight mapping:
multi-tenancy (a tenant is created and deleted explicitly, never by a write), self-provided vectors
tagged with the embedding model, BM25, hybrid with ``alpha`` and a fusion type, and equality filters on
metadata applied inside the query. Conformance: :mod:`isthmus_core.testing.store_conformance`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from isthmus_core.errors import InvalidArgument

_NAMESPACE = uuid.UUID("6f0c3c1e-7f2a-4c55-9a55-1b1d5e3a9c01")


def chunk_uuid(tenant_id: str, document_id: str, chunk_index: int) -> str:
    """Deterministic object id: a replayed chunk overwrites instead of duplicating."""
    return str(uuid.uuid5(_NAMESPACE, f"{tenant_id}\x1f{document_id}\x1f{chunk_index}"))


#: document ACL: the metadata key (set at upload, copied to every chunk) listing the principals — users or
#: groups — allowed to read the document, comma-separated. A chunk without it is visible to everyone in
#: its tenant. A search only sees chunks whose ACL is empty or names one of its ``principals`` (no
#: principals: only chunks without an ACL; there is no unchecked mode).
ACL_METADATA_KEY = "acl"


def acl_of(metadata: Mapping[str, str]) -> list[str]:
    """The principals of a chunk's ACL (sorted, unique; empty = visible to the whole tenant)."""
    return sorted({p.strip() for p in metadata.get(ACL_METADATA_KEY, "").split(",") if p.strip()})


class SearchMode(StrEnum):
    BM25 = "bm25"
    DENSE = "dense"
    HYBRID = "hybrid"


class Fusion(StrEnum):
    RANKED = "ranked"  # reciprocal-rank fusion
    RELATIVE_SCORE = "relative_score"  # min-max normalised scores, alpha-weighted


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    chunk_id: str
    document_id: str
    chunk_index: int
    text: str
    vector: Sequence[float]
    model_id: str
    start: int = 0
    end: int = 0
    version: int = 1
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    vector: Sequence[float] | None = None
    model_id: str | None = None
    mode: SearchMode = SearchMode.HYBRID
    top_k: int = 10
    #: weight of the dense side in hybrid search (Weaviate semantics: 1 = pure vector, 0 = pure BM25)
    alpha: float = 0.5
    fusion: Fusion = Fusion.RANKED
    #: equality filters on metadata (all must match); ``document_id`` filters on the document
    filters: Mapping[str, str] = field(default_factory=dict)
    #: how many candidates each side contributes to hybrid fusion
    candidates: int = 100
    #: the caller's principals for document ACLs (see :data:`ACL_METADATA_KEY`), applied inside the
    #: query; empty (the default) = only chunks without an ACL. Never ``None``: no caller reads unchecked
    principals: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    document_id: str
    chunk_index: int
    text: str
    score: float
    start: int = 0
    end: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)


class RejectedRecords(InvalidArgument):
    """An upsert wrote the good records of a batch and rejected these (``chunk_id`` → reason).

    Permanent: the rejected records fail the same way on every retry, so a caller sends them (and only
    them) to the dead-letter topic with their reasons.
    """

    def __init__(self, rejected: Mapping[str, str], written: int) -> None:
        self.rejected = dict(rejected)
        self.written = written
        first = next(iter(self.rejected.items()), ("", ""))
        more = f" (and {len(self.rejected) - 1} more)" if len(self.rejected) > 1 else ""
        super().__init__(
            f"{len(self.rejected)} of {len(self.rejected) + written} chunks rejected; "
            f"chunk {first[0]!r}: {first[1]}{more}"
        )


@runtime_checkable
class VectorStore(Protocol):
    async def create_tenant(self, tenant_id: str) -> None:
        """Create an empty tenant; raises AlreadyExists if present."""

    async def delete_tenant(self, tenant_id: str) -> None:
        """Remove a tenant and all its objects; raises NotFound if absent."""

    async def list_tenants(self) -> list[str]: ...

    async def has_tenant(self, tenant_id: str) -> bool: ...

    async def upsert(self, tenant_id: str, records: Sequence[ChunkRecord]) -> None:
        """Insert or replace by ``chunk_id``. NotFound for an unknown tenant. A record whose fields are
        invalid, or whose vector's dimension or model id does not match the tenant's index, raises
        InvalidArgument naming the mismatch. Adapters either reject such a batch whole (the embedded
        store: a batch is one transaction) or write its good records and raise :class:`RejectedRecords`
        listing each rejected chunk with its reason (Weaviate's per-object batch errors)."""

    async def delete_document(self, tenant_id: str, document_id: str) -> int:
        """Delete every chunk of a document; returns how many were removed."""

    async def document_version(self, tenant_id: str, document_id: str) -> int | None:
        """The highest ``version`` among the document's chunks; None if the tenant holds none of them.
        NotFound for an unknown tenant. Replication reads it to skip a batch older than what is indexed."""

    async def count(self, tenant_id: str) -> int: ...

    async def search(self, tenant_id: str, query: SearchQuery) -> list[Hit]:
        """Best first. NotFound for an unknown tenant."""

    async def close(self) -> None: ...


@runtime_checkable
class Scrubbable(Protocol):
    """A store whose deletions can leave the deleted bytes on its disk (a database's write-ahead log,
    index files derived from an older state) and that can remove them on request. An erasure calls
    :meth:`scrub` after deleting; a store without it (Weaviate: its LSM segments drop deleted objects
    at compaction) is left to its own schedule, and the erasure receipt says so."""

    async def scrub(self, tenant_id: str) -> None:
        """Leave no byte of the tenant's deleted chunks in the store's files. NotFound for an unknown
        tenant."""
