"""EvalPlatform port: what an evaluation run needs from the platform it measures.

A run makes a throwaway tenant, uploads a corpus to it, waits until ingestion has indexed (or failed)
every document, runs its queries in each search mode, asks some of them (the answers it judges), then
deletes the tenant. Evaluation depends on this Protocol only; its gRPC implementation (over
``RetrievalService``, ``IngestionService`` and the agent orchestrator's ``Ask``, so a run measures exactly
what users get) lives in evaluation's ``clients.py``. Failures are
:mod:`isthmus_core.errors` (``NotFound`` for an unknown tenant, ``AlreadyExists`` for a tenant created
twice, ``Unavailable`` when a service cannot be reached...), never a gRPC type.

Conformance: :mod:`isthmus_core.testing.eval_platform_conformance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from isthmus_core.contracts.ids import TenantId
from isthmus_core.store.port import SearchMode


class IndexProgress(NamedTuple):
    """A tenant's documents: how many are indexed, how many failed, how many there are."""

    indexed: int
    failed: int
    total: int

    @property
    def done(self) -> bool:
        """Every document reached a final state (indexed or failed)."""
        return self.indexed + self.failed >= self.total


class DocumentHit(NamedTuple):
    """One search hit, reduced to what retrieval metrics need: its document and score."""

    document_id: str
    score: float


@dataclass(frozen=True, slots=True)
class AskedCitation:
    """A span an answer sentence cites: its chunk, document and document offsets ``[start, end)``."""

    chunk_id: str
    document_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class AskedSentence:
    text: str
    citations: tuple[AskedCitation, ...] = ()


@dataclass(frozen=True, slots=True)
class AskedContext:
    """A context the answer was generated from (with parent-child chunking: the parent section as the
    generator read it): ``text`` lies at ``[start, end)`` of the parsed document."""

    chunk_id: str
    document_id: str
    start: int
    end: int
    text: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class AskOutcome:
    """One answer as the caller got it: its text and cited sentences (none when blocked or abstained:
    ``answer`` is then the orchestrator's message), the contexts given to the generator, best first."""

    answer_id: str
    answer: str
    sentences: tuple[AskedSentence, ...] = ()
    contexts: tuple[AskedContext, ...] = ()
    blocked: bool = False
    latency_ms: float = 0.0
    cached: bool = False
    #: e.g. "extractive" or "openai-compatible:<model>"
    generator: str = ""


@runtime_checkable
class EvalPlatform(Protocol):
    async def create_tenant(self, tenant_id: TenantId) -> None:
        """Create an empty tenant (``AlreadyExists`` when it exists)."""
        ...

    async def delete_tenant(self, tenant_id: TenantId) -> None:
        """Delete the tenant and everything in it (``NotFound`` when it does not exist)."""
        ...

    async def upload(self, tenant_id: TenantId, document_id: str, filename: str, data: bytes) -> None:
        """Upload one document; it is indexed asynchronously (watch :meth:`progress`)."""
        ...

    async def progress(self, tenant_id: TenantId) -> IndexProgress:
        """Where ingestion is with the tenant's documents."""
        ...

    async def search(
        self, tenant_id: TenantId, query: str, mode: SearchMode, top_k: int, *, rerank: bool = False
    ) -> list[DocumentHit]:
        """At most ``top_k`` chunk hits, best first, each as its document (a document may appear more
        than once); ``rerank`` reorders the first candidates with the cross-encoder."""
        ...

    async def ask(self, tenant_id: TenantId, question: str) -> AskOutcome:
        """Ask ``question`` as a caller of the tenant would (the default graph and top-k, no document ACL
        principal, the response cache skipped), with the contexts the answer was generated from."""
        ...
