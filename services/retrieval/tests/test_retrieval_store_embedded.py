"""EmbeddedStore: the store conformance suite, plus what only the embedded adapter promises
(persistence across reopen and crashes, atomic batches, tenant-name rules, closed-store errors)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from usearch.index import Index

from isthmus_core.errors import FailedPrecondition, InvalidArgument, NotFound
from isthmus_core.store.port import ChunkRecord, Fusion, SearchMode, SearchQuery, VectorStore, chunk_uuid
from isthmus_core.testing.store_conformance import StoreConformance, basis
from isthmus_retrieval import store_embedded
from isthmus_retrieval.store_embedded import EmbeddedStore

DIM = 8
MODEL = "test-model"


class TestEmbeddedStoreConformance(StoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[VectorStore]:
        store = EmbeddedStore(tmp_path / "store")
        yield store
        await store.close()


class TestEmbeddedStoreConformanceThroughHnsw(StoreConformance):
    """The same suite with exact search switched off, so unfiltered dense search goes through HNSW."""

    @pytest.fixture
    async def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VectorStore]:
        monkeypatch.setattr(store_embedded, "EXACT_SEARCH_MAX", 0)
        store = EmbeddedStore(tmp_path / "store")
        yield store
        await store.close()


def rec(
    tenant: str,
    doc: str,
    i: int,
    text: str,
    axis: int | None = None,
    *,
    metadata: dict[str, str] | None = None,
    vector: list[float] | None = None,
    model_id: str = MODEL,
) -> ChunkRecord:
    return ChunkRecord(
        chunk_id=chunk_uuid(tenant, doc, i),
        document_id=doc,
        chunk_index=i,
        text=text,
        vector=vector
        if vector is not None
        else basis(DIM, ((i if axis is None else axis) % DIM, 1.0), (7, 0.1)),
        model_id=model_id,
        start=i * 10,
        end=i * 10 + len(text),
        metadata=metadata or {},
    )


CORPUS = [
    ("animals", "The capybara is the largest rodent; capybaras live in South America.", {"kind": "zoo"}),
    ("animals", "Axolotls regenerate limbs and live in lakes near Mexico City.", {"kind": "zoo"}),
    ("finance", "Quarterly revenue grew while operating costs fell.", {"kind": "report"}),
    ("finance", "The capybara mascot appeared in the annual revenue report.", {"kind": "report"}),
    ("travel", "Lakes and rivers of South America attract many travellers.", {"kind": "guide"}),
]


def queries() -> list[SearchQuery]:
    v = basis(DIM, (0, 1.0), (3, 0.4))
    return [
        SearchQuery(text="capybara revenue", mode=SearchMode.BM25, top_k=5),
        SearchQuery(text="", vector=v, model_id=MODEL, mode=SearchMode.DENSE, top_k=5),
        SearchQuery(text="capybara lakes", vector=v, model_id=MODEL, top_k=5),
        SearchQuery(text="capybara lakes", vector=v, model_id=MODEL, top_k=5, fusion=Fusion.RELATIVE_SCORE),
        SearchQuery(text="capybara", vector=v, model_id=MODEL, top_k=5, filters={"kind": "report"}),
        SearchQuery(text="south america", mode=SearchMode.BM25, filters={"document_id": "travel"}),
    ]


async def fill(store: EmbeddedStore, tenant: str) -> None:
    await store.create_tenant(tenant)
    await store.upsert(
        tenant, [rec(tenant, doc, i, text, metadata=meta) for i, (doc, text, meta) in enumerate(CORPUS)]
    )


async def snapshot(store: EmbeddedStore, tenant: str) -> list[list[tuple[str, float]]]:
    return [[(h.chunk_id, round(h.score, 5)) for h in await store.search(tenant, q)] for q in queries()]


# -- persistence ------------------------------------------------------------------------------------


async def test_reopen_keeps_tenants_chunks_and_results(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    await fill(store, "globex")
    await store.delete_document("globex", "finance")
    before = {t: await snapshot(store, t) for t in ("acme", "globex")}
    assert all(any(result) for result in before["acme"])
    await store.close()

    reopened = EmbeddedStore(tmp_path)
    try:
        assert await reopened.list_tenants() == ["acme", "globex"]
        assert await reopened.count("acme") == len(CORPUS)
        assert await reopened.count("globex") == len(CORPUS) - 2
        for tenant in ("acme", "globex"):
            assert await snapshot(reopened, tenant) == before[tenant]
        # the reopened store keeps working: writes after reopen are searchable
        await reopened.upsert("acme", [rec("acme", "new", 0, "A brand new okapi chunk.")])
        hits = await reopened.search("acme", SearchQuery(text="okapi", mode=SearchMode.BM25))
        assert [h.document_id for h in hits] == ["new"]
        # the tenant's dimension and model survived the reopen
        with pytest.raises(InvalidArgument, match="other-model"):
            await reopened.upsert("acme", [rec("acme", "new", 1, "x y z", model_id="other-model")])
    finally:
        await reopened.close()


async def test_reopen_without_close_rebuilds_indexes_from_rows(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    await store.close()  # vectors saved at this generation
    crashed = EmbeddedStore(tmp_path)
    await crashed.upsert("acme", [rec("acme", "late", 9, "The late okapi arrives.", axis=0)])
    expected = await snapshot(crashed, "acme")
    # no close(): the saved vector index is one generation behind the rows

    recovered = EmbeddedStore(tmp_path)
    try:
        assert await recovered.count("acme") == len(CORPUS) + 1
        assert await snapshot(recovered, "acme") == expected
        hits = await recovered.search(
            "acme", SearchQuery(text="", vector=basis(DIM, (0, 1.0)), model_id=MODEL, mode=SearchMode.DENSE)
        )
        assert "late" in [h.document_id for h in hits[:2]]
    finally:
        await recovered.close()
        await crashed.close()


async def test_corrupt_index_files_are_rebuilt(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    expected = await snapshot(store, "acme")
    await store.close()
    (tmp_path / "acme" / "vectors.usearch").write_bytes(b"garbage")
    for path in (tmp_path / "acme" / "bm25").iterdir():
        if path.suffix == ".npy":
            path.write_bytes(b"garbage")

    reopened = EmbeddedStore(tmp_path)
    try:
        assert await snapshot(reopened, "acme") == expected
    finally:
        await reopened.close()
    # the rebuilt vector index was written back over the corrupt file
    restored = Index.restore(str(tmp_path / "acme" / "vectors.usearch"))
    assert restored is not None and len(restored) == len(CORPUS)


async def test_delete_tenant_removes_its_files(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    await store.search("acme", queries()[0])  # builds and persists the BM25 index
    assert (tmp_path / "acme").is_dir()
    await store.delete_tenant("acme")
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
    await store.close()


# -- writes -----------------------------------------------------------------------------------------


async def test_rejected_batch_writes_nothing(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    good = rec("acme", "doc", 0, "a valid chunk about tapirs")
    bad_dimension = rec("acme", "doc", 1, "bad", vector=[1.0, 0.0, 0.0])
    with pytest.raises(InvalidArgument) as err:
        await store.upsert("acme", [good, bad_dimension])
    assert "3" in str(err.value) and "8" in str(err.value)
    assert await store.count("acme") == 0
    # the rejected batch did not fix the dimension either: a 3-d first batch is fine
    await store.upsert("acme", [rec("acme", "doc", 2, "three dims", vector=[1.0, 0.0, 0.0])])
    assert await store.count("acme") == 1
    await store.close()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"text": "   "}, "empty text"),
        ({"chunk_id": ""}, "chunk_id"),
        ({"document_id": ""}, "document_id"),
        ({"model_id": ""}, "model_id"),
        ({"vector": []}, "empty vector"),
        ({"vector": [0.0] * DIM}, "zero length"),
        ({"vector": [float("nan")] * DIM}, "NaN"),
        ({"chunk_index": -1}, "chunk_index"),
        ({"start": 5, "end": 2}, "span"),
        ({"metadata": {"lang": 3}}, "metadata"),
    ],
)
async def test_invalid_records_are_rejected(tmp_path: Path, change: dict[str, object], match: str) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    fields = {
        "chunk_id": "c1",
        "document_id": "d1",
        "chunk_index": 0,
        "text": "fine text",
        "vector": basis(DIM, (0, 1.0)),
        "model_id": MODEL,
        **change,
    }
    with pytest.raises(InvalidArgument, match=match):
        await store.upsert("acme", [ChunkRecord(**fields)])  # type: ignore[arg-type]
    assert await store.count("acme") == 0
    await store.close()


async def test_duplicate_ids_in_one_batch_last_wins(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    first = rec("acme", "doc", 0, "the gazelle version")
    second = dataclasses.replace(first, text="the impala version")
    await store.upsert("acme", [first, second])
    assert await store.count("acme") == 1
    assert await store.search("acme", SearchQuery(text="gazelle", mode=SearchMode.BM25)) == []
    assert len(await store.search("acme", SearchQuery(text="impala", mode=SearchMode.BM25))) == 1
    await store.close()


async def test_concurrent_writes_to_one_tenant(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    await asyncio.gather(
        *(
            store.upsert("acme", [rec("acme", f"doc{d}", i, f"marmot {d} {i}") for i in range(5)])
            for d in range(8)
        )
    )
    assert await store.count("acme") == 40
    hits = await store.search("acme", SearchQuery(text="marmot", mode=SearchMode.BM25, top_k=100))
    assert len(hits) == 40
    await store.close()


async def test_bm25_index_follows_writes(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    query = SearchQuery(text="pangolin", mode=SearchMode.BM25)
    await store.upsert("acme", [rec("acme", "a", 0, "a chunk about lemurs")])
    assert await store.search("acme", query) == []  # builds the index
    await store.upsert("acme", [rec("acme", "b", 0, "a chunk about pangolins")])
    assert [h.document_id for h in await store.search("acme", query)] == ["b"]  # stale index rebuilt
    await store.delete_document("acme", "b")
    assert await store.search("acme", query) == []
    await store.close()


async def test_stemming_matches_word_forms(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    await store.upsert(
        "acme", [rec("acme", "a", 0, "The engines were running hot."), rec("acme", "b", 1, "Cold.")]
    )
    hits = await store.search("acme", SearchQuery(text="engine runs", mode=SearchMode.BM25))
    assert [h.document_id for h in hits] == ["a"]
    # a query of stopwords only matches nothing
    assert await store.search("acme", SearchQuery(text="the of and", mode=SearchMode.BM25)) == []
    await store.close()


# -- search arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "match"),
    [
        (SearchQuery(text="x", mode=SearchMode.BM25, top_k=0), "top_k"),
        (SearchQuery(text="x", mode=SearchMode.BM25, candidates=0), "candidates"),
        (SearchQuery(text="x", vector=basis(DIM, (0, 1.0)), alpha=1.5), "alpha"),
        (SearchQuery(text="  ", mode=SearchMode.BM25), "query text"),
        (SearchQuery(text="x", mode="fuzzy"), "mode"),  # type: ignore[arg-type]
        (SearchQuery(text="x", vector=basis(DIM, (0, 1.0)), fusion="magic"), "fusion"),  # type: ignore[arg-type]
        (SearchQuery(text="x", vector=[0.0] * DIM, mode=SearchMode.DENSE), "zero length"),
        (SearchQuery(text="x", mode=SearchMode.BM25, filters={"lang": 1}), "filters"),  # type: ignore[dict-item]
    ],
)
async def test_invalid_queries_are_rejected(tmp_path: Path, query: SearchQuery, match: str) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    with pytest.raises(InvalidArgument, match=match):
        await store.search("acme", query)
    await store.close()


async def test_query_without_model_id_skips_the_model_check(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    hits = await store.search(
        "acme", SearchQuery(text="", vector=basis(DIM, (1, 1.0)), mode=SearchMode.DENSE, top_k=1)
    )
    assert [h.chunk_index for h in hits] == [1]
    await store.close()


async def test_filtered_dense_search_is_exact_over_the_subset(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await store.create_tenant("acme")
    # 200 "near" chunks outside the filter, 5 "far" ones inside it
    near = [
        rec("acme", "near", i, f"near {i}", vector=basis(DIM, (0, 1.0), (1, 0.001 * i))) for i in range(200)
    ]
    far = [
        rec(
            "acme",
            "far",
            200 + i,
            f"far {i}",
            vector=basis(DIM, (0, 0.1 * (i + 1)), (2, 1.0)),
            metadata={"t": "x"},
        )
        for i in range(5)
    ]
    await store.upsert("acme", near + far)
    query = SearchQuery(
        text="",
        vector=basis(DIM, (0, 1.0)),
        model_id=MODEL,
        mode=SearchMode.DENSE,
        top_k=5,
        filters={"t": "x"},
    )
    hits = await store.search("acme", query)
    # best first = the far chunks with the largest axis-0 component
    assert [h.chunk_index for h in hits] == [204, 203, 202, 201, 200]
    await store.close()


# -- tenants and lifecycle --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "../escape", "-lead", "a/b", ".hidden", "x" * 65, "sp ace"])
async def test_invalid_tenant_names_are_rejected(tmp_path: Path, bad: str) -> None:
    store = EmbeddedStore(tmp_path / "store")
    with pytest.raises(InvalidArgument, match="tenant"):
        await store.create_tenant(bad)
    with pytest.raises(InvalidArgument):
        await store.has_tenant(bad)
    assert list((tmp_path / "store").iterdir()) == []
    assert not (tmp_path / "escape").exists()
    await store.close()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(FailedPrecondition, match="closed"):
        await store.count("acme")
    with pytest.raises(FailedPrecondition):
        await store.list_tenants()
    with pytest.raises(FailedPrecondition):
        await store.search("acme", queries()[0])


async def test_operations_racing_a_tenant_delete_see_not_found(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    await fill(store, "acme")
    results = await asyncio.gather(
        store.delete_tenant("acme"),
        store.count("acme"),
        store.upsert("acme", [rec("acme", "x", 0, "late write")]),
        return_exceptions=True,
    )
    assert results[0] is None
    assert all(isinstance(r, NotFound) for r in results[1:]), results
    assert not await store.has_tenant("acme")
    await store.close()
