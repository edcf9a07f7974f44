"""Scale benchmark for a :class:`~isthmus_core.store.port.VectorStore`: build time, latency, recall, RSS.

Run::

    .venv/bin/python -m isthmus_bench.scale --store embedded --chunks 1000000 \
        [--queries 1000] [--json]

Written against the port only (``create_tenant``, ``upsert`` in batches, ``search``, ``close``), so the same
script benches any adapter: :func:`make_store` is the one place that knows the concrete stores.

Synthetic corpus (fixed seed, generated in streaming batches, never held whole in memory):

* vectors: ``--clusters`` cluster centres, themselves grouped around 64 super-centres, and points
  scattered around their centre by anisotropic gaussian noise (a power-law spectrum under a random
  rotation, so the data has a low intrinsic dimension like real embeddings rather than being uniform
  noise), L2-normalised;
* texts: 60-120 words from a Zipfian vocabulary of ``--vocab`` words whose top ranks are common
  English words (the analyser drops the stopwords among them, as in real text), 30% of each chunk's
  words coming from topic words of its cluster, so BM25 and dense search broadly agree;
* queries: a random chunk's vector perturbed by noise, plus 2-4 of its content words (and, every other
  query, one random vocabulary word).

Every batch is regenerated from ``(seed, batch number)``, so ground truth is computed after the build by
regenerating the vectors instead of keeping them.

Measured: build (all upserts; the index work of the first search, reported separately), latency
p50/p95/p99 of hybrid (ranked fusion, top 10), dense and BM25 searches, recall@10 of dense search against
exact brute force (numpy) and of hybrid against the same fusion fed with exact dense candidates, the
rate at which each mode finds the chunk a query was made from, peak RSS (``ru_maxrss``) and RSS during
the query phase. The exact brute-force search over the same vectors is timed as a baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus_core.store.port import ChunkRecord, Fusion, SearchMode, SearchQuery, VectorStore, chunk_uuid
from isthmus_retrieval.fusion import RRF_K, reciprocal_rank_fusion

TENANT = "bench"
MODEL = "bench-synthetic-384"
CHUNKS_PER_DOCUMENT = 8
TOP_K = 10
#: the most frequent words of English, roughly by rank: the top of the synthetic Zipfian vocabulary
COMMON_WORDS = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there been one all we their has would when if so no will more can "
    "who its into them other also some what only time new then about these two may first than any "
    "most such over like our well years after used people him could made many way use three work "
    "where between each part through world between state found however much under both back same "
    "three before must should because system general year number great called known since against "
    "often during life water place different still including small within group being long high "
    "while"
).split()

F32 = npt.NDArray[np.float32]


# -- synthetic corpus --------------------------------------------------------------------------------


class SyntheticCorpus:
    """Deterministic clustered vectors and Zipfian texts, produced batch by batch."""

    def __init__(
        self,
        *,
        chunks: int,
        dim: int,
        seed: int,
        clusters: int,
        vocab: int,
        batch: int,
        topic_share: float = 0.3,
        spread: float = 0.8,
    ) -> None:
        self.chunks, self.dim, self.seed, self.batch = chunks, dim, seed, batch
        self.clusters = clusters
        self.topic_share = topic_share
        self.spread = spread
        rng = np.random.default_rng([seed, 0])
        # centres: 64 super-centres, each cluster centre a noisy copy of one of them
        supers = _normalise(rng.standard_normal((64, dim)).astype(np.float32))
        owner = rng.integers(0, len(supers), clusters)
        noise = rng.standard_normal((clusters, dim)).astype(np.float32) / np.sqrt(dim)
        self.centres = _normalise(supers[owner] + noise)
        # cluster sizes vary (log-normal weights)
        weights = rng.lognormal(0.0, 1.0, clusters)
        self.cluster_cdf = np.cumsum(weights / weights.sum())
        # anisotropic within-cluster noise: power-law spectrum under a random rotation
        spectrum = (np.arange(1, dim + 1, dtype=np.float64)) ** -0.5
        self.spectrum = (spectrum / np.sqrt((spectrum**2).sum())).astype(np.float32)
        self.rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
        # vocabulary: common English words first, then pronounceable pseudo-words
        self.words = np.array(_vocabulary(rng, vocab), dtype=object)
        ranks = np.arange(1, len(self.words) + 1, dtype=np.float64)
        self.word_cdf = np.cumsum(1.0 / ranks) / np.sum(1.0 / ranks)
        self.content = np.array([w not in _STOPWORDS for w in self.words], dtype=bool)
        # topic words of each cluster: 40 mid-frequency words, Zipf-weighted within the topic
        lo, hi = min(len(COMMON_WORDS) + 100, len(self.words) - 1), min(20_000, len(self.words))
        self.topics = rng.integers(lo, max(hi, lo + 1), (clusters, 40))
        topic_ranks = np.arange(1, 41, dtype=np.float64)
        self.topic_cdf = np.cumsum(1.0 / topic_ranks) / np.sum(1.0 / topic_ranks)

    @property
    def batches(self) -> int:
        return -(-self.chunks // self.batch)

    def rows(self, b: int) -> range:
        return range(b * self.batch, min((b + 1) * self.batch, self.chunks))

    def cluster_of(self, b: int) -> npt.NDArray[np.int64]:
        rng = np.random.default_rng([self.seed, 1, b])
        u = rng.random(len(self.rows(b)))
        return np.minimum(np.searchsorted(self.cluster_cdf, u), self.clusters - 1)

    def noise(self, rng: np.random.Generator, n: int) -> F32:
        z = rng.standard_normal((n, self.dim), dtype=np.float32)
        return np.asarray((z * self.spectrum) @ self.rotation, dtype=np.float32)

    def vectors(self, b: int, clusters: npt.NDArray[np.int64] | None = None) -> F32:
        if clusters is None:
            clusters = self.cluster_of(b)
        rng = np.random.default_rng([self.seed, 2, b])
        return _normalise(self.centres[clusters] + self.spread * self.noise(rng, len(clusters)))

    def texts(self, b: int, clusters: npt.NDArray[np.int64]) -> list[str]:
        rng = np.random.default_rng([self.seed, 3, b])
        n = len(clusters)
        lengths = rng.integers(60, 121, n)
        total = int(lengths.sum())
        ids = np.minimum(np.searchsorted(self.word_cdf, rng.random(total)), len(self.words) - 1)
        owner = np.repeat(clusters, lengths)
        topical = rng.random(total) < self.topic_share
        pick = np.minimum(np.searchsorted(self.topic_cdf, rng.random(int(topical.sum()))), 39)
        ids[topical] = self.topics[owner[topical], pick]
        words = self.words[ids]
        ends = np.cumsum(lengths)
        return [" ".join(words[e - k : e]) for e, k in zip(ends.tolist(), lengths.tolist(), strict=True)]

    def batch_records(self, b: int) -> tuple[list[ChunkRecord], F32, list[str]]:
        clusters = self.cluster_of(b)
        vectors = self.vectors(b, clusters)
        texts = self.texts(b, clusters)
        records = [
            ChunkRecord(
                chunk_id=chunk_id(row),
                document_id=document_id(row),
                chunk_index=row % CHUNKS_PER_DOCUMENT,
                text=text,
                vector=vector.tolist(),
                model_id=MODEL,
                start=0,
                end=len(text),
                metadata={"cluster": str(int(c))},
            )
            for row, text, vector, c in zip(self.rows(b), texts, vectors, clusters, strict=True)
        ]
        return records, vectors, texts


@dataclass
class BenchQuery:
    row: int  # the chunk the query was made from
    text: str
    vector: list[float]


def make_query(
    corpus: SyntheticCorpus, rng: np.random.Generator, row: int, vector: F32, text: str
) -> BenchQuery:
    noisy = _normalise((vector + 0.5 * corpus.spread * corpus.noise(rng, 1)[0])[None, :])[0]
    content = [w for w in text.split() if w not in _STOPWORDS and w not in _COMMON]
    if not content:
        content = text.split()
    picked = list(rng.choice(content, size=min(len(content), int(rng.integers(2, 5))), replace=False))
    if rng.random() < 0.5:
        picked.append(str(corpus.words[int(np.searchsorted(corpus.word_cdf, rng.random()))]))
    return BenchQuery(row=row, text=" ".join(str(w) for w in picked), vector=noisy.tolist())


def chunk_id(row: int) -> str:
    return str(chunk_uuid(TENANT, document_id(row), row % CHUNKS_PER_DOCUMENT))


def document_id(row: int) -> str:
    return f"doc-{row // CHUNKS_PER_DOCUMENT:08d}"


_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_COMMON = frozenset(COMMON_WORDS)


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    common = list(dict.fromkeys(COMMON_WORDS))
    onsets = [*"bcdfghjklmnprstvwz", "ch", "sh", "th", "tr", "st", "pl", "gr", "br", "kr", "fl"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea", "io"]
    codas = ["", "", "", "n", "r", "l", "s", "t", "m", "nd", "rk", "st", "x"]
    seen = set(common)
    words = list(common)
    while len(words) < size:
        syllables = int(rng.integers(2, 5))
        word = (
            "".join(
                onsets[int(rng.integers(len(onsets)))] + vowels[int(rng.integers(len(vowels)))]
                for _ in range(syllables)
            )
            + codas[int(rng.integers(len(codas)))]
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words[:size]


def _normalise(x: F32) -> F32:
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


# -- stores --------------------------------------------------------------------------------------------


@dataclass
class StoreHandle:
    store: VectorStore
    describe: str
    disk_path: Path | None = None  # for the on-disk size, when the store lives on local disk
    cleanup: Callable[[], Awaitable[None] | None] | None = None
    #: a store server on this machine (Weaviate): its peak/current RSS are reported too
    server_pid: int | None = None


def make_store(kind: str, args: argparse.Namespace) -> StoreHandle:
    """The store under test. Add new adapters here; everything else only talks to the port."""
    if kind == "embedded":
        from isthmus_retrieval.store_embedded import EmbeddedStore

        if args.root:
            root = Path(args.root)
            if not args.reuse and root.exists() and any(root.iterdir()):
                raise SystemExit(f"--root {root} is not empty; give an empty or new directory (or --reuse)")
            keep = True
        else:
            root = Path(tempfile.mkdtemp(prefix="isthmus-bench-", dir=args.tmpdir))
            keep = args.keep
        return StoreHandle(
            store=EmbeddedStore(root),
            describe=f"EmbeddedStore at {root}",
            disk_path=root,
            cleanup=None if keep else lambda: shutil.rmtree(root, ignore_errors=True),
        )
    if kind == "weaviate":
        from isthmus_retrieval.store_weaviate import WeaviateConfig, WeaviateStore

        config = WeaviateConfig(
            url=args.weaviate_url,
            grpc_port=args.weaviate_grpc_port,
            collection=args.weaviate_collection,
            query_timeout_s=60.0,
            insert_timeout_s=300.0,
        )
        pid_file = Path(args.weaviate_dir) / "weaviate.pid"
        pid = int(pid_file.read_text().strip()) if pid_file.is_file() else None

        async def drop_tenant() -> None:
            other = WeaviateStore(config)
            try:
                if await other.has_tenant(TENANT):
                    await other.delete_tenant(TENANT)
            finally:
                await other.close()

        return StoreHandle(
            store=WeaviateStore(config),
            describe=f"WeaviateStore at {args.weaviate_url} (collection {args.weaviate_collection})",
            cleanup=None if args.keep else drop_tenant,
            server_pid=pid,
        )
    raise SystemExit(f"unknown --store {kind!r}; choose from: embedded, weaviate")


# -- measuring -----------------------------------------------------------------------------------------


def server_rss_mb(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) resident set of another process on this machine, in MiB."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out["peak" if key == "VmHWM" else "now"] = int(value.split()[0]) / 1024
    return out


def rss_now_mb() -> float:
    """Current resident set size (VmRSS), in MiB."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_peak_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {}
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def _dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


@dataclass
class ModeResult:
    latency_ms: dict[str, float]
    recall_at_10: float | None = None
    source_found_at_10: float = 0.0  # share of queries whose own source chunk is in the top 10


@dataclass
class Report:
    config: dict[str, Any]
    store: str
    build: dict[str, float] = field(default_factory=dict)
    modes: dict[str, ModeResult] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    data: dict[str, float] = field(default_factory=dict)


def _progress(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> Report:
    clusters = args.clusters or int(min(2000, max(8, args.chunks // 100)))
    corpus = SyntheticCorpus(
        chunks=args.chunks,
        dim=args.dim,
        seed=args.seed,
        clusters=clusters,
        vocab=args.vocab,
        batch=args.batch,
    )
    n_queries = min(args.queries, args.chunks)
    config = {
        "chunks": args.chunks,
        "dim": args.dim,
        "queries": n_queries,
        "batch": args.batch,
        "seed": args.seed,
        "clusters": clusters,
        "vocab": args.vocab,
        "top_k": TOP_K,
        "candidates": args.candidates,
        "alpha": 0.5,
        "fusion": "ranked",
        "reused_store": bool(args.reuse),
    }
    handle = make_store(args.store, args)
    report = Report(config=config, store=handle.describe)
    store = handle.store
    _progress(args, f"{handle.describe}: {args.chunks} chunks, dim {args.dim}, {clusters} clusters")
    try:
        # -- build -----------------------------------------------------------------------------------
        qrng = np.random.default_rng([args.seed, 4])
        source_rows = np.sort(qrng.choice(args.chunks, n_queries, replace=False))
        queries: list[BenchQuery] = []
        if args.reuse:
            # a store this bench built before with the same corpus options: only the queries are made
            if not await store.has_tenant(TENANT) or await store.count(TENANT) != args.chunks:
                raise SystemExit(f"--reuse: {handle.describe} does not hold the {args.chunks} bench chunks")
        else:
            if await store.has_tenant(TENANT):  # left by an interrupted run on a server store
                await store.delete_tenant(TENANT)
            await store.create_tenant(TENANT)
        upsert_s = generate_s = 0.0
        next_source = 0
        for b in range(corpus.batches):
            rows = corpus.rows(b)
            if args.reuse and (next_source >= n_queries or source_rows[next_source] >= rows.stop):
                continue
            t0 = time.perf_counter()
            records, vectors, texts = corpus.batch_records(b)
            while next_source < n_queries and source_rows[next_source] < rows.stop:
                i = int(source_rows[next_source]) - rows.start
                queries.append(make_query(corpus, qrng, int(source_rows[next_source]), vectors[i], texts[i]))
                next_source += 1
            t1 = time.perf_counter()
            if not args.reuse:
                await store.upsert(TENANT, records)
            t2 = time.perf_counter()
            generate_s += t1 - t0
            upsert_s += t2 - t1
            del records, vectors, texts
            if not args.reuse and (b % max(1, corpus.batches // 20) == 0 or b == corpus.batches - 1):
                done = min((b + 1) * corpus.batch, args.chunks)
                _progress(
                    args,
                    f"upserted {done}/{args.chunks} ({done / max(upsert_s, 1e-9):.0f}/s in upsert, "
                    f"rss {rss_now_mb():.0f} MiB)",
                )
        report.build["upsert_s"] = upsert_s
        report.build["generate_s"] = generate_s
        report.build["upsert_per_s"] = args.chunks / max(upsert_s, 1e-9)
        report.rss_mb["after_upsert"] = rss_now_mb()
        report.rss_mb["peak_after_upsert"] = rss_peak_mb()

        def search_query(q: BenchQuery, mode: SearchMode, top_k: int = TOP_K) -> SearchQuery:
            return SearchQuery(
                text=q.text,
                vector=None if mode is SearchMode.BM25 else q.vector,
                model_id=MODEL,
                mode=mode,
                top_k=top_k,
                alpha=0.5,
                fusion=Fusion.RANKED,
                candidates=args.candidates,
            )

        # the first searches pay for whatever index work the store defers (the embedded store builds BM25)
        for mode in (SearchMode.HYBRID, SearchMode.DENSE, SearchMode.BM25):
            t0 = time.perf_counter()
            await store.search(TENANT, search_query(queries[0], mode))
            report.build[f"first_{mode.value}_search_s"] = time.perf_counter() - t0
        report.build["first_search_s"] = sum(report.build[f"first_{m.value}_search_s"] for m in SearchMode)
        report.build["total_s"] = upsert_s + report.build["first_search_s"]
        report.rss_mb["after_first_search"] = rss_now_mb()
        _progress(args, f"upsert {upsert_s:.1f}s, first searches {report.build['first_search_s']:.1f}s")

        # -- queries ---------------------------------------------------------------------------------
        results: dict[SearchMode, list[list[str]]] = {}
        rss_samples: list[float] = []
        for q in queries[: min(args.warmup, len(queries))]:  # warm caches: not measured
            await store.search(TENANT, search_query(q, SearchMode.HYBRID))
        for mode in (SearchMode.HYBRID, SearchMode.DENSE, SearchMode.BM25):
            times: list[float] = []
            ids: list[list[str]] = []
            for i, q in enumerate(queries):
                sq = search_query(q, mode)
                t0 = time.perf_counter()
                hits = await store.search(TENANT, sq)
                times.append((time.perf_counter() - t0) * 1000)
                ids.append([h.chunk_id for h in hits])
                if i % 100 == 0:
                    rss_samples.append(rss_now_mb())
            results[mode] = ids
            report.modes[mode.value] = ModeResult(
                latency_ms=percentiles(times),
                source_found_at_10=float(
                    np.mean([chunk_id(q.row) in r for q, r in zip(queries, ids, strict=True)])
                ),
            )
            _progress(args, f"{mode.value}: p50 {report.modes[mode.value].latency_ms['p50']:.2f} ms")
        # the BM25 side at fusion depth, for the hybrid reference (not timed)
        bm25_candidates: list[list[str]] = []
        for q in queries:
            hits = await store.search(TENANT, search_query(q, SearchMode.BM25, top_k=args.candidates))
            bm25_candidates.append([h.chunk_id for h in hits])
        rss_samples.append(rss_now_mb())
        report.rss_mb["query_phase_max"] = max(rss_samples)
        report.rss_mb["peak"] = rss_peak_mb()

        t0 = time.perf_counter()
        await store.close()
        report.build["close_s"] = time.perf_counter() - t0
        if handle.disk_path is not None:
            report.data["disk_mb"] = _dir_size_mb(handle.disk_path)
        _progress(args, "store closed; computing exact ground truth")
        gc.collect()

        # -- exact baseline --------------------------------------------------------------------------
        qmatrix = np.asarray([q.vector for q in queries], dtype=np.float32)
        depth = max(TOP_K, args.candidates)
        exact_rows, exact_sims, exact = exact_top(corpus, qmatrix, depth, args)
        report.baseline = exact
        exact_ids = [[chunk_id(int(r)) for r in rows] for rows in exact_rows]
        report.data["nn1_cosine_mean"] = float(exact_sims[:, 0].mean())
        report.data["nn10_cosine_mean"] = float(exact_sims[:, TOP_K - 1].mean())
        report.data[f"nn{depth}_cosine_mean"] = float(exact_sims[:, depth - 1].mean())

        dense_recall = [
            len(set(got) & set(want[:TOP_K])) / TOP_K
            for got, want in zip(results[SearchMode.DENSE], exact_ids, strict=True)
        ]
        report.modes["dense"].recall_at_10 = float(np.mean(dense_recall))
        hybrid_recall = []
        for got, dense_exact, sparse in zip(
            results[SearchMode.HYBRID], exact_ids, bm25_candidates, strict=True
        ):
            fused = reciprocal_rank_fusion(
                [dense_exact[: args.candidates], sparse], k=RRF_K, weights=[0.5, 0.5]
            )
            want = {k for k, _ in fused[:TOP_K]}
            hybrid_recall.append(len(set(got) & want) / max(1, min(TOP_K, len(want))))
        report.modes["hybrid"].recall_at_10 = float(np.mean(hybrid_recall))
        report.baseline["source_found_at_10"] = float(
            np.mean([chunk_id(q.row) in ids[:TOP_K] for q, ids in zip(queries, exact_ids, strict=True)])
        )
        report.rss_mb["peak_with_baseline"] = rss_peak_mb()
        if handle.server_pid is not None:
            server = server_rss_mb(handle.server_pid)
            report.rss_mb.update({f"server_{k}": v for k, v in server.items()})
        return report
    finally:
        with contextlib.suppress(Exception):
            await store.close()
        if handle.cleanup is not None:
            done = handle.cleanup()
            if done is not None:
                await done


def exact_top(
    corpus: SyntheticCorpus, qmatrix: F32, depth: int, args: argparse.Namespace
) -> tuple[npt.NDArray[np.int64], F32, dict[str, Any]]:
    """Exact top-``depth`` rows per query by brute force over the regenerated vectors, plus the baseline
    latency of exact single-query search over all of them (numpy matrix-vector product + argpartition)."""
    n = corpus.chunks
    matrix = np.empty((n, corpus.dim), dtype=np.float32)
    for b in range(corpus.batches):
        rows = corpus.rows(b)
        matrix[rows.start : rows.stop] = corpus.vectors(b)
    nq = len(qmatrix)
    best_rows = np.zeros((nq, 0), dtype=np.int64)
    best_sims = np.zeros((nq, 0), dtype=np.float32)
    block = 16_384
    t0 = time.perf_counter()
    for start in range(0, n, block):
        sims = qmatrix @ matrix[start : start + block].T
        block_rows = np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)
        all_sims = np.concatenate([best_sims, sims], axis=1)
        all_rows = np.concatenate([best_rows, block_rows], axis=1)
        k = min(depth, all_sims.shape[1])
        part = np.argpartition(-all_sims, k - 1, axis=1)[:, :k]
        best_sims = np.take_along_axis(all_sims, part, axis=1)
        best_rows = np.take_along_axis(all_rows, part, axis=1)
    order = np.argsort(-best_sims, axis=1, kind="stable")
    best_sims = np.take_along_axis(best_sims, order, axis=1)
    best_rows = np.take_along_axis(best_rows, order, axis=1)
    batch_s = time.perf_counter() - t0
    # single-query latency, as a search service without an index would answer
    times: list[float] = []
    for q in qmatrix[: min(len(qmatrix), args.exact_latency_queries)]:
        t1 = time.perf_counter()
        sims = matrix @ q
        top = np.argpartition(-sims, TOP_K - 1)[:TOP_K]
        top[np.argsort(-sims[top])]
        times.append((time.perf_counter() - t1) * 1000)
    del matrix
    baseline = {
        "exact_dense_latency_ms": percentiles(times),
        "exact_batched_s": batch_s,
        "exact_batched_per_query_ms": batch_s * 1000 / max(1, nq),
    }
    return best_rows, best_sims, baseline


# -- output ------------------------------------------------------------------------------------------


def _latency_row(name: str, lat: dict[str, float], recall: str, found: float) -> str:
    cells = "".join(f"{lat[k]:9.2f}" for k in ("p50", "p95", "p99", "mean", "max"))
    return f"  {name:<24}{cells}{recall:>11}{found:8.3f}"


def format_report(r: Report) -> str:
    c, b, m = r.config, r.build, r.rss_mb
    lines = [
        f"store: {r.store}",
        f"corpus: {c['chunks']:,} chunks x {c['dim']}-d, {c['clusters']} clusters, vocab {c['vocab']:,}, "
        f"seed {c['seed']}; {c['queries']} queries, top_k {c['top_k']}, candidates/side {c['candidates']}",
        "",
        "build (s)",
        f"  upsert, batches of {c['batch']:<6}            {b.get('upsert_s', 0):9.1f}"
        f"   {b.get('upsert_per_s', 0):,.0f} chunks/s (data generation excluded: "
        f"{b.get('generate_s', 0):.1f} s)",
        f"  first searches (deferred index work) {b.get('first_search_s', 0):9.1f}"
        f"   hybrid {b.get('first_hybrid_search_s', 0):.1f}, dense {b.get('first_dense_search_s', 0):.1f}, "
        f"bm25 {b.get('first_bm25_search_s', 0):.1f}",
        f"  total until searchable               {b.get('total_s', 0):9.1f}",
        f"  close (persist indexes)              {b.get('close_s', 0):9.1f}",
        "",
        f"{'latency (ms)':<26}"
        + "".join(f"{h:>9}" for h in ("p50", "p95", "p99", "mean", "max"))
        + f"{'recall@10':>11}{'src@10':>8}",
    ]
    for name, mode in r.modes.items():
        recall = "-" if mode.recall_at_10 is None else f"{mode.recall_at_10:.4f}"
        lines.append(_latency_row(name, mode.latency_ms, recall, mode.source_found_at_10))
    exact = r.baseline.get("exact_dense_latency_ms")
    if exact:
        found = r.baseline.get("source_found_at_10", 0.0)
        lines.append(_latency_row("exact dense (numpy)", exact, "1.0000", found))
        lines += [
            "  exact dense batched over all queries: "
            f"{r.baseline['exact_batched_per_query_ms']:.2f} ms/query",
            "  recall@10: dense vs exact top 10; hybrid vs the same fusion fed exact dense candidates",
            "  src@10: share of queries whose source chunk is in the top 10",
        ]
    lines += [
        "",
        "memory (MiB)",
        f"  peak RSS (ru_maxrss) through the query phase  {m.get('peak', 0):8.0f}",
        f"  RSS during query phase (max sampled)          {m.get('query_phase_max', 0):8.0f}",
        f"  RSS after upsert / after first search         {m.get('after_upsert', 0):8.0f}"
        f" / {m.get('after_first_search', 0):.0f}",
        f"  peak RSS incl. the exact baseline             {m.get('peak_with_baseline', 0):8.0f}",
        *(
            [
                f"  store server: peak RSS (VmHWM) / now          {m.get('server_peak', 0):8.0f} / "
                f"{m.get('server_now', 0):.0f}"
            ]
            if "server_peak" in m
            else []
        ),
    ]
    if "disk_mb" in r.data:
        lines.append(f"  on disk                                       {r.data['disk_mb']:8.0f}")
    if "nn1_cosine_mean" in r.data:
        lines.append(
            f"data: mean cosine of a query's exact 1st / 10th neighbour {r.data['nn1_cosine_mean']:.3f} / "
            f"{r.data['nn10_cosine_mean']:.3f}"
        )
    return "\n".join(lines)


def report_json(r: Report) -> dict[str, Any]:
    out = asdict(r)
    out["modes"] = {name: asdict(m) for name, m in r.modes.items()}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m isthmus_bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--store", choices=["embedded", "weaviate"], default="embedded")
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--batch", type=int, default=2000, help="chunks per upsert call")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--clusters", type=int, default=0, help="default: chunks/100, at most 2000")
    p.add_argument("--vocab", type=int, default=50_000)
    p.add_argument("--candidates", type=int, default=100, help="candidates per side in hybrid fusion")
    p.add_argument("--warmup", type=int, default=20, help="hybrid queries run before timing")
    p.add_argument(
        "--exact-latency-queries", type=int, default=50, help="queries timed for the exact baseline"
    )
    p.add_argument("--root", help="embedded store directory (kept); default: a temporary one")
    p.add_argument("--tmpdir", help="where the temporary store directory goes")
    p.add_argument("--keep", action="store_true", help="keep the temporary store directory")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="with --root: search a store an earlier run built with the same options instead of building",
    )
    p.add_argument("--weaviate-url", default="http://127.0.0.1:18080", help="with --store weaviate")
    p.add_argument("--weaviate-grpc-port", type=int, default=18081)
    p.add_argument("--weaviate-collection", default="IsthmusBench")
    p.add_argument(
        "--weaviate-dir",
        default=".tools/weaviate-data",
        help="the server's tests/infra/weaviate.sh data dir (its pid, for the server's RSS)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--json-out", help="also write the JSON report to this file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.chunks < 1 or args.queries < 1 or args.batch < 1:
        p.error("--chunks, --queries and --batch must be positive")
    if args.reuse and not args.root:
        p.error("--reuse needs --root")
    return args


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report_json(report), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(format_report(report))
    return report


if __name__ == "__main__":
    main()
