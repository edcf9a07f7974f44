"""Conformance suite for :class:`~isthmus_core.store.port.VectorStore` adapters.

Mix :class:`StoreConformance` into a test class and provide an async ``store`` fixture that yields a
ready store and closes it at teardown::

    class TestEmbeddedStoreConformance(StoreConformance):
        @pytest.fixture
        async def store(self, tmp_path: Path) -> AsyncIterator[VectorStore]:
            store = EmbeddedStore(tmp_path / "store")
            yield store
            await store.close()

The suite uses the port only, so it runs unchanged against a server-backed adapter (Weaviate):

* every test works in tenants with fresh random names (``tenant`` / ``other_tenant`` fixtures, which
  delete them afterwards), so a shared server may hold other tenants; membership is checked, never
  the exact tenant list;
* chunk ids are :func:`~isthmus_core.store.port.chunk_uuid` values (Weaviate object ids are UUIDs);
* vectors are small and handmade (dimension :attr:`StoreConformance.dimension`), and BM25 tests use
  exact keywords only, so they hold for any analyser (with or without stemming);
* metadata keys are plain identifiers, values short strings.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from isthmus_core.errors import AlreadyExists, InvalidArgument, NotFound
from isthmus_core.store.port import (
    ChunkRecord,
    Fusion,
    Hit,
    SearchMode,
    SearchQuery,
    VectorStore,
    chunk_uuid,
)

MODEL = "conformance-embedder-v1"
OTHER_MODEL = "conformance-embedder-v2"


def basis(dimension: int, *components: tuple[int, float]) -> list[float]:
    """A vector with the given ``(axis, value)`` components and zeros elsewhere."""
    vector = [0.0] * dimension
    for axis, value in components:
        vector[axis] += value
    return vector


def tenant_name(label: str = "t") -> str:
    """A fresh tenant name, valid for every adapter (Weaviate: letters, digits, '-', '_'; ≤ 64)."""
    return f"conformance-{label}-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def fresh_tenant(store: VectorStore, label: str = "t") -> AsyncIterator[str]:
    """Create a tenant with a fresh name; delete it afterwards unless the test already did."""
    tenant_id = tenant_name(label)
    await store.create_tenant(tenant_id)
    try:
        yield tenant_id
    finally:
        if await store.has_tenant(tenant_id):
            await store.delete_tenant(tenant_id)


def names_both(message: str, a: object, b: object) -> bool:
    """True when ``message`` mentions both values (as whole words), e.g. both dimensions of a mismatch."""
    return all(re.search(rf"(?<![\w.-]){re.escape(str(v))}(?![\w.-])", message) for v in (a, b))


class StoreConformance:
    """What every VectorStore must do. Subclasses provide the async ``store`` fixture."""

    #: dimension of the handmade vectors (at least 8)
    dimension: int = 8

    # -- fixtures -----------------------------------------------------------------------------------

    @pytest.fixture
    async def store(self) -> AsyncIterator[VectorStore]:
        raise NotImplementedError("subclasses of StoreConformance provide an async 'store' fixture")
        yield  # pragma: no cover

    @pytest.fixture
    async def tenant(self, store: VectorStore) -> AsyncIterator[str]:
        async with fresh_tenant(store, "a") as tenant_id:
            yield tenant_id

    @pytest.fixture
    async def other_tenant(self, store: VectorStore) -> AsyncIterator[str]:
        async with fresh_tenant(store, "b") as tenant_id:
            yield tenant_id

    # -- helpers ------------------------------------------------------------------------------------

    def vec(self, *components: tuple[int, float]) -> list[float]:
        return basis(self.dimension, *components)

    def record(
        self,
        tenant_id: str,
        document_id: str,
        index: int,
        text: str,
        vector: Sequence[float] | None = None,
        *,
        model_id: str = MODEL,
        metadata: Mapping[str, str] | None = None,
        version: int = 1,
    ) -> ChunkRecord:
        return ChunkRecord(
            chunk_id=chunk_uuid(tenant_id, document_id, index),
            document_id=document_id,
            chunk_index=index,
            text=text,
            vector=list(vector) if vector is not None else self.vec((index % self.dimension, 1.0)),
            model_id=model_id,
            start=index * 100,
            end=index * 100 + len(text),
            version=version,
            metadata=dict(metadata or {}),
        )

    @staticmethod
    def dense(vector: Sequence[float], **kw: Any) -> SearchQuery:
        return SearchQuery(text="", vector=list(vector), model_id=MODEL, mode=SearchMode.DENSE, **kw)

    @staticmethod
    def bm25(text: str, **kw: Any) -> SearchQuery:
        return SearchQuery(text=text, mode=SearchMode.BM25, **kw)

    @staticmethod
    def hybrid(text: str, vector: Sequence[float], **kw: Any) -> SearchQuery:
        return SearchQuery(text=text, vector=list(vector), model_id=MODEL, mode=SearchMode.HYBRID, **kw)

    def all_modes(self, text: str, vector: Sequence[float], **kw: Any) -> list[SearchQuery]:
        return [self.bm25(text, **kw), self.dense(vector, **kw), self.hybrid(text, vector, **kw)]

    @staticmethod
    def assert_best_first(hits: Sequence[Hit]) -> None:
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), f"hits are not best first: {scores}"

    @staticmethod
    def docs(hits: Sequence[Hit]) -> list[str]:
        return [h.document_id for h in hits]

    # -- tenants ------------------------------------------------------------------------------------

    async def test_is_a_vector_store(self, store: VectorStore) -> None:
        assert isinstance(store, VectorStore)

    async def test_tenant_lifecycle(self, store: VectorStore) -> None:
        tenant_id = tenant_name()
        assert not await store.has_tenant(tenant_id)
        assert tenant_id not in await store.list_tenants()

        await store.create_tenant(tenant_id)
        assert await store.has_tenant(tenant_id)
        assert tenant_id in await store.list_tenants()
        assert await store.count(tenant_id) == 0
        with pytest.raises(AlreadyExists):
            await store.create_tenant(tenant_id)

        await store.delete_tenant(tenant_id)
        assert not await store.has_tenant(tenant_id)
        assert tenant_id not in await store.list_tenants()
        with pytest.raises(NotFound):
            await store.delete_tenant(tenant_id)

    async def test_unknown_tenant_is_not_found(self, store: VectorStore) -> None:
        missing = tenant_name("missing")
        with pytest.raises(NotFound):
            await store.upsert(missing, [self.record(missing, "doc", 0, "some text")])
        with pytest.raises(NotFound):
            await store.count(missing)
        with pytest.raises(NotFound):
            await store.delete_document(missing, "doc")
        for query in self.all_modes("some text", self.vec((0, 1.0))):
            with pytest.raises(NotFound):
                await store.search(missing, query)
        # none of these created the tenant
        assert not await store.has_tenant(missing)

    async def test_deleting_a_tenant_deletes_its_chunks(self, store: VectorStore) -> None:
        tenant_id = tenant_name()
        await store.create_tenant(tenant_id)
        try:
            await store.upsert(
                tenant_id, [self.record(tenant_id, "doc", i, f"aardvark {i}") for i in range(3)]
            )
            assert await store.count(tenant_id) == 3
            await store.delete_tenant(tenant_id)
            await store.create_tenant(tenant_id)  # same name, new tenant
            assert await store.count(tenant_id) == 0
            assert await store.search(tenant_id, self.bm25("aardvark")) == []
            assert await store.search(tenant_id, self.dense(self.vec((0, 1.0)))) == []
        finally:
            if await store.has_tenant(tenant_id):
                await store.delete_tenant(tenant_id)

    async def test_empty_tenant_searches_return_nothing(self, store: VectorStore, tenant: str) -> None:
        for query in self.all_modes("anything at all", self.vec((0, 1.0))):
            assert await store.search(tenant, query) == []

    # -- writes -------------------------------------------------------------------------------------

    async def test_upsert_is_idempotent(self, store: VectorStore, tenant: str) -> None:
        records = [self.record(tenant, "doc", i, f"chunk number {i} about walruses") for i in range(5)]
        await store.upsert(tenant, records)
        assert await store.count(tenant) == 5
        await store.upsert(tenant, records)
        assert await store.count(tenant) == 5
        hits = await store.search(tenant, self.bm25("walruses", top_k=10))
        assert sorted(h.chunk_id for h in hits) == sorted(r.chunk_id for r in records)  # no duplicates

    async def test_upsert_of_nothing_is_a_no_op(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [])
        assert await store.count(tenant) == 0

    async def test_replace_by_chunk_id(self, store: VectorStore, tenant: str) -> None:
        old = [
            self.record(tenant, "doc", i, f"the platypus section {i}", self.vec((0, 1.0))) for i in range(3)
        ]
        untouched = self.record(tenant, "other", 0, "an unrelated chunk", self.vec((0, 1.0)))
        await store.upsert(tenant, [*old, untouched])
        new = [
            self.record(tenant, "doc", i, f"the narwhal section {i}", self.vec((1, 1.0)), version=2)
            for i in range(3)
        ]
        await store.upsert(tenant, new)
        assert await store.count(tenant) == 4
        assert await store.search(tenant, self.bm25("platypus")) == []
        found = await store.search(tenant, self.bm25("narwhal"))
        assert sorted(h.chunk_id for h in found) == sorted(r.chunk_id for r in new)
        assert all("narwhal" in h.text for h in found)
        # the newer vectors replaced the old ones too
        nearest = await store.search(tenant, self.dense(self.vec((1, 1.0)), top_k=3))
        assert sorted(h.chunk_id for h in nearest) == sorted(r.chunk_id for r in new)
        (closest_to_old,) = await store.search(tenant, self.dense(self.vec((0, 1.0)), top_k=1))
        assert closest_to_old.chunk_id == untouched.chunk_id

    async def test_hit_carries_the_record_fields(self, store: VectorStore, tenant: str) -> None:
        record = self.record(
            tenant, "handbook", 7, "Quokkas live on Rottnest Island.", metadata={"lang": "en"}
        )
        await store.upsert(tenant, [record])
        for query in self.all_modes("quokkas", record.vector):
            (hit,) = await store.search(tenant, query)
            assert hit.chunk_id == record.chunk_id
            assert hit.document_id == "handbook"
            assert hit.chunk_index == 7
            assert hit.text == record.text
            assert (hit.start, hit.end) == (record.start, record.end)
            assert dict(hit.metadata) == {"lang": "en"}

    async def test_delete_document(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [self.record(tenant, "doomed", i, f"ocelot part {i}") for i in range(4)])
        await store.upsert(tenant, [self.record(tenant, "kept", i, f"ocelot chapter {i}") for i in range(2)])
        assert await store.count(tenant) == 6

        assert await store.delete_document(tenant, "doomed") == 4
        assert await store.count(tenant) == 2
        for query in self.all_modes("ocelot", self.vec((0, 1.0)), top_k=10):
            assert set(self.docs(await store.search(tenant, query))) == {"kept"}
        assert await store.delete_document(tenant, "doomed") == 0
        assert await store.delete_document(tenant, "never-existed") == 0
        assert await store.count(tenant) == 2

    async def test_document_version_is_the_highest_indexed(self, store: VectorStore, tenant: str) -> None:
        assert await store.document_version(tenant, "doc") is None
        v2 = [self.record(tenant, "doc", i, f"heron v2 part {i}", version=2) for i in range(3)]
        await store.upsert(tenant, v2)
        await store.upsert(tenant, [self.record(tenant, "other", 0, "heron elsewhere", version=7)])
        assert await store.document_version(tenant, "doc") == 2
        await store.upsert(tenant, [self.record(tenant, "doc", 0, "heron v5 part 0", version=5)])
        assert await store.document_version(tenant, "doc") == 5
        await store.delete_document(tenant, "doc")
        assert await store.document_version(tenant, "doc") is None
        assert await store.document_version(tenant, "other") == 7

    async def test_document_version_of_unknown_tenant(self, store: VectorStore) -> None:
        with pytest.raises(NotFound):
            await store.document_version("no-such-tenant", "doc")

    async def test_empty_text_is_rejected(self, store: VectorStore, tenant: str) -> None:
        with pytest.raises(InvalidArgument):
            await store.upsert(tenant, [self.record(tenant, "doc", 0, "")])
        assert await store.count(tenant) == 0

    # -- search -------------------------------------------------------------------------------------

    async def test_bm25_finds_the_keyword_first(self, store: VectorStore, tenant: str) -> None:
        texts = [
            "Quarterly revenue grew across European markets.",
            "The capybara is the largest living rodent.",
            "Rodents include mice, rats and squirrels.",
            "Revenue recognition follows the accrual principle.",
            "Employees get twenty vacation days a year.",
        ]
        await store.upsert(tenant, [self.record(tenant, f"doc{i}", 0, t) for i, t in enumerate(texts)])
        hits = await store.search(tenant, self.bm25("capybara"))
        assert self.docs(hits) == ["doc1"]  # only chunks holding a query term match
        hits = await store.search(tenant, self.bm25("revenue"))
        assert set(self.docs(hits)) == {"doc0", "doc3"}
        self.assert_best_first(hits)
        assert all(h.score > 0 for h in hits)

    async def test_bm25_prefers_more_occurrences(self, store: VectorStore, tenant: str) -> None:
        texts = [
            "Kelp forests shelter fish. Kelp grows fast; kelp is harvested.",
            "A single mention of kelp among many other words about the ocean floor.",
        ]
        await store.upsert(tenant, [self.record(tenant, f"doc{i}", 0, t) for i, t in enumerate(texts)])
        assert self.docs(await store.search(tenant, self.bm25("kelp"))) == ["doc0", "doc1"]

    async def test_dense_finds_the_nearest_vector_first(self, store: VectorStore, tenant: str) -> None:
        records = [
            self.record(tenant, f"doc{axis}", 0, f"filler text number {axis}", self.vec((axis, 1.0)))
            for axis in range(self.dimension)
        ]
        await store.upsert(tenant, records)
        query = self.vec((3, 1.0), (5, 0.5))
        hits = await store.search(tenant, self.dense(query, top_k=3))
        assert self.docs(hits)[:2] == ["doc3", "doc5"]
        assert len(hits) == 3
        self.assert_best_first(hits)
        # scale does not matter: cosine similarity
        scaled = await store.search(tenant, self.dense([10 * v for v in query], top_k=3))
        assert self.docs(scaled)[:2] == ["doc3", "doc5"]

    async def _hybrid_corpus(self, store: VectorStore, tenant: str) -> list[float]:
        """A: keyword-strong, vector far. B: vector-exact, no keyword. C: good on both. Returns the query
        vector (the query text is ``zeppelin``)."""
        await store.upsert(
            tenant,
            [
                self.record(
                    tenant, "A", 0, "Zeppelin zeppelin airship history.", self.vec((5, 1.0), (0, -0.2))
                ),
                self.record(tenant, "B", 0, "Maritime shipping logistics.", self.vec((0, 1.0))),
                self.record(
                    tenant, "C", 0, "Zeppelin zeppelin airship designs.", self.vec((0, 1.0), (1, 0.3))
                ),
                self.record(
                    tenant,
                    "D",
                    0,
                    "One zeppelin mentioned in a much longer text about balloons, gliders, kites and clouds.",
                    self.vec((6, 1.0), (0, 0.05)),
                ),
                self.record(tenant, "E", 0, "Garden tools and lawn care.", self.vec((2, 1.0), (0, 0.2))),
                self.record(tenant, "F", 0, "Tax forms for small businesses.", self.vec((3, 1.0), (0, 0.1))),
            ],
        )
        return self.vec((0, 1.0))

    @pytest.mark.parametrize("fusion", list(Fusion))
    async def test_hybrid_ranks_good_on_both_sides_first(
        self, store: VectorStore, tenant: str, fusion: Fusion
    ) -> None:
        query_vector = await self._hybrid_corpus(store, tenant)
        bm25 = await store.search(tenant, self.bm25("zeppelin"))
        dense = await store.search(tenant, self.dense(query_vector))
        # the premise: C is second best on the dense side and not ahead of A on the BM25 side
        assert self.docs(dense)[:2] == ["B", "C"]
        assert set(self.docs(bm25)[:2]) == {"A", "C"}
        hits = await store.search(tenant, self.hybrid("zeppelin", query_vector, alpha=0.5, fusion=fusion))
        assert self.docs(hits)[0] == "C"
        assert set(self.docs(hits)) == {"A", "B", "C", "D", "E", "F"}
        self.assert_best_first(hits)

    @pytest.mark.parametrize("fusion", list(Fusion))
    async def test_hybrid_alpha_extremes(self, store: VectorStore, tenant: str, fusion: Fusion) -> None:
        query_vector = await self._hybrid_corpus(store, tenant)
        pure_vector = await store.search(
            tenant, self.hybrid("zeppelin", query_vector, alpha=1.0, fusion=fusion)
        )
        assert self.docs(pure_vector)[0] == "B"
        pure_bm25 = await store.search(
            tenant, self.hybrid("zeppelin", query_vector, alpha=0.0, fusion=fusion)
        )
        assert self.docs(pure_bm25)[0] in {"A", "C"}
        assert "B" not in self.docs(pure_bm25)[:3]

    @pytest.mark.parametrize("fusion", list(Fusion))
    async def test_hybrid_alpha_weights_the_dense_side(
        self, store: VectorStore, tenant: str, fusion: Fusion
    ) -> None:
        # P: best on BM25, second on dense; Q: best on dense, second on BM25
        await store.upsert(
            tenant,
            [
                self.record(tenant, "P", 0, "Osprey osprey nest.", self.vec((0, 1.0), (1, 0.5))),
                self.record(
                    tenant,
                    "Q",
                    0,
                    "An osprey appears once in this rather long sentence about rivers and fishing.",
                    self.vec((0, 1.0)),
                ),
            ],
        )
        query_vector = self.vec((0, 1.0))
        assert self.docs(await store.search(tenant, self.bm25("osprey"))) == ["P", "Q"]
        assert self.docs(await store.search(tenant, self.dense(query_vector))) == ["Q", "P"]
        dense_heavy = await store.search(
            tenant, self.hybrid("osprey", query_vector, alpha=0.75, fusion=fusion)
        )
        assert self.docs(dense_heavy) == ["Q", "P"]
        bm25_heavy = await store.search(
            tenant, self.hybrid("osprey", query_vector, alpha=0.25, fusion=fusion)
        )
        assert self.docs(bm25_heavy) == ["P", "Q"]

    async def test_top_k_is_respected(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [self.record(tenant, f"doc{i}", 0, f"gecko note {i}") for i in range(12)])
        for top_k in (1, 5, 12):
            for query in self.all_modes("gecko", self.vec((0, 1.0), (1, 0.5)), top_k=top_k):
                hits = await store.search(tenant, query)
                assert len(hits) == top_k, (query.mode, top_k)
                assert len({h.chunk_id for h in hits}) == top_k
                self.assert_best_first(hits)

    async def test_metadata_filter_is_applied_inside_the_query(self, store: VectorStore, tenant: str) -> None:
        # English chunks are the better matches on both sides; the French ones must still fill top_k
        en = [
            self.record(
                tenant,
                f"en{i}",
                0,
                "lynx lynx lynx habitat",
                self.vec((0, 1.0), (1, 0.01 * i)),
                metadata={"lang": "en"},
            )
            for i in range(8)
        ]
        fr = [
            self.record(
                tenant,
                f"fr{i}",
                0,
                "le lynx vit dans la forêt boréale du nord",
                self.vec((0, 0.3), (2, 1.0 + 0.1 * i)),
                metadata={"lang": "fr"},
            )
            for i in range(4)
        ]
        await store.upsert(tenant, en + fr)
        for query in self.all_modes("lynx", self.vec((0, 1.0)), top_k=3, filters={"lang": "fr"}):
            hits = await store.search(tenant, query)
            assert len(hits) == 3, query.mode
            assert all(h.metadata.get("lang") == "fr" for h in hits), query.mode
            self.assert_best_first(hits)
        # the nearest French vector comes first
        (best,) = await store.search(tenant, self.dense(self.vec((0, 1.0)), top_k=1, filters={"lang": "fr"}))
        assert best.document_id == "fr0"
        assert await store.search(tenant, self.bm25("lynx", filters={"lang": "de"})) == []

    async def test_document_acl_is_applied_inside_the_query(self, store: VectorStore, tenant: str) -> None:
        # the restricted chunks are the better matches on both sides; the visible ones must fill top_k
        secret = [
            self.record(
                tenant,
                f"board{i}",
                0,
                "merger merger merger plans",
                self.vec((0, 1.0), (1, 0.01 * i)),
                metadata={"acl": "board, legal"},
            )
            for i in range(6)
        ]
        eng = [
            self.record(
                tenant,
                f"eng{i}",
                0,
                "merger of the two build systems",
                self.vec((0, 0.5), (2, 1.0)),
                metadata={"acl": "eng"},
            )
            for i in range(2)
        ]
        public = [
            self.record(tenant, f"pub{i}", 0, "press release about the merger", self.vec((0, 0.4), (3, 1.0)))
            for i in range(2)
        ]
        await store.upsert(tenant, secret + eng + public)
        for query in self.all_modes("merger", self.vec((0, 1.0)), top_k=4, principals=["eng", "alice"]):
            hits = await store.search(tenant, query)
            assert sorted(self.docs(hits)) == ["eng0", "eng1", "pub0", "pub1"], query.mode
            self.assert_best_first(hits)
        for query in self.all_modes("merger", self.vec((0, 1.0)), top_k=10, principals=[]):
            assert sorted(self.docs(await store.search(tenant, query))) == ["pub0", "pub1"], query.mode
        for query in self.all_modes("merger", self.vec((0, 1.0)), top_k=10, principals=["legal"]):
            assert len(await store.search(tenant, query)) == 8, query.mode  # board (via legal) + public
        # no principals given is no principals (there is no unchecked mode), in every search mode
        for query in self.all_modes("merger", self.vec((0, 1.0)), top_k=20):
            assert sorted(self.docs(await store.search(tenant, query))) == ["pub0", "pub1"], query.mode
        with pytest.raises(InvalidArgument, match="principals"):  # the old "None = unchecked" is refused
            await store.search(tenant, self.bm25("merger", principals=None))
        # ACL and metadata filters combine
        hits = await store.search(
            tenant, self.bm25("merger", top_k=20, principals=["eng"], filters={"document_id": "board0"})
        )
        assert hits == []

    async def test_document_id_filter(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(
            tenant,
            [self.record(tenant, "manual", i, f"wombat maintenance step {i}") for i in range(3)]
            + [self.record(tenant, "faq", i, f"wombat question {i}") for i in range(3)],
        )
        for query in self.all_modes("wombat", self.vec((0, 1.0)), top_k=10, filters={"document_id": "faq"}):
            hits = await store.search(tenant, query)
            assert self.docs(hits) == ["faq"] * 3, query.mode

    async def test_filters_combine_with_and(self, store: VectorStore, tenant: str) -> None:
        combos = [("en", "hr"), ("en", "it"), ("fr", "hr"), ("fr", "it")]
        await store.upsert(
            tenant,
            [
                self.record(
                    tenant, f"{lang}-{team}", 0, "badger policy text", metadata={"lang": lang, "team": team}
                )
                for lang, team in combos
            ],
        )
        hits = await store.search(tenant, self.bm25("badger", filters={"lang": "fr", "team": "it"}))
        assert self.docs(hits) == ["fr-it"]
        hits = await store.search(tenant, self.bm25("badger", filters={"lang": "fr", "document_id": "fr-hr"}))
        assert self.docs(hits) == ["fr-hr"]

    async def test_tenant_isolation(self, store: VectorStore, tenant: str, other_tenant: str) -> None:
        # identical document ids, chunk ids and vectors in both tenants; only the texts' marker differs
        def records(marker: str) -> list[ChunkRecord]:
            return [
                ChunkRecord(
                    chunk_id=chunk_uuid("shared", "doc", i),
                    document_id="doc",
                    chunk_index=i,
                    text=f"shared heron text {i} {marker}",
                    vector=self.vec((i, 1.0)),
                    model_id=MODEL,
                )
                for i in range(3)
            ]

        await store.upsert(tenant, records("crimson"))
        await store.upsert(other_tenant, [*records("cobalt"), self.record(other_tenant, "x", 5, "extra")])
        assert await store.count(tenant) == 3
        assert await store.count(other_tenant) == 4

        assert await store.search(tenant, self.bm25("cobalt")) == []
        assert await store.search(other_tenant, self.bm25("crimson")) == []
        for query in self.all_modes("heron", self.vec((0, 1.0)), top_k=10):
            assert all("crimson" in h.text for h in await store.search(tenant, query)), query.mode
            assert all("crimson" not in h.text for h in await store.search(other_tenant, query)), query.mode

        assert await store.delete_document(tenant, "doc") == 3
        assert await store.count(other_tenant) == 4
        await store.delete_tenant(tenant)
        assert await store.count(other_tenant) == 4
        assert len(await store.search(other_tenant, self.bm25("cobalt"))) == 3

    # -- mismatches and bad queries -------------------------------------------------------------------

    async def test_dimension_mismatch_is_rejected(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [self.record(tenant, "doc", 0, "first chunk fixes the dimension")])
        short = self.dimension // 2
        with pytest.raises(InvalidArgument) as err:
            await store.upsert(tenant, [self.record(tenant, "doc", 1, "wrong size", [1.0] * short)])
        assert names_both(str(err.value), short, self.dimension), str(err.value)
        assert await store.count(tenant) == 1

    async def test_model_mismatch_is_rejected(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [self.record(tenant, "doc", 0, "first chunk fixes the model")])
        with pytest.raises(InvalidArgument) as err:
            await store.upsert(tenant, [self.record(tenant, "doc", 1, "other model", model_id=OTHER_MODEL)])
        assert names_both(str(err.value), MODEL, OTHER_MODEL), str(err.value)
        assert await store.count(tenant) == 1

    async def test_query_vector_mismatches_are_rejected(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [self.record(tenant, "doc", 0, "some indexed text")])
        short = self.dimension // 2
        for mode in (SearchMode.DENSE, SearchMode.HYBRID):
            with pytest.raises(InvalidArgument) as err:
                await store.search(
                    tenant, SearchQuery(text="text", vector=[1.0] * short, model_id=MODEL, mode=mode)
                )
            assert names_both(str(err.value), short, self.dimension), str(err.value)
            with pytest.raises(InvalidArgument) as err:
                await store.search(
                    tenant,
                    SearchQuery(text="text", vector=self.vec((0, 1.0)), model_id=OTHER_MODEL, mode=mode),
                )
            assert names_both(str(err.value), MODEL, OTHER_MODEL), str(err.value)

    async def test_dense_and_hybrid_need_a_vector(self, store: VectorStore, tenant: str) -> None:
        await store.upsert(tenant, [self.record(tenant, "doc", 0, "some indexed text")])
        for mode in (SearchMode.DENSE, SearchMode.HYBRID):
            with pytest.raises(InvalidArgument, match="vector"):
                await store.search(tenant, SearchQuery(text="text", vector=None, mode=mode))
        # BM25 needs none
        assert len(await store.search(tenant, self.bm25("indexed"))) == 1
