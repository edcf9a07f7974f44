"""The scale benchmark at a tiny scale: it runs end to end through the port and reports sane figures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from isthmus_bench import scale as bench_scale
from isthmus_bench.scale import (
    SyntheticCorpus,
    format_report,
    make_store,
    parse_args,
    report_json,
    run,
)


async def test_bench_runs_end_to_end(tmp_path: Path) -> None:
    args = parse_args(
        ["--chunks", "2000", "--queries", "40", "--batch", "500", "--tmpdir", str(tmp_path), "--quiet"]
    )
    report = await run(args)

    assert report.config["chunks"] == 2000 and report.config["queries"] == 40
    assert report.build["upsert_s"] > 0 and report.build["first_search_s"] >= 0
    assert set(report.modes) == {"hybrid", "dense", "bm25"}
    for mode in report.modes.values():
        lat = mode.latency_ms
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert mode.source_found_at_10 > 0.5  # queries are made from a chunk: each mode mostly finds it
    # 2,000 chunks are below the embedded store's exact-search threshold: dense search is exact
    assert report.modes["dense"].recall_at_10 == pytest.approx(1.0)
    assert report.modes["hybrid"].recall_at_10 is not None and report.modes["hybrid"].recall_at_10 >= 0.95
    assert report.rss_mb["peak"] > 0 and report.rss_mb["query_phase_max"] > 0
    assert report.baseline["exact_dense_latency_ms"]["p50"] > 0
    assert 0 < report.data["nn10_cosine_mean"] < report.data["nn1_cosine_mean"] <= 1.0

    text = format_report(report)
    assert "hybrid" in text and "recall@10" in text and "exact dense" in text
    encoded = json.loads(json.dumps(report_json(report)))
    assert encoded["modes"]["dense"]["recall_at_10"] == pytest.approx(1.0)
    # the temporary store was removed
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


def test_corpus_is_deterministic_and_regenerable() -> None:
    def corpus() -> SyntheticCorpus:
        return SyntheticCorpus(chunks=300, dim=16, seed=5, clusters=8, vocab=2000, batch=100)

    a, b = corpus(), corpus()
    records, vectors, texts = a.batch_records(1)
    assert len(records) == 100 and records[0].chunk_index == 100 % bench_scale.CHUNKS_PER_DOCUMENT
    np.testing.assert_array_equal(vectors, b.vectors(1))  # ground truth regenerates the same vectors
    assert texts == b.texts(1, b.cluster_of(1))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert all(60 <= len(t.split()) <= 120 for t in texts)


async def test_bench_runs_against_a_real_weaviate(weaviate_server) -> None:  # type: ignore[no-untyped-def]
    args = parse_args(
        [
            "--store", "weaviate", "--chunks", "1500", "--queries", "30", "--batch", "500", "--quiet",
            "--weaviate-url", weaviate_server.url,
            "--weaviate-grpc-port", str(weaviate_server.grpc_port),
            "--weaviate-collection", "IsthmusBenchTest",
            "--weaviate-dir", str(weaviate_server.data or "/nonexistent"),
        ]
    )  # fmt: skip
    report = await run(args)
    assert "WeaviateStore" in report.store
    for mode in report.modes.values():
        assert 0 < mode.latency_ms["p50"] <= mode.latency_ms["p99"]
        assert mode.source_found_at_10 > 0.5
    assert report.modes["dense"].recall_at_10 is not None and report.modes["dense"].recall_at_10 >= 0.9
    if weaviate_server.data is not None:
        assert report.rss_mb["server_peak"] > 0
    # the bench tenant is gone afterwards
    handle = make_store("weaviate", args)
    try:
        assert not await handle.store.has_tenant(bench_scale.TENANT)
    finally:
        await handle.store.close()


def test_streamed_bm25_index_matches_bm25s(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded store builds its BM25 index in streamed blocks (for a million chunks) and scores
    queries itself: the same scores as bm25s's own ``index`` + ``get_scores``, bit for bit."""
    import sqlite3

    import bm25s

    from isthmus_retrieval import store_embedded
    from isthmus_retrieval.analyzer import Analyzer

    corpus = SyntheticCorpus(chunks=1500, dim=8, seed=3, clusters=12, vocab=3000, batch=500)
    texts = [t for b in range(corpus.batches) for t in corpus.texts(b, corpus.cluster_of(b))]
    texts[7] = "the of and"  # a chunk without any term still counts as a document
    terms = Analyzer().terms(texts)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE chunks (key INTEGER PRIMARY KEY, terms TEXT)")
    db.executemany(
        "INSERT INTO chunks VALUES (?, ?)", [(3 * i + 1, " ".join(t)) for i, t in enumerate(terms)]
    )
    monkeypatch.setattr(store_embedded, "_BM25_BLOCK", 400)  # several blocks

    built, keys = store_embedded._build_bm25(db)
    reference = bm25s.BM25(k1=store_embedded.BM25_K1, b=store_embedded.BM25_B)
    reference.index(terms, show_progress=False)
    assert built is not None
    np.testing.assert_array_equal(keys, 3 * np.arange(len(terms)) + 1)

    vocab = sorted(set(reference.vocab_dict) - {""})
    rng = np.random.default_rng(0)
    for _ in range(300):
        query = [str(t) for t in rng.choice(vocab, int(rng.integers(1, 5)))] + ["notaword"]
        scored = store_embedded._bm25_scores(built, query)
        assert scored is not None
        scores, _ = scored
        np.testing.assert_array_equal(scores, reference.get_scores(query))
    assert store_embedded._bm25_scores(built, ["notaword"]) is None


async def test_bm25_search_ranks_like_a_full_sort(tmp_path: Path) -> None:
    """Through the store: the rows BM25 search ranks are the best-scoring ones, however the selection
    prunes them."""
    import bm25s

    from isthmus_core.store.port import SearchMode, SearchQuery
    from isthmus_retrieval.analyzer import Analyzer
    from isthmus_retrieval.store_embedded import BM25_B, BM25_K1, EmbeddedStore

    corpus = SyntheticCorpus(chunks=1200, dim=8, seed=4, clusters=10, vocab=2000, batch=400)
    store = EmbeddedStore(tmp_path)
    await store.create_tenant(bench_scale.TENANT)
    texts: list[str] = []
    for b in range(corpus.batches):
        records, _, batch_texts = corpus.batch_records(b)
        await store.upsert(bench_scale.TENANT, records)
        texts += batch_texts
    reference = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    reference.index(Analyzer().terms(texts), show_progress=False)
    rng = np.random.default_rng(1)
    words = [w for w in corpus.words[:1500] if w not in {"the", "of", "and"}]
    try:
        for _ in range(60):
            text = " ".join(str(w) for w in rng.choice(words, int(rng.integers(1, 4))))
            top_k = int(rng.choice([1, 5, 10, 50]))
            hits = await store.search(
                bench_scale.TENANT, SearchQuery(text=text, mode=SearchMode.BM25, top_k=top_k)
            )
            expected = np.sort(reference.get_scores(Analyzer().query_terms(text)))[::-1]
            expected = expected[expected > 0][:top_k]
            np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-6)
    finally:
        await store.close()
