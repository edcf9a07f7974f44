"""The agents' answer cache and the coalescing of identical questions in flight.

:class:`TenantResponseCache` (a :class:`~isthmus_agent_orchestrator.agents.types.ResponseCache`) keeps
completed, unblocked answers in memory, bounded (LRU, ``cache_max_entries``) and for ``cache_ttl_s``:

* **exact**: the key is the tenant, the graph, the normalized question (:func:`normalize_question`:
  NFKC, case-folded, whitespace collapsed, trailing punctuation dropped), the caller's principals (the
  ACL scope, sorted and deduplicated) and ``top_k``;
* **semantic**: on an exact miss, the question's embedding (an injected ``embed`` callable) is compared
  with the cached questions' of the *same* tenant, graph, principals and ``top_k`` — an answer is never
  reused across tenants or ACL scopes — and the most similar one is reused when the cosine similarity
  reaches ``semantic_cache_threshold`` (1.0 turns semantic matching off: no embedding is computed).

A tenant's answers are dropped when its documents change (:meth:`TenantResponseCache.subscriptions`:
chunks indexed, erasures requested here or in a peer region and applied, documents deleted here or in a
peer region, tenant deleted — in every
replica, each with its own consumer group). Each invalidation bumps the tenant's *generation*; an answer
computed from a lookup made before an invalidation is not stored after it (it may cite erased or
replaced chunks): :meth:`~TenantResponseCache.get` remembers the generation it looked up at (in the
calling task's context), :meth:`~TenantResponseCache.put` compares it with the current one (or with an
explicit ``generation=``, from :meth:`~TenantResponseCache.generation`).

:class:`Coalescer` makes identical requests running at the same time share one run.

Pure: no I/O library (the bus subscriptions are declarations the runtime consumes).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import structlog

from isthmus_agent_orchestrator.agents.types import CachedAnswer, CacheKey
from isthmus_core.bus.port import Subscription
from isthmus_core.bus.replication import replica_subscriptions, replica_topics
from isthmus_core.bus.typed import subscribe
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    ChunksIndexed,
    DocumentDeleted,
    ErasureApplied,
    ErasureRequested,
    TenantDeleted,
)
from isthmus_core.telemetry.metrics import (
    ANSWER_CACHE_INVALIDATIONS,
    ANSWER_CACHE_LOOKUPS,
    ANSWER_CACHE_STORES,
)

log = structlog.get_logger("isthmus.agents.cache")

#: texts -> one vector each (the query embedder of the retrieval path, or any other)
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
Vector = npt.NDArray[np.float32]
InvalidationReason = Literal["chunks_indexed", "erasure", "deletion", "tenant_deleted", "manual"]

#: punctuation that ends a question without changing it ("What is X?" = "what is x")
_TRAILING = frozenset(".?!,;:\u3002\u3001")  # after NFKC (fullwidth forms folded); ideographic stops
#: lookups remembered per task for the generation check (a run looks up one or a few keys)
_TICKETS_PER_TASK = 16
#: deleted documents remembered (each for ``ttl_s``) so no answer citing one is stored; oldest dropped
_MAX_DELETED = 65_536

# (tenant, graph, principals, top_k): answers are only ever shared within one scope
Scope = tuple[str, str, tuple[str, ...], int]
# (scope, normalized question)
NormalKey = tuple[Scope, str]


def normalize_question(question: str) -> str:
    """The question as the exact cache compares it: NFKC, case-folded, runs of whitespace made one
    space, trailing punctuation and spaces removed."""
    text = " ".join(unicodedata.normalize("NFKC", question).casefold().split())
    end = len(text)
    while end and (text[end - 1] in _TRAILING or text[end - 1].isspace()):
        end -= 1
    return text[:end]


def normalize_key(key: CacheKey) -> CacheKey:
    """``key`` with its question normalized and its principals sorted and deduplicated: two keys that
    name the same cached answer are equal after it (e.g. for :class:`Coalescer`)."""
    return CacheKey(
        tenant_id=key.tenant_id,
        graph=key.graph,
        question=normalize_question(key.question),
        principals=tuple(sorted(set(key.principals))),
        top_k=key.top_k,
    )


def _normal(key: CacheKey) -> NormalKey:
    n = normalize_key(key)
    return (n.tenant_id, n.graph, n.principals, n.top_k), n.question


@dataclass(slots=True)
class _Entry:
    answer: CachedAnswer
    expires_at: float
    vector: Vector | None


@dataclass(frozen=True, slots=True)
class _Ticket:
    """What a lookup saw: the tenant's generation, and the question's vector when it computed one."""

    generation: int
    vector: Vector | None


def _unit(values: Sequence[float]) -> Vector | None:
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 1 or not v.size:
        return None
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    unit: Vector = v / norm
    return unit


class TenantResponseCache:
    """Answers per tenant and ACL scope: exact, then semantic; LRU-bounded, with a time to live.

    ``embed`` is required for semantic matching (``semantic_threshold < 1``); without it the cache
    matches exactly only. ``clock`` (seconds, monotonic) is injectable for tests. Not thread-safe: used
    from the service's event loop only."""

    def __init__(
        self,
        *,
        max_entries: int = 2048,
        ttl_s: float = 3600.0,
        semantic_threshold: float = 0.95,
        embed: Embed | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if not 0 < semantic_threshold <= 1:
            raise ValueError("semantic_threshold must be in (0, 1]")
        self._max = max_entries
        self._ttl = ttl_s
        self._threshold = semantic_threshold
        self._embed = embed
        self._enabled = enabled
        self._clock = clock
        self._entries: OrderedDict[NormalKey, _Entry] = OrderedDict()  # least recently used first
        self._scopes: dict[str, dict[Scope, dict[str, None]]] = {}  # tenant -> scope -> questions
        self._generations: dict[str, int] = {}
        self._tickets: contextvars.ContextVar[dict[NormalKey, _Ticket] | None] = contextvars.ContextVar(
            f"isthmus-answer-cache-{uuid.uuid4().hex[:8]}", default=None
        )
        self._hits = 0
        self._misses = 0
        #: (tenant, document) -> until when an answer citing it is not stored (see :meth:`forget_document`)
        self._deleted: OrderedDict[tuple[str, str], float] = OrderedDict()

    @property
    def semantic(self) -> bool:
        """Whether questions are also matched by embedding similarity."""
        return self._embed is not None and self._threshold < 1.0

    # ---- ResponseCache ---------------------------------------------------------------------------

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        if not self._enabled:
            return None
        nk = _normal(key)
        scope, question = nk
        tenant = scope[0]
        generation = self._generations.get(tenant, 0)
        entry = self._live(nk)
        if entry is not None:
            self._entries.move_to_end(nk)
            self._count("exact")
            return entry.answer
        vector: Vector | None = None
        if self.semantic and self._scopes.get(tenant, {}).get(scope):
            vector = await self._vector(question)
            found = self._nearest(scope, vector) if vector is not None else None
            if found is not None:
                other, similarity = found
                self._entries.move_to_end((scope, other))
                self._count("semantic")
                hit = self._entries[(scope, other)].answer
                return replace(hit, match="semantic", similarity=similarity)
        self._count("miss")
        self._remember(nk, _Ticket(generation, vector))
        return None

    async def put(self, key: CacheKey, answer: CachedAnswer, *, generation: int | None = None) -> None:
        """Store ``answer`` unless the tenant's cache was invalidated since the answer's lookup: since
        ``generation`` when given, else since this task's :meth:`get` of the same key (when it made
        one: call both from the same task, or pass ``generation``), else during this call."""
        if not self._enabled:
            return
        nk = _normal(key)
        scope, question = nk
        tenant = scope[0]
        ticket = self._ticket(nk)
        if generation is None:
            generation = ticket.generation if ticket is not None else self._generations.get(tenant, 0)
        vector: Vector | None = None
        if self.semantic:
            vector = ticket.vector if ticket is not None and ticket.vector is not None else None
            if vector is None:
                vector = await self._vector(question)
        # after every await: an invalidation may have come while the answer was made or embedded
        if generation != self._generations.get(tenant, 0) or self._cites_deleted(tenant, answer):
            ANSWER_CACHE_STORES.labels("stale").inc()
            log.debug("stale answer not cached", tenant=tenant)
            return
        stored = replace(answer, match="exact", similarity=1.0)
        self._drop(nk)
        self._entries[nk] = _Entry(stored, self._clock() + self._ttl, vector)
        self._scopes.setdefault(tenant, {}).setdefault(scope, {})[question] = None
        while len(self._entries) > self._max:
            self._drop(next(iter(self._entries)))
        ANSWER_CACHE_STORES.labels("stored").inc()

    def invalidate(self, tenant_id: str, reason: InvalidationReason = "manual") -> None:
        """Drop the tenant's answers, and refuse those computed from lookups made before now."""
        self._generations[tenant_id] = self._generations.get(tenant_id, 0) + 1
        for scope, questions in self._scopes.pop(tenant_id, {}).items():
            for question in questions:
                self._entries.pop((scope, question), None)
        ANSWER_CACHE_INVALIDATIONS.labels(reason).inc()

    def forget_document(self, tenant_id: str, document_id: str) -> None:
        """A document was deleted: drop the tenant's answers and, for ``ttl_s``, store no answer that
        cites it — the deletion may reach this process before retrieval has removed the document's
        chunks, and an answer made in between would otherwise be cached with it."""
        key = (tenant_id, document_id)
        self._deleted.pop(key, None)
        self._deleted[key] = self._clock() + self._ttl
        while len(self._deleted) > _MAX_DELETED:
            self._deleted.popitem(last=False)
        self.invalidate(tenant_id, "deletion")

    def _cites_deleted(self, tenant_id: str, answer: CachedAnswer) -> bool:
        now = self._clock()
        while self._deleted and next(iter(self._deleted.values())) <= now:  # in expiry order
            self._deleted.popitem(last=False)
        return any((tenant_id, c.document_id) in self._deleted for c in answer.contexts)

    # ---- the rest of the service's view ----------------------------------------------------------

    def generation(self, tenant_id: str) -> int:
        """The tenant's invalidation count: pass it to :meth:`put` to store only if none came since."""
        return self._generations.get(tenant_id, 0)

    def cache_info(self) -> tuple[int, int, int, int]:
        """(hits, misses, entries, capacity): for :func:`isthmus_core.telemetry.caches.register_cache`."""
        return self._hits, self._misses, len(self._entries), self._max

    def subscriptions(self, module: str, peers: Sequence[str]) -> list[Subscription]:
        """Invalidate a tenant's answers when its documents change, in this process: chunks indexed,
        erasures requested (here or mirrored from ``peers``) and applied (documents gone from this
        region's index: lookups between the request and the deletion may have cached them again), the
        tenant deleted. The consumer group is this process's own (like
        :func:`isthmus_core.bus.purge.purge_on_erasure`): every replica hears every event. The
        module's ``Offer.topics`` should list :func:`invalidation_topics`."""
        group = f"{module}-answer-cache-{uuid.uuid4().hex[:12]}"

        async def on_indexed(ev: ChunksIndexed) -> None:
            self.invalidate(ev.tenant_id, "chunks_indexed")

        async def on_erasure(ev: ErasureRequested) -> None:
            self.invalidate(ev.tenant_id, "erasure")

        async def on_erasure_mirrored(ev: ErasureRequested) -> Literal["applied"]:
            self.invalidate(ev.tenant_id, "erasure")
            return "applied"

        async def on_erased(ev: ErasureApplied) -> None:
            self.invalidate(ev.tenant_id, "erasure")

        async def on_document_deleted(ev: DocumentDeleted) -> None:
            self.forget_document(ev.tenant_id, ev.document_id)

        async def on_document_deleted_mirrored(ev: DocumentDeleted) -> Literal["applied"]:
            self.forget_document(ev.tenant_id, ev.document_id)
            return "applied"

        async def on_deleted(ev: TenantDeleted) -> None:
            # its generation stays: a run of the deleted tenant still in flight must not store
            self.invalidate(ev.tenant_id, "tenant_deleted")

        return [
            subscribe(topics.CHUNKS_INDEXED, group, on_indexed),
            subscribe(topics.ERASURES_REQUESTED, group, on_erasure),
            *replica_subscriptions(
                topics.ERASURES_REQUESTED, group, peers, on_erasure_mirrored, service=module
            ),
            subscribe(topics.ERASURES_APPLIED, group, on_erased),
            subscribe(topics.DOCUMENTS_DELETED, group, on_document_deleted),
            *replica_subscriptions(
                topics.DOCUMENTS_DELETED, group, peers, on_document_deleted_mirrored, service=module
            ),
            subscribe(topics.TENANTS_DELETED, group, on_deleted),
        ]

    # ---- internals ---------------------------------------------------------------------------------

    def _count(self, outcome: Literal["exact", "semantic", "miss"]) -> None:
        if outcome == "miss":
            self._misses += 1
        else:
            self._hits += 1
        ANSWER_CACHE_LOOKUPS.labels(outcome).inc()

    def _live(self, nk: NormalKey) -> _Entry | None:
        entry = self._entries.get(nk)
        if entry is not None and entry.expires_at <= self._clock():
            self._drop(nk)
            return None
        return entry

    def _drop(self, nk: NormalKey) -> None:
        if self._entries.pop(nk, None) is None:
            return
        scope, question = nk
        tenant_scopes = self._scopes.get(scope[0])
        if tenant_scopes is None:
            return
        questions = tenant_scopes.get(scope)
        if questions is not None:
            questions.pop(question, None)
            if not questions:
                del tenant_scopes[scope]
        if not tenant_scopes:
            del self._scopes[scope[0]]

    def _nearest(self, scope: Scope, vector: Vector) -> tuple[str, float] | None:
        questions: list[str] = []
        vectors: list[Vector] = []
        for question in list(self._scopes.get(scope[0], {}).get(scope, {})):
            entry = self._live((scope, question))
            if entry is not None and entry.vector is not None and entry.vector.shape == vector.shape:
                questions.append(question)
                vectors.append(entry.vector)
        if not vectors:
            return None
        similarities = np.stack(vectors) @ vector
        best = int(np.argmax(similarities))
        similarity = min(float(similarities[best]), 1.0)
        if similarity < self._threshold:
            return None
        return questions[best], similarity

    async def _vector(self, question: str) -> Vector | None:
        assert self._embed is not None
        try:
            vectors = await self._embed([question])
        except Exception as exc:  # a cache never fails an answer: match exactly only this time
            log.warning("question not embedded for the answer cache", error=str(exc))
            return None
        return _unit(vectors[0]) if vectors else None

    def _remember(self, nk: NormalKey, ticket: _Ticket) -> None:
        tickets = dict(self._tickets.get() or {})  # copied: tasks started from this one share the dict
        tickets.pop(nk, None)
        tickets[nk] = ticket
        while len(tickets) > _TICKETS_PER_TASK:
            del tickets[next(iter(tickets))]
        self._tickets.set(tickets)

    def _ticket(self, nk: NormalKey) -> _Ticket | None:
        tickets = self._tickets.get()
        return tickets.get(nk) if tickets else None


def invalidation_topics(peers: Sequence[str]) -> list[topics.AnyTopic]:
    """The topics :meth:`TenantResponseCache.subscriptions` consumes, for the module's ``Offer.topics``."""
    local: list[topics.AnyTopic] = [
        topics.CHUNKS_INDEXED,
        topics.ERASURES_REQUESTED,
        topics.ERASURES_APPLIED,
        topics.DOCUMENTS_DELETED,
        topics.TENANTS_DELETED,
    ]
    return [*local, *replica_topics([topics.ERASURES_REQUESTED, topics.DOCUMENTS_DELETED], peers)]


# ---- coalescing ---------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(slots=True)
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


class Coalescer(Generic[T]):
    """Identical requests in flight share one run: :meth:`run` with a key already running awaits that
    run's result (or exception) instead of starting another.

    The run is a task of its own, so a caller cancelled while waiting does not cancel the others' result;
    it is cancelled only when every caller waiting for it has gone. A :class:`CacheKey` is normalized
    (:func:`normalize_key`) so keys that name one cached answer share one run. The run's task starts in
    a copy of the first caller's context (its ``current_access``, trace): callers that join share what
    it did on the first caller's behalf — hence keys carry the tenant and the principals (ACL scope)."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}

    def in_flight(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, factory: Callable[[], Awaitable[T]]) -> T:
        k: Hashable = normalize_key(key) if isinstance(key, CacheKey) else key
        flight = self._flights.get(k)
        if flight is None:
            flight = _Flight(asyncio.create_task(_call(factory)))
            self._flights[k] = flight
            flight.task.add_done_callback(functools.partial(self._landed, k, flight))
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if not flight.waiters and not flight.task.done():
                # every caller gone: nobody wants the result; a later identical call starts afresh
                if self._flights.get(k) is flight:
                    del self._flights[k]
                flight.task.cancel()

    def _landed(self, k: Hashable, flight: _Flight[T], _task: asyncio.Task[T]) -> None:
        if self._flights.get(k) is flight:
            del self._flights[k]
        if not flight.task.cancelled():
            flight.task.exception()  # retrieved here: no "never retrieved" warning when nobody waits


async def _call(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
