"""The agents' answer cache: exact and semantic matches, isolation across tenants and ACL scopes, LRU and
TTL bounds, invalidation (directly and from the bus) and the generation check that keeps an answer made
before an invalidation out of the cache."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import REGISTRY

from isthmus_agent_orchestrator.agents.caches import (
    TenantResponseCache,
    invalidation_topics,
    normalize_key,
    normalize_question,
)
from isthmus_agent_orchestrator.agents.types import CachedAnswer, CacheKey
from isthmus_core.bus.inprocess import InProcessBus
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import (
    ChunksIndexed,
    DocumentDeleted,
    ErasureApplied,
    ErasureRequested,
    Event,
    TenantDeleted,
)
from isthmus_core.ports.generator import AnswerSentence, Context
from isthmus_core.regions import mirrored


def key(
    question: str = "What is a glider?",
    tenant: str = "acme",
    *,
    graph: str = "rag",
    principals: tuple[str, ...] = ("group:pilots",),
    top_k: int = 5,
) -> CacheKey:
    return CacheKey(tenant, graph, question, principals, top_k)


def answer(text: str = "Gliders fly without engines.") -> CachedAnswer:
    return CachedAnswer(
        sentences=(AnswerSentence(text),),
        contexts=(Context("c1", "d1", text),),
        message="",
        steps=(),
        generator="extractive",
        prompt_version="",
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Embeddings:
    """A fake embedder: fixed vectors per (normalized) text, counting its calls."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.calls: list[list[str]] = []

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vectors[t] for t in texts]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---- exact -----------------------------------------------------------------------------------------


async def test_exact_hit_after_put_and_miss_before() -> None:
    cache = TenantResponseCache()
    assert await cache.get(key()) is None
    await cache.put(key(), answer())
    hit = await cache.get(key())
    assert hit == answer()
    assert hit is not None and hit.match == "exact" and hit.similarity == 1.0
    assert await cache.get(key("What is a hangar?")) is None


@pytest.mark.parametrize(
    "variant",
    [
        "what is a glider",
        "  WHAT   is a\tGlider ?? ",
        "What is a glider!",
        "\uff37hat is a glider\uff1f",  # fullwidth W and question mark
        "what is a glider...",
    ],
)
async def test_questions_match_after_normalization(variant: str) -> None:
    cache = TenantResponseCache()
    await cache.put(key("What is a glider?"), answer())
    assert await cache.get(key(variant)) == answer()


def test_normalization_keeps_what_changes_the_question() -> None:
    assert normalize_question("  What IS\n a   glider?! ") == "what is a glider"
    assert normalize_question("what is 50%") == "what is 50%"  # only closing punctuation goes
    assert normalize_question("What is a glider? Is it safe?") == "what is a glider? is it safe"
    k = normalize_key(key(principals=("b", "a", "b")))
    assert k.principals == ("a", "b") and k.question == "what is a glider"


async def test_principals_order_and_duplicates_do_not_matter() -> None:
    cache = TenantResponseCache()
    await cache.put(key(principals=("u:ann", "group:pilots")), answer())
    assert await cache.get(key(principals=("group:pilots", "u:ann", "u:ann"))) == answer()


@pytest.mark.parametrize(
    "other",
    [
        key(tenant="globex"),
        key(principals=("group:pilots", "group:admins")),
        key(principals=()),
        key(graph="plan-execute"),
        key(top_k=10),
    ],
    ids=["tenant", "more-principals", "no-principals", "graph", "top_k"],
)
async def test_exact_never_crosses_tenant_acl_graph_or_top_k(other: CacheKey) -> None:
    cache = TenantResponseCache()
    await cache.put(key(), answer())
    assert await cache.get(other) is None


# ---- bounds ----------------------------------------------------------------------------------------


async def test_least_recently_used_entry_is_evicted_past_max_entries() -> None:
    cache = TenantResponseCache(max_entries=2)
    await cache.put(key("q1"), answer("a1"))
    await cache.put(key("q2"), answer("a2"))
    assert await cache.get(key("q1")) is not None  # q1 now more recent than q2
    await cache.put(key("q3"), answer("a3"))
    assert await cache.get(key("q2")) is None
    assert await cache.get(key("q1")) == answer("a1")
    assert await cache.get(key("q3")) == answer("a3")
    assert cache.cache_info()[2:] == (2, 2)


async def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache = TenantResponseCache(ttl_s=60, clock=clock)
    await cache.put(key(), answer())
    clock.now += 59.9
    assert await cache.get(key()) is not None
    clock.now += 0.1
    assert await cache.get(key()) is None
    assert cache.cache_info()[2] == 0  # the expired entry is gone, not just hidden


async def test_disabled_cache_stores_nothing() -> None:
    cache = TenantResponseCache(enabled=False)
    await cache.put(key(), answer())
    assert await cache.get(key()) is None


# ---- semantic --------------------------------------------------------------------------------------

GLIDER = "what is a glider"
SAILPLANE = "what is a sailplane"
HANGAR = "when do hangars open"
VECTORS = {
    GLIDER: [1.0, 0.0, 0.0],
    SAILPLANE: [0.96, 0.28, 0.0],  # cosine 0.96 with GLIDER
    HANGAR: [0.0, 0.0, 1.0],  # cosine 0 with both
}


async def test_semantic_hit_at_or_above_the_threshold() -> None:
    embed = Embeddings(VECTORS)
    cache = TenantResponseCache(semantic_threshold=0.95, embed=embed)
    await cache.put(key("What is a glider?"), answer())
    hit = await cache.get(key("What is a sailplane?"))
    assert hit is not None
    assert hit.match == "semantic" and hit.similarity == pytest.approx(0.96, abs=1e-6)
    assert hit.sentences == answer().sentences
    exact = await cache.get(key("What is a glider?"))  # the stored answer itself stays exact
    assert exact is not None and exact.match == "exact"


async def test_semantic_miss_below_the_threshold() -> None:
    cache = TenantResponseCache(semantic_threshold=0.97, embed=Embeddings(VECTORS))
    await cache.put(key("What is a glider?"), answer())
    assert await cache.get(key("What is a sailplane?")) is None
    assert await cache.get(key("When do hangars open?")) is None


async def test_threshold_one_disables_semantic_matching_and_embedding() -> None:
    embed = Embeddings(VECTORS)
    cache = TenantResponseCache(semantic_threshold=1.0, embed=embed)
    await cache.put(key("What is a glider?"), answer())
    assert await cache.get(key("What is a sailplane?")) is None
    assert await cache.get(key("What is a glider?")) is not None
    assert embed.calls == []


async def test_semantic_lookup_reuses_its_vector_for_the_put() -> None:
    embed = Embeddings(VECTORS)
    cache = TenantResponseCache(semantic_threshold=0.99, embed=embed)
    await cache.put(key("What is a glider?"), answer())
    assert await cache.get(key("What is a sailplane?")) is None
    await cache.put(key("What is a sailplane?"), answer("Sailplanes are gliders."))
    assert embed.calls == [[GLIDER], [SAILPLANE]]  # the miss's vector is stored, not computed again
    hit = await cache.get(key("what is a sailplane"))
    assert hit is not None and hit.sentences == answer("Sailplanes are gliders.").sentences


@pytest.mark.parametrize(
    "other",
    [key(tenant="globex"), key(principals=("group:admins",)), key(graph="reflect"), key(top_k=3)],
    ids=["tenant", "principals", "graph", "top_k"],
)
async def test_semantic_never_crosses_tenant_acl_graph_or_top_k(other: CacheKey) -> None:
    cache = TenantResponseCache(semantic_threshold=0.5, embed=Embeddings(VECTORS))
    await cache.put(key("What is a glider?"), answer())
    # the probe's own scope holds an unrelated answer, so it is searched semantically too
    await cache.put(dataclasses.replace(other, question=HANGAR), answer("x"))
    probe = dataclasses.replace(other, question="What is a sailplane?")
    assert await cache.get(probe) is None


async def test_an_embedding_failure_degrades_to_exact_matching() -> None:
    async def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding service down")

    cache = TenantResponseCache(semantic_threshold=0.5, embed=broken)
    await cache.put(key("What is a glider?"), answer())
    assert await cache.get(key("What is a sailplane?")) is None
    assert await cache.get(key("what is a glider")) == answer()


# ---- invalidation ----------------------------------------------------------------------------------


async def test_invalidate_drops_only_that_tenants_answers() -> None:
    cache = TenantResponseCache(semantic_threshold=0.5, embed=Embeddings(VECTORS))
    await cache.put(key(), answer())
    await cache.put(key(tenant="globex"), answer())
    cache.invalidate("acme")
    assert await cache.get(key()) is None
    assert await cache.get(key("What is a sailplane?")) is None  # semantic index dropped too
    assert await cache.get(key(tenant="globex")) == answer()
    await cache.put(key(), answer("fresh"))
    assert await cache.get(key()) == answer("fresh")


async def test_an_answer_looked_up_before_an_invalidation_is_not_stored_after_it() -> None:
    cache = TenantResponseCache()
    assert await cache.get(key()) is None  # the run begins
    cache.invalidate("acme")  # documents change while it computes
    await cache.put(key(), answer("made from the old documents"))
    assert await cache.get(key()) is None
    # the next run, looked up after the invalidation, is stored
    await cache.put(key(), answer("fresh"))
    assert await cache.get(key()) == answer("fresh")


async def test_an_invalidation_of_another_tenant_does_not_refuse_the_answer() -> None:
    cache = TenantResponseCache()
    assert await cache.get(key()) is None
    cache.invalidate("globex")
    await cache.put(key(), answer())
    assert await cache.get(key()) == answer()


async def test_concurrent_runs_each_keep_their_own_lookup_generation() -> None:
    """Two runs of one key: the old one looked up before the invalidation and stores after the new one
    (which looked up after it): the old answer must not replace the new one."""
    cache = TenantResponseCache()
    old_looked_up, invalidated, new_stored = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def old_run() -> None:
        assert await cache.get(key()) is None
        old_looked_up.set()
        await new_stored.wait()
        await cache.put(key(), answer("old"))

    async def new_run() -> None:
        await invalidated.wait()
        assert await cache.get(key()) is None
        await cache.put(key(), answer("new"))
        new_stored.set()

    old, new = asyncio.create_task(old_run()), asyncio.create_task(new_run())
    await old_looked_up.wait()
    cache.invalidate("acme")
    invalidated.set()
    await asyncio.gather(old, new)
    assert await cache.get(key()) == answer("new")


async def test_an_invalidation_while_the_answer_is_embedded_refuses_it() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(texts: list[str]) -> list[list[float]]:
        entered.set()
        await release.wait()
        return [VECTORS[t] for t in texts]

    cache = TenantResponseCache(semantic_threshold=0.9, embed=slow)
    put = asyncio.create_task(cache.put(key(), answer()))  # no lookup before: generation of now
    await entered.wait()
    cache.invalidate("acme")
    release.set()
    await put
    assert await cache.get(key()) is None


async def test_put_with_an_explicit_generation() -> None:
    cache = TenantResponseCache()
    generation = cache.generation("acme")
    cache.invalidate("acme")
    await cache.put(key(), answer(), generation=generation)
    assert await cache.get(key()) is None
    await cache.put(key(), answer(), generation=cache.generation("acme"))
    assert await cache.get(key()) == answer()


def erasure(tenant: str = "acme") -> ErasureRequested:
    return ErasureRequested(tenant_id=tenant, idempotency_key="e1", erasure_id="e" * 32)


def indexed(tenant: str = "acme") -> ChunksIndexed:
    return ChunksIndexed(
        tenant_id=tenant,
        idempotency_key="d1/1/0",
        document_id="d1",
        content_hash="h",
        version=1,
        batch_index=0,
        batch_count=1,
        count=3,
    )


def deleted(tenant: str = "acme") -> DocumentDeleted:
    return DocumentDeleted(tenant_id=tenant, idempotency_key="d1/deleted/v1", document_id="d1", version=1)


@pytest.mark.parametrize(
    ("topic", "event", "reason"),
    [
        (topics.CHUNKS_INDEXED, indexed(), "chunks_indexed"),
        (topics.ERASURES_REQUESTED, erasure(), "erasure"),
        (mirrored(topics.ERASURES_REQUESTED, "eu"), erasure(), "erasure"),
        (
            topics.ERASURES_APPLIED,
            ErasureApplied(tenant_id="acme", idempotency_key="a", erasure_id="e" * 32, place="retrieval"),
            "erasure",
        ),
        (topics.DOCUMENTS_DELETED, deleted(), "deletion"),
        (mirrored(topics.DOCUMENTS_DELETED, "eu"), deleted(), "deletion"),
        (topics.TENANTS_DELETED, TenantDeleted(tenant_id="acme", idempotency_key="del"), "tenant_deleted"),
    ],
    ids=[
        "chunks-indexed",
        "erasure",
        "mirrored-erasure",
        "erasure-applied",
        "document-deleted",
        "mirrored-document-deleted",
        "tenant-deleted",
    ],
)
async def test_bus_events_invalidate_the_tenant_in_every_replica(
    topic: topics.TopicSpec[Event], event: Event, reason: str
) -> None:
    replicas = [TenantResponseCache(), TenantResponseCache()]
    subs = [s for cache in replicas for s in cache.subscriptions("agent-orchestrator", ["eu"])]
    assert len({s.group for s in subs}) == 2  # a group per replica: each hears every event
    bus = InProcessBus()
    for s in subs:
        bus.subscribe(s)
    for cache in replicas:
        await cache.put(key(), answer())
        await cache.put(key(tenant="globex"), answer())
    before = sample("isthmus_answer_cache_invalidations_total", reason=reason)
    await bus.start()
    try:
        await publish_event(bus, topic, event)
        await bus.drain()
    finally:
        await bus.stop()
    for cache in replicas:
        assert await cache.get(key()) is None
        assert await cache.get(key(tenant="globex")) == answer()
    assert sample("isthmus_answer_cache_invalidations_total", reason=reason) == before + 2


def test_the_module_offers_every_topic_the_subscriptions_consume() -> None:
    subs = TenantResponseCache().subscriptions("agent-orchestrator", ["eu", "us"])
    offered = {t.name for t in invalidation_topics(["eu", "us"])}
    assert {s.topic for s in subs} == offered
    assert {"eu.isthmus.erasures.requested.v1", topics.TENANTS_DELETED.name} <= offered
    assert {topics.DOCUMENTS_DELETED.name, "eu.isthmus.documents.deleted.v1"} <= offered


async def test_a_run_in_flight_when_the_tenant_is_deleted_does_not_store() -> None:
    cache = TenantResponseCache()
    assert await cache.get(key()) is None
    bus = InProcessBus()
    for s in cache.subscriptions("agent-orchestrator", []):
        bus.subscribe(s)
    await bus.start()
    try:
        await publish_event(bus, topics.TENANTS_DELETED, TenantDeleted(tenant_id="acme", idempotency_key="d"))
        await bus.drain()
    finally:
        await bus.stop()
    await cache.put(key(), answer())
    assert await cache.get(key()) is None


# ---- metrics ---------------------------------------------------------------------------------------


async def test_lookups_and_stores_are_counted_by_outcome() -> None:
    names = ("exact", "semantic", "miss")
    before = {o: sample("isthmus_answer_cache_lookups_total", outcome=o) for o in names}
    stored = sample("isthmus_answer_cache_stores_total", outcome="stored")
    stale = sample("isthmus_answer_cache_stores_total", outcome="stale")
    cache = TenantResponseCache(semantic_threshold=0.95, embed=Embeddings(VECTORS))
    await cache.get(key("What is a glider?"))  # miss
    await cache.put(key("What is a glider?"), answer())  # stored
    await cache.get(key("what is a glider"))  # exact
    await cache.get(key("What is a sailplane?"))  # semantic
    await cache.get(key("When do hangars open?"))  # miss
    cache.invalidate("acme")
    await cache.put(key("When do hangars open?"), answer())  # stale
    after = {o: sample("isthmus_answer_cache_lookups_total", outcome=o) for o in names}
    assert {o: after[o] - before[o] for o in names} == {"exact": 1, "semantic": 1, "miss": 2}
    assert sample("isthmus_answer_cache_stores_total", outcome="stored") == stored + 1
    assert sample("isthmus_answer_cache_stores_total", outcome="stale") == stale + 1
    assert cache.cache_info()[:2] == (2, 2)


async def test_an_answer_citing_a_deleted_document_is_not_stored_while_retrieval_may_still_have_it() -> None:
    clock = Clock()
    cache = TenantResponseCache(ttl_s=60, clock=clock)
    await cache.put(key(), answer())
    cache.forget_document("acme", "d1")
    assert await cache.get(key()) is None  # the tenant's answers dropped
    # made after the deletion reached this process, from a search that still saw d1: not stored
    await cache.put(key(), answer())
    assert await cache.get(key()) is None
    await cache.put(key(tenant="globex"), answer())  # another tenant's d1: a different document
    assert await cache.get(key(tenant="globex")) == answer()
    clock.now += 60  # past the answers' own time to live: d1 (uploaded again) may be cited
    await cache.put(key(), answer())
    assert await cache.get(key()) == answer()
