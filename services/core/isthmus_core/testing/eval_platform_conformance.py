"""Conformance suite for the :class:`~isthmus_core.ports.eval_platform.EvalPlatform` port.

Usage, in an adapter's tests::

    class TestMyEvalPlatform(EvalPlatformConformance, EvalPlatformOutageConformance):
        @pytest.fixture
        def eval_platform(self) -> EvalPlatform:            # any scope
            return MyEvalPlatform(...)

        @pytest.fixture        # only for adapters with a remote platform (the Outage mix-in)
        def unreachable_eval_platform(self) -> EvalPlatform:
            return MyEvalPlatform(<addresses nothing listens on>)

The suite pins what an evaluation run relies on: a created tenant takes uploads, whose progress reaches
"every document indexed"; then every search mode (with and without reranking) finds the relevant
document first, returns at most ``top_k`` hits, best first, of that tenant's documents only, and
searches the way it is asked (for a query sharing no word with the corpus, BM25 finds nothing while
dense and hybrid search return the nearest documents); a tenant is
created once (``AlreadyExists``), and an unknown or deleted tenant is ``NotFound`` for uploads, progress
and searches; an unreachable platform is ``Unavailable``. Tenant names are fresh and random, so a shared
platform may hold other tenants.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from isthmus_core.contracts.ids import TenantId, parse_tenant_id
from isthmus_core.errors import AlreadyExists, NotFound, Unavailable
from isthmus_core.ports.eval_platform import DocumentHit, EvalPlatform, IndexProgress
from isthmus_core.store.port import SearchMode

CORPUS = {
    "d1": "Pelicans scoop fish with their throat pouch.",
    "d2": "Marmots hibernate in burrows through the winter.",
    "d3": "Glaciers carve deep valleys into the mountains.",
}
QUERY = "marmots winter"
#: shares no word with the corpus: lexical search finds nothing, vector search finds the nearest
NO_SHARED_WORD = "xylophone zebra"
RELEVANT = "d2"
#: (search mode, rerank) for every kind of search an evaluation runs
SEARCHES = [
    (SearchMode.BM25, False),
    (SearchMode.DENSE, False),
    (SearchMode.HYBRID, False),
    (SearchMode.HYBRID, True),
]
INDEX_WITHIN_S = 120.0


def fresh_tenant_id(label: str = "t") -> TenantId:
    return parse_tenant_id(f"evalconf-{label}-{uuid.uuid4().hex[:12]}")


async def wait_done(
    platform: EvalPlatform, tenant: TenantId, within_s: float = INDEX_WITHIN_S
) -> IndexProgress:
    """Poll :meth:`EvalPlatform.progress` until every document is indexed or failed (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        p = await platform.progress(tenant)
        if p.done:
            return p
        if loop.time() > deadline:
            raise AssertionError(f"not indexed within {within_s:g} s: {p}")
        await asyncio.sleep(0.05)


class EvalPlatformConformance:
    """What every EvalPlatform must do. Subclasses provide the ``eval_platform`` fixture."""

    @pytest.fixture
    def eval_platform(self) -> EvalPlatform:
        raise NotImplementedError("subclasses of EvalPlatformConformance provide an 'eval_platform' fixture")

    async def test_it_is_an_eval_platform(self, eval_platform: EvalPlatform) -> None:
        assert isinstance(eval_platform, EvalPlatform)

    async def test_an_uploaded_corpus_is_indexed_and_searchable_in_every_mode(
        self, eval_platform: EvalPlatform
    ) -> None:
        tenant, other = fresh_tenant_id(), fresh_tenant_id("other")
        await eval_platform.create_tenant(tenant)
        await eval_platform.create_tenant(other)
        try:
            assert await eval_platform.progress(tenant) == IndexProgress(0, 0, 0)
            for doc_id, text in CORPUS.items():
                await eval_platform.upload(tenant, doc_id, f"{doc_id}.txt", text.encode())
            assert await wait_done(eval_platform, tenant) == IndexProgress(len(CORPUS), 0, len(CORPUS))
            for mode, rerank in SEARCHES:
                what = f"{mode} rerank={rerank}"
                hits = await eval_platform.search(tenant, QUERY, mode, 10, rerank=rerank)
                assert hits and all(isinstance(h, DocumentHit) for h in hits), what
                assert hits[0].document_id == RELEVANT, (what, hits)
                assert {h.document_id for h in hits} <= set(CORPUS), what
                scores = [h.score for h in hits]
                assert scores == sorted(scores, reverse=True), what
                assert len(await eval_platform.search(tenant, QUERY, mode, 1, rerank=rerank)) == 1, what
                # another tenant sees none of it
                assert await eval_platform.search(other, QUERY, mode, 10, rerank=rerank) == [], what
            # the mode is the one asked for: only the vector side finds documents sharing no word
            for rerank in (False, True):
                assert (
                    await eval_platform.search(tenant, NO_SHARED_WORD, SearchMode.BM25, 10, rerank=rerank)
                    == []
                )
                for mode in (SearchMode.DENSE, SearchMode.HYBRID):
                    hits = await eval_platform.search(tenant, NO_SHARED_WORD, mode, 10, rerank=rerank)
                    assert {h.document_id for h in hits} == set(CORPUS), (mode, rerank, hits)
        finally:
            await eval_platform.delete_tenant(tenant)
            await eval_platform.delete_tenant(other)

    async def test_a_tenant_is_created_once(self, eval_platform: EvalPlatform) -> None:
        tenant = fresh_tenant_id("twice")
        await eval_platform.create_tenant(tenant)
        try:
            with pytest.raises(AlreadyExists):
                await eval_platform.create_tenant(tenant)
        finally:
            await eval_platform.delete_tenant(tenant)

    async def test_an_unknown_tenant_is_not_found(self, eval_platform: EvalPlatform) -> None:
        missing = fresh_tenant_id("missing")
        with pytest.raises(NotFound):
            await eval_platform.upload(missing, "d1", "d1.txt", CORPUS["d1"].encode())
        with pytest.raises(NotFound):
            await eval_platform.progress(missing)
        with pytest.raises(NotFound):
            await eval_platform.search(missing, QUERY, SearchMode.BM25, 10)
        with pytest.raises(NotFound):
            await eval_platform.delete_tenant(missing)

    async def test_a_deleted_tenant_is_not_found(self, eval_platform: EvalPlatform) -> None:
        tenant = fresh_tenant_id("gone")
        await eval_platform.create_tenant(tenant)
        await eval_platform.delete_tenant(tenant)
        with pytest.raises(NotFound):
            await eval_platform.search(tenant, QUERY, SearchMode.HYBRID, 10)
        with pytest.raises(NotFound):
            await eval_platform.delete_tenant(tenant)


class EvalPlatformOutageConformance:
    """For adapters that reach a remote service: an outage raises
    :class:`~isthmus_core.errors.Unavailable` (never a wrong answer). Mix it in beside the main suite and
    provide ``unreachable_eval_platform`` (a platform that cannot be reached)."""

    @pytest.fixture
    def unreachable_eval_platform(self) -> EvalPlatform:
        raise NotImplementedError(
            "subclasses of EvalPlatformOutageConformance provide a 'unreachable_eval_platform' fixture"
        )

    async def test_an_unreachable_platform_is_unavailable(
        self, unreachable_eval_platform: EvalPlatform
    ) -> None:
        with pytest.raises(Unavailable):
            await unreachable_eval_platform.create_tenant(fresh_tenant_id("outage"))
        with pytest.raises(Unavailable):
            await unreachable_eval_platform.search(fresh_tenant_id("outage"), QUERY, SearchMode.BM25, 10)
