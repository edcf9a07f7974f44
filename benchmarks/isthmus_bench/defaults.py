"""Hybrid-search defaults chosen by a method that generalises (issue 17, item 6): leave-one-dataset-out.

Run (``make bench-defaults``)::

    nice -n 19 .venv/bin/python -m isthmus_bench.defaults [--datasets cranfield,cisi,scifact]
        [--datasets-dir ../shared/datasets] [--cache-dir ~/.cache/isthmus-bench/defaults] [--json out.json]

**Retrieval, once per dataset** (cached under ``--cache-dir``, so a second run only re-scores): every
document (title + body, as ``isthmus eval`` uploads it) is cut by the ingestion's default chunker (512
tokens, 64 overlap), embedded by the bundled bge-small int8 ONNX embedder (the embedding service's
``OnnxEmbedder``, one text per run) and written to a real :class:`EmbeddedStore` in a throwaway
directory. For every judged query the store is asked, through ``VectorStore.search``, for the BM25 top 100
and the dense top 100 chunks with their scores, and for the hybrid top 100 with today's default (the
sanity check: the offline fusion below must reproduce it). The same store answers the second-round
searches of the query-side attempts:

* ``rm3``: RM3 pseudo-relevance feedback for BM25 — term weights of the top ``k`` chunks of the default
  hybrid list (P(w|d) · the chunk's normalised fused score), the best ``t`` terms mixed with the query's
  own terms at ``lambda``; scored by the store's own bm25s matrix with term weights;
* ``rocchio``: dense PRF — the query vector plus ``beta`` times the mean vector of the top ``k`` hybrid
  chunks, re-normalised, searched in the store;
* ``kw``: multi-query by a rewrite without an LLM — the query's keyword-only form (stop words dropped),
  embedded on its own; the dense side searches with the normalised sum of both query vectors.

**Fusion, offline** (numpy over the cached lists; metrics by ``isthmus_evaluation.metrics.evaluate_run``,
i.e. pytrec_eval): reciprocal-rank fusion for several ``k`` and dense weights; relative-score (min-max)
fusion; distribution-based score fusion (mean ± 3 sd, clipped, as Qdrant's DBSF); z-score fusion; convex
combination with theoretical-min normalisation (cosine from -1, BM25 from 0; Bruch et al. 2023). A chunk
missing from one list scores that list's lowest retrieved value (0 for min-max: exactly the service's
fusion). The fused top 100 chunks are folded to documents by their best chunk, as the evaluation runner
does. Every configuration (fusion, list variant) is scored on every dataset.

**Leave-one-dataset-out**: for each held-out dataset, the configuration with the best mean nDCG@10 on the
other datasets is scored on the held-out one, beside today's default (relative-score, alpha 0.5) and plain
RRF (k 60), all from the same cached lists in one run. Reported: per-dataset scores, the mean, min and
standard deviation over datasets per candidate; for each held-out dataset the chosen configuration, its
score, both baselines and a paired bootstrap 95 % interval of its difference to the default. The LODO
selection is done twice: among fusions of the plain lists only, and among everything (PRF, multi-query).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus_evaluation.datasets import BeirDataset

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
DEFAULT_DATASETS = ("cranfield", "cisi", "scifact")
CACHE = Path.home() / ".cache" / "isthmus-bench" / "defaults"
#: first-stage depth per side (the retrieval service's ``candidates``) and the run depth the evaluation scores
DEPTH = 100
TENANT = "bench-defaults"
#: bumped when what is cached changes meaning
CACHE_VERSION = 1

#: today's default (settings.py) and the previous one, named as configurations below
DEFAULT_CONFIG = "rs a=0.5 | bm25+dense"
RRF_CONFIG = "rrf k=60 a=0.5 | bm25+dense"

#: the per-tenant tuning gate: a tuned choice must beat the default by more than this on the tuning queries
GATE_MARGIN = 0.005
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7)
RRF_KS = (10, 20, 40, 60, 100)
#: PRF grids (kept small: each point is one more search per query)
RM3_GRID = ((5, 10, 0.5), (10, 10, 0.5), (10, 20, 0.5), (10, 20, 0.7), (5, 20, 0.7))
ROCCHIO_GRID = ((3, 0.5), (5, 0.5), (5, 1.0), (10, 1.0))

#: one list: chunk ids and their scores, best first
ScoredList = tuple[list[str], npt.NDArray[np.float64]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the query rewrite ------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def keyword_form(query: str, stopwords: Iterable[str]) -> str:
    """The query without stop words (question words, articles...), in its own order and casing; the
    query itself when nothing would be left."""
    stop = {w.lower() for w in stopwords}
    words = [w for w in _WORD.findall(query) if w.lower() not in stop]
    return " ".join(words) if words else query


# -- pseudo-relevance feedback (pure) ---------------------------------------------------------------------


def rm3_weights(
    query_terms: Sequence[str],
    feedback: Sequence[tuple[Sequence[str], float]],
    *,
    n_terms: int,
    lam: float,
) -> dict[str, float]:
    """RM3 query term weights: ``lam · P(w|Q) + (1 - lam) · P(w|R)``, ``P(w|R) ∝ Σ_d P(w|d) · s_d`` over
    the feedback chunks (their terms and scores, the scores normalised to sum 1), kept to the ``n_terms``
    best feedback terms and renormalised. Empty feedback gives the query's own weights."""
    weights: dict[str, float] = {}
    if query_terms:
        for t in query_terms:
            weights[t] = weights.get(t, 0.0) + 1.0 / len(query_terms)
    usable = [(terms, s) for terms, s in feedback if terms]
    total = sum(max(s, 0.0) for _, s in usable)
    if not usable or total <= 0:
        return weights
    relevance: dict[str, float] = {}
    for terms, s in usable:
        share = max(s, 0.0) / total / len(terms)
        for t in terms:
            relevance[t] = relevance.get(t, 0.0) + share
    best = sorted(relevance.items(), key=lambda item: (-item[1], item[0]))[:n_terms]
    norm = sum(v for _, v in best)
    out = {t: lam * w for t, w in weights.items()}
    for t, v in best:
        out[t] = out.get(t, 0.0) + (1.0 - lam) * v / norm
    return out


def rocchio(
    query: npt.NDArray[np.float32], feedback: npt.NDArray[np.float32], beta: float
) -> npt.NDArray[np.float32]:
    """``q + beta · mean(feedback)``, L2-normalised (the query alone when there is no feedback)."""
    v = query.astype(np.float64)
    if len(feedback):
        v = v + beta * feedback.astype(np.float64).mean(axis=0)
    return (v / np.linalg.norm(v)).astype(np.float32)


# -- fusion (pure, numpy) ---------------------------------------------------------------------------------


def _normalise(method: str, scores: npt.NDArray[np.float64], side: str) -> npt.NDArray[np.float64]:
    if method == "rs":  # min-max, all equal -> 1 (as isthmus_retrieval.fusion.min_max_normalise)
        lo, hi = scores.min(), scores.max()
        return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)
    if method == "dbsf":  # mean ± 3 sigma, clipped
        mu, sd = scores.mean(), scores.std()
        if sd == 0:
            return np.ones_like(scores)
        clipped: npt.NDArray[np.float64] = np.clip((scores - (mu - 3 * sd)) / (6 * sd), 0.0, 1.0)
        return clipped
    if method == "z":
        sd = scores.std()
        return np.zeros_like(scores) if sd == 0 else (scores - scores.mean()) / sd
    if method == "tmm":  # theoretical minimum: cosine -1, BM25 0; observed maximum
        lo = -1.0 if side == "dense" else 0.0
        hi = scores.max()
        return np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)
    raise ValueError(method)


@dataclass(frozen=True)
class Union:
    """The ids of several best-first lists in order of first appearance, and where each list's ids sit."""

    ids: list[str]
    positions: list[npt.NDArray[np.int64]]
    scores: list[npt.NDArray[np.float64]]


def union(lists: Sequence[ScoredList]) -> Union:
    order: dict[str, int] = {}
    for ids, _ in lists:
        for i in ids:
            order.setdefault(i, len(order))
    positions = [np.fromiter((order[i] for i in ids), dtype=np.int64, count=len(ids)) for ids, _ in lists]
    return Union(list(order), positions, [np.asarray(sc, dtype=np.float64) for _, sc in lists])


def fused_scores(
    u: Union, method: str, weights: Sequence[float], sides: Sequence[str], k: int = 60
) -> npt.NDArray[np.float64]:
    """The fused score of every id of ``u``.

    ``rrf``: sum of w / (k + rank) over the lists holding the id. The score methods normalise each list
    (``_normalise``) and sum ``w * value``, an id missing from a list taking that list's lowest value."""
    total = np.zeros(len(u.ids))
    for idx, scores, w, side in zip(u.positions, u.scores, weights, sides, strict=True):
        if not len(idx) or w == 0:
            continue
        if method == "rrf":
            total[idx] += w / (k + np.arange(1, len(idx) + 1))
            continue
        norm = _normalise(method, scores, side)
        contrib = np.full(len(u.ids), norm.min())
        contrib[idx] = norm
        total += w * contrib
    return total


def fuse(
    method: str, lists: Sequence[ScoredList], weights: Sequence[float], sides: Sequence[str], k: int = 60
) -> list[tuple[str, float]]:
    """Fuse best-first lists into one (id, score) list, best first; ties by first appearance
    (see :func:`fused_scores`)."""
    u = union(lists)
    total = fused_scores(u, method, weights, sides, k)
    return [(u.ids[i], float(total[i])) for i in np.argsort(-total, kind="stable")]


def fused_doc_run(u: Union, total: npt.NDArray[np.float64], doc_of: Mapping[str, str]) -> dict[str, float]:
    """:func:`doc_run` of the fused list, without building it whole."""
    top = np.argsort(-total, kind="stable")[:DEPTH]
    return doc_run([(u.ids[i], float(total[i])) for i in top], doc_of)


@dataclass(frozen=True)
class Config:
    """A fusion of one pair of first-stage lists."""

    method: str  # rrf | rs | dbsf | z | tmm
    alpha: float  # the dense side's weight
    sparse: str  # list variant for the BM25 side
    dense: str  # list variant for the dense side
    k: int = 60  # rrf only

    @property
    def name(self) -> str:
        fusion = f"rrf k={self.k} a={self.alpha}" if self.method == "rrf" else f"{self.method} a={self.alpha}"
        return f"{fusion} | {self.sparse}+{self.dense}"

    @property
    def plain(self) -> bool:
        return self.sparse == "bm25" and self.dense == "dense"


def configs(sparse_variants: Sequence[str], dense_variants: Sequence[str]) -> list[Config]:
    """Every fusion of every pair of a BM25-side variant and a dense-side variant."""
    out: list[Config] = []
    for sparse in sparse_variants:
        for dense in dense_variants:
            for a in ALPHAS:
                out.extend(Config("rrf", a, sparse, dense, k) for k in RRF_KS)
                out.extend(Config(m, a, sparse, dense) for m in ("rs", "dbsf", "z", "tmm"))
    return out


def doc_run(fused: Sequence[tuple[str, float]], doc_of: Mapping[str, str]) -> dict[str, float]:
    """The top ``DEPTH`` fused chunks folded to documents by their best chunk (as the runner does)."""
    from isthmus_evaluation.metrics import chunk_hits_to_doc_run

    run: dict[str, float] = chunk_hits_to_doc_run([(doc_of[c], s) for c, s in fused[:DEPTH]])
    return run


# -- leave-one-dataset-out (pure) -------------------------------------------------------------------------


@dataclass
class Held:
    dataset: str
    chosen: str
    train_mean: float
    score: float
    default: float
    rrf: float
    ci: tuple[float, float]


def lodo(
    scores: Mapping[str, Mapping[str, float]], candidates: Iterable[str]
) -> dict[str, tuple[str, float]]:
    """For each dataset: (the candidate with the best mean over the *other* datasets, that mean).
    ``scores``: dataset -> candidate -> score. Ties go to the earlier candidate."""
    names = list(candidates)
    out: dict[str, tuple[str, float]] = {}
    for held in scores:
        train = [d for d in scores if d != held]
        best, best_mean = "", -math.inf
        for c in names:
            m = float(np.mean([scores[d][c] for d in train]))
            if m > best_mean:
                best, best_mean = c, m
        out[held] = (best, best_mean)
    return out


def tuned_by_folds(
    per_query: Mapping[str, npt.NDArray[np.float64]],
    candidates: Sequence[str],
    default: str,
    *,
    folds: int = 5,
    margin: float = 0.0,
    seed: int = 17,
) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Per-tenant tuning on the tenant's own judged queries, checked by cross-validation: the queries are
    split into ``folds``; for each fold the candidate with the best mean on the other folds is kept only
    if it beats ``default`` there by more than ``margin`` (the gate), else the default; it is scored on the
    fold's queries. Returns every query's held-out score and the choice of each fold."""
    n = len(per_query[default])
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    out = np.zeros(n)
    chosen: list[str] = []
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        best = max(candidates, key=lambda c: float(per_query[c][train].mean()))
        if per_query[best][train].mean() - per_query[default][train].mean() <= margin:
            best = default
        chosen.append(best)
        out[test] = per_query[best][test]
    return out, chosen


def bootstrap_ci(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], n: int = 2000, seed: int = 17
) -> tuple[float, float]:
    """Paired bootstrap 95 % interval of mean(a - b) over queries."""
    rng = np.random.default_rng(seed)
    d = a - b
    means = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


# -- retrieval through the real code, cached --------------------------------------------------------------


@dataclass
class Retrieved:
    """One dataset's cached first-stage lists: variant -> query id -> (chunk ids, scores)."""

    doc_of: dict[str, str]
    lists: dict[str, dict[str, ScoredList]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _chunks(ds: BeirDataset) -> list[tuple[str, str, int, str, int, int]]:
    """(chunk id, document id, index, text, start, end) of every document, the ingestion's default cut."""
    from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
    from isthmus_evaluation.datasets import doc_text
    from isthmus_ingestion.chunking import Chunker
    from isthmus_ingestion.settings import IngestionSettings

    s = IngestionSettings()
    chunker = Chunker(
        bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", s.chunk_max_tokens, s.chunk_overlap_tokens
    )
    out = []
    for doc_id, doc in ds.corpus.items():
        text = doc_text(doc)
        if not text.strip():
            continue
        for c in chunker.split(text):
            out.append((f"{doc_id}#{c.index}", doc_id, c.index, c.text, c.start, c.end))
    return out


def _save(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as f:
        json.dump(value, f)
    tmp.replace(path)


def _load(path: Path) -> Any:
    with gzip.open(path, "rt") as f:
        return json.load(f)


async def retrieve(ds: BeirDataset, cache_dir: Path) -> Retrieved:
    """Every list variant for every judged query of ``ds``, from the cache or computed (and cached)."""
    path = cache_dir / f"{ds.name}-v{CACHE_VERSION}.json.gz"
    if path.is_file():
        data = _load(path)
        out = Retrieved(doc_of=data["doc_of"], timings=data["timings"])
        for variant, per_q in data["lists"].items():
            out.lists[variant] = {
                q: (ids, np.asarray(sc, dtype=np.float64)) for q, (ids, sc) in per_q.items()
            }
        log(f"{ds.name}: lists from {path}")
        return out
    out = await _retrieve(ds)
    _save(
        path,
        {
            "doc_of": out.doc_of,
            "timings": out.timings,
            "lists": {
                v: {q: [ids, [float(x) for x in sc]] for q, (ids, sc) in per_q.items()}
                for v, per_q in out.lists.items()
            },
        },
    )
    return out


async def _retrieve(ds: BeirDataset) -> Retrieved:
    import bm25s.stopwords

    from isthmus_core.onnx_embedder import OnnxEmbedder
    from isthmus_core.store.port import ChunkRecord, Fusion, SearchMode, SearchQuery
    from isthmus_retrieval.analyzer import Analyzer
    from isthmus_retrieval.store_embedded import EmbeddedStore

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    chunks = _chunks(ds)
    embedder = OnnxEmbedder(intra_op_threads=1, parallel_runs=2)
    vectors_list = []
    for i in range(0, len(chunks), 256):
        vectors_list.append(embedder.embed([c[3] for c in chunks[i : i + 256]], "passage").vectors)
        log(f"{ds.name}: embedded {min(i + 256, len(chunks))}/{len(chunks)} chunks")
    vectors = np.concatenate(vectors_list)
    model_id = embedder.model_id
    timings["embed_chunks_s"] = time.perf_counter() - t0
    vec_of = {c[0]: vectors[i] for i, c in enumerate(chunks)}
    doc_of = {c[0]: c[1] for c in chunks}
    qids = sorted(ds.queries)
    texts = [ds.queries[q] for q in qids]
    kw_texts = [keyword_form(t, bm25s.stopwords.STOPWORDS_EN) for t in texts]
    t0 = time.perf_counter()
    qvec = embedder.embed(texts, "query").vectors
    kwvec = embedder.embed(kw_texts, "query").vectors
    timings["embed_queries_s"] = time.perf_counter() - t0
    embedder.close()

    analyzer = Analyzer()
    out = Retrieved(doc_of=doc_of, timings=timings)
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-defaults-") as tmp:
        store = EmbeddedStore(Path(tmp))
        try:
            t0 = time.perf_counter()
            await store.create_tenant(TENANT)
            for i in range(0, len(chunks), 500):
                await store.upsert(
                    TENANT,
                    [
                        ChunkRecord(cid, doc, idx, text, vectors[i + j].tolist(), model_id, start, end)
                        for j, (cid, doc, idx, text, start, end) in enumerate(chunks[i : i + 500])
                    ],
                )
            timings["index_s"] = time.perf_counter() - t0

            async def search(variant: str, q: SearchQuery) -> list[Any]:
                t = time.perf_counter()
                hits: list[Any] = list(await store.search(TENANT, q))
                timings[f"search_{variant}_s"] = (
                    timings.get(f"search_{variant}_s", 0.0) + time.perf_counter() - t
                )
                return hits

            def keep(variant: str, qid: str, hits: Sequence[Any]) -> None:
                out.lists.setdefault(variant, {})[qid] = (
                    [h.chunk_id for h in hits],
                    np.asarray([h.score for h in hits], dtype=np.float64),
                )

            bm25 = await _bm25_handle(store)
            for n, (qid, text) in enumerate(zip(qids, texts, strict=True)):
                v = qvec[n]
                keep("bm25", qid, await search("bm25", SearchQuery(text, mode=SearchMode.BM25, top_k=DEPTH)))
                keep(
                    "dense",
                    qid,
                    await search("dense", SearchQuery(text, v.tolist(), model_id, SearchMode.DENSE, DEPTH)),
                )
                hybrid = await search(
                    "hybrid",
                    SearchQuery(
                        text, v.tolist(), model_id, SearchMode.HYBRID, DEPTH, 0.5, Fusion.RELATIVE_SCORE
                    ),
                )
                keep("store:hybrid-rs", qid, hybrid)
                keep(
                    "store:hybrid-rrf",
                    qid,
                    await search(
                        "hybrid",
                        SearchQuery(text, v.tolist(), model_id, SearchMode.HYBRID, DEPTH, 0.5, Fusion.RANKED),
                    ),
                )
                # multi-query: the question and its keyword-only form, one dense search on their sum
                mq = qvec[n] + kwvec[n]
                mq = mq / np.linalg.norm(mq)
                keep(
                    "dense-kw",
                    qid,
                    await search("kw", SearchQuery(text, mq.tolist(), model_id, SearchMode.DENSE, DEPTH)),
                )
                # pseudo-relevance feedback from the default hybrid list
                for k, beta in ROCCHIO_GRID:
                    fb = (
                        np.stack([vec_of[h.chunk_id] for h in hybrid[:k]])
                        if hybrid
                        else np.zeros((0, len(v)), dtype=np.float32)
                    )
                    rv = rocchio(v, fb, beta)
                    keep(
                        f"rocchio{k}b{beta}",
                        qid,
                        await search(
                            "rocchio", SearchQuery(text, rv.tolist(), model_id, SearchMode.DENSE, DEPTH)
                        ),
                    )
                q_terms = analyzer.query_terms(text)
                feedback_terms = analyzer.terms([h.text for h in hybrid[:10]]) if hybrid else []
                for k, t, lam in RM3_GRID:
                    weights = rm3_weights(
                        q_terms,
                        [(feedback_terms[i], hybrid[i].score) for i in range(min(k, len(hybrid)))],
                        n_terms=t,
                        lam=lam,
                    )
                    tt = time.perf_counter()
                    keep(f"rm3k{k}t{t}l{lam}", qid, bm25(weights))
                    timings["search_rm3_s"] = timings.get("search_rm3_s", 0.0) + time.perf_counter() - tt
                if (n + 1) % 50 == 0 or n + 1 == len(qids):
                    log(f"{ds.name}: searched {n + 1}/{len(qids)} queries")
        finally:
            await store.close()
    return out


async def _bm25_handle(store: Any) -> Callable[[Mapping[str, float]], list[Any]]:
    """Weighted BM25 over the store's own bm25s score matrix: ``Σ_t w_t · bm25(t, chunk)``, top ``DEPTH``
    chunks as the store's hits (the store's text API weighs every query term 1; RM3 needs weights)."""
    tenant = await store._open_tenant(TENANT)
    index = store._bm25_index(tenant)
    retriever = index.retriever
    matrix = retriever.scores
    indptr, indices, data = matrix["indptr"], matrix["indices"], matrix["data"]
    vocab = retriever.vocab_dict

    def search(weights: Mapping[str, float]) -> list[Any]:
        scores = np.zeros(int(matrix["num_docs"]), dtype=np.float64)
        for term, w in weights.items():
            i = vocab.get(term)
            if i is None or i >= len(indptr) - 1:
                continue
            s, e = int(indptr[i]), int(indptr[i + 1])
            scores[indices[s:e]] += w * data[s:e]
        rows = np.flatnonzero(scores > 0)
        rows = rows[np.lexsort((rows, -scores[rows]))][:DEPTH]
        hits = store._hits(tenant, [(int(index.keys[r]), float(scores[r])) for r in rows])
        return list(hits)

    return search


# -- scoring and the report -------------------------------------------------------------------------------


@dataclass
class Scored:
    """dataset -> config name -> nDCG@10 (mean), and the per-query values of the ones needed later."""

    ndcg: dict[str, dict[str, float]] = field(default_factory=dict)
    per_query: dict[str, dict[str, npt.NDArray[np.float64]]] = field(default_factory=dict)
    recall: dict[str, dict[str, float]] = field(default_factory=dict)


def _recorder(
    out: Scored,
    name: str,
    qrels: Mapping[str, Mapping[str, int]],
    qids: Sequence[str],
    evaluate_run: Callable[..., Any],
) -> Callable[[str, dict[str, dict[str, float]]], None]:
    def record(label: str, run: dict[str, dict[str, float]]) -> None:
        m = evaluate_run(qrels, run)
        out.ndcg[name][label] = m.ndcg_at_10
        out.recall[name][label] = m.recall_at_100
        out.per_query[name][label] = np.asarray([m.per_query[q]["ndcg_at_10"] for q in qids])

    return record


def score_all(
    datasets: Mapping[str, BeirDataset], retrieved: Mapping[str, Retrieved], cands: Sequence[Config]
) -> Scored:
    from isthmus_evaluation.metrics import evaluate_run

    out = Scored()
    for name, ds in datasets.items():
        r = retrieved[name]
        qids = sorted(ds.queries)
        out.ndcg[name], out.per_query[name], out.recall[name] = {}, {}, {}
        record = _recorder(out, name, ds.qrels, qids, evaluate_run)

        for variant in ("bm25", "dense", "dense-kw", "store:hybrid-rs", "store:hybrid-rrf"):
            record(
                variant,
                {q: doc_run(list(zip(*r.lists[variant][q], strict=True)), r.doc_of) for q in qids},
            )
        unions: dict[tuple[str, str], dict[str, Union]] = {}
        for c in cands:
            pair = (c.sparse, c.dense)
            if pair not in unions:  # dense first, as the service fuses: ties go to the dense side
                unions[pair] = {q: union([r.lists[c.dense][q], r.lists[c.sparse][q]]) for q in qids}
            weights, sides = [c.alpha, 1.0 - c.alpha], ["dense", "bm25"]
            run = {}
            for q, u in unions[pair].items():
                run[q] = fused_doc_run(u, fused_scores(u, c.method, weights, sides, c.k), r.doc_of)
            record(c.name, run)
    return out


def render(
    datasets: Sequence[str], sc: Scored, cands: Sequence[Config], top: int
) -> tuple[str, dict[str, Any]]:
    lines: list[str] = []
    names = [c.name for c in cands]

    def stats(label: str) -> tuple[list[float], float, float, float]:
        v = [sc.ndcg[d][label] for d in datasets]
        return v, float(np.mean(v)), float(np.min(v)), float(np.std(v))

    head = "| configuration | " + " | ".join(datasets) + " | mean | min | std | Δ mean vs default |"
    sep = "|---|" + "---|" * (len(datasets) + 4)
    base_mean = stats(DEFAULT_CONFIG)[1]
    lines.append("Single lists and the store's own hybrid (sanity: the offline fusion must match it)")
    lines.append(head)
    lines.append(sep)
    for label in (
        "bm25",
        "dense",
        "dense-kw",
        "store:hybrid-rs",
        "store:hybrid-rrf",
        DEFAULT_CONFIG,
        RRF_CONFIG,
    ):
        v, m, lo, sd = stats(label)
        lines.append(
            f"| {label} | "
            + " | ".join(f"{x:.4f}" for x in v)
            + f" | {m:.4f} | {lo:.4f} | {sd:.4f} | {m - base_mean:+.4f} |"
        )

    def row(label: str) -> str:
        v, m, lo, sd = stats(label)
        cells = " | ".join(f"{x:.4f}" for x in v)
        return f"| {label} | {cells} | {m:.4f} | {lo:.4f} | {sd:.4f} | {m - base_mean:+.4f} |"

    ranked = sorted(names, key=lambda n: -stats(n)[1])
    lines.append("")
    lines.append(f"Top {top} of {len(names)} configurations by mean nDCG@10 (in-sample: for reference only)")
    lines.append(head)
    lines.append(sep)
    for label in ranked[:top]:
        v, m, lo, sd = stats(label)
        lines.append(
            f"| {label} | "
            + " | ".join(f"{x:.4f}" for x in v)
            + f" | {m:.4f} | {lo:.4f} | {sd:.4f} | {m - base_mean:+.4f} |"
        )
    # the best of each fusion method on the plain lists, then every list variant at today's fusion
    lines.append("")
    lines.append("Best of each fusion method on the plain lists (in-sample)")
    lines.append(head)
    lines.append(sep)
    best: dict[str, str] = {}
    for c in cands:
        if c.plain and (c.method not in best or stats(c.name)[1] > stats(best[c.method])[1]):
            best[c.method] = c.name
    for label in sorted(best.values(), key=lambda n: -stats(n)[1]):
        lines.append(row(label))
    lines.append("")
    lines.append("Every list variant (PRF, multi-query) at today's fusion, relative-score a=0.5")
    lines.append(head)
    lines.append(sep)
    at_default = [c.name for c in cands if c.method == "rs" and c.alpha == 0.5]
    for label in sorted(at_default, key=lambda n: -stats(n)[1]):
        lines.append(row(label))

    result: dict[str, Any] = {"lodo": {}}
    service = [c.name for c in cands if c.plain and c.method in ("rs", "rrf")]
    pools = [
        ("the service's two fusions (rs, rrf) on the plain lists", service),
        ("plain lists (fusion only)", [c.name for c in cands if c.plain]),
        ("everything", names),
    ]
    scopes = pools if len(datasets) > 1 else []  # leave-one-out needs another dataset to choose on
    for scope, pool in scopes:
        chosen = lodo({d: sc.ndcg[d] for d in datasets}, pool)
        helds: list[Held] = []
        for d in datasets:
            cfg, train_mean = chosen[d]
            helds.append(
                Held(
                    d,
                    cfg,
                    train_mean,
                    sc.ndcg[d][cfg],
                    sc.ndcg[d][DEFAULT_CONFIG],
                    sc.ndcg[d][RRF_CONFIG],
                    bootstrap_ci(sc.per_query[d][cfg], sc.per_query[d][DEFAULT_CONFIG]),
                )
            )
        result["lodo"][scope] = [h.__dict__ for h in helds]
        lines.append("")
        lines.append(f"Leave-one-dataset-out, chosen among {len(pool)}: {scope}")
        lines.append(
            "| held out | chosen on the others | its mean there | held-out nDCG@10 | default (rs 0.5) "
            "| RRF k=60 | Δ vs default [95 % CI] | Δ vs RRF |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for h in helds:
            lines.append(
                f"| {h.dataset} | {h.chosen} | {h.train_mean:.4f} | {h.score:.4f} | {h.default:.4f} "
                f"| {h.rrf:.4f} | {h.score - h.default:+.4f} [{h.ci[0]:+.4f}, {h.ci[1]:+.4f}] "
                f"| {h.score - h.rrf:+.4f} |"
            )
        s = [h.score for h in helds]
        b = [h.default for h in helds]
        r = [h.rrf for h in helds]
        lines.append(
            f"| **mean / min / std** | | | {np.mean(s):.4f} / {np.min(s):.4f} / {np.std(s):.4f} | "
            f"{np.mean(b):.4f} / {np.min(b):.4f} / {np.std(b):.4f} | {np.mean(r):.4f} / {np.min(r):.4f} / "
            f"{np.std(r):.4f} | {np.mean(s) - np.mean(b):+.4f} | {np.mean(s) - np.mean(r):+.4f} |"
        )
    for scope, pool in pools:
        lines.append("")
        lines.append(
            f"Per-tenant tuning on the tenant's own queries (5-fold cross-validation within each dataset; "
            f"gate: keep the default unless the choice beats it by > {GATE_MARGIN} on the tuning folds), "
            f"chosen among {len(pool)}: {scope}"
        )
        lines.append(
            "| dataset | held-out nDCG@10 | default (rs 0.5) | Δ vs default [95 % CI] | the 5 folds chose |"
        )
        lines.append("|---|---|---|---|---|")
        tuned_scores, base_scores = [], []
        for d in datasets:
            held, chosen_folds = tuned_by_folds(sc.per_query[d], pool, DEFAULT_CONFIG, margin=GATE_MARGIN)
            base = sc.per_query[d][DEFAULT_CONFIG]
            lo, hi = bootstrap_ci(held, base)
            tuned_scores.append(float(held.mean()))
            base_scores.append(float(base.mean()))
            result.setdefault("per_tenant", {}).setdefault(scope, {})[d] = {
                "score": float(held.mean()),
                "default": float(base.mean()),
                "ci": [lo, hi],
                "chosen": chosen_folds,
            }
            shown = "; ".join(f"{n}x {c}" for c, n in Counter(chosen_folds).most_common())
            lines.append(
                f"| {d} | {held.mean():.4f} | {base.mean():.4f} | {held.mean() - base.mean():+.4f} "
                f"[{lo:+.4f}, {hi:+.4f}] | {shown} |"
            )
        lines.append(
            f"| **mean / min** | {np.mean(tuned_scores):.4f} / {np.min(tuned_scores):.4f} | "
            f"{np.mean(base_scores):.4f} / {np.min(base_scores):.4f} | "
            f"{np.mean(tuned_scores) - np.mean(base_scores):+.4f} | |"
        )
    result["ndcg_at_10"] = sc.ndcg
    result["recall_at_100"] = sc.recall
    return "\n".join(lines), result


def main(argv: Sequence[str] | None = None) -> int:
    from isthmus_evaluation.datasets import load_beir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS))
    p.add_argument("--datasets-dir", type=Path, default=DATASETS)
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--retrieve-only", action="store_true", help="fill the cache, score nothing")
    p.add_argument("--top", type=int, default=25, help="configurations listed by mean")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)
    names = [n for n in args.datasets.split(",") if n]
    started = time.perf_counter()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    datasets: dict[str, BeirDataset] = {}
    retrieved: dict[str, Retrieved] = {}
    for name in names:  # one dataset at a time: retrieval is the costly part
        ds = load_beir(args.datasets_dir / name)
        datasets[name] = ds
        t0 = time.perf_counter()
        retrieved[name] = asyncio.run(retrieve(ds, args.cache_dir))
        log(f"{name}: lists ready in {time.perf_counter() - t0:.0f} s; {retrieved[name].timings}")
    if args.retrieve_only:
        return 0
    variants = set(next(iter(retrieved.values())).lists)
    sparse = ["bm25", *sorted(v for v in variants if v.startswith("rm3"))]
    dense = ["dense", "dense-kw", *sorted(v for v in variants if v.startswith("rocchio"))]
    cands = configs(sparse, dense)
    t0 = time.perf_counter()
    sc = score_all(datasets, retrieved, cands)
    scoring_s = time.perf_counter() - t0
    text, result = render(names, sc, cands, args.top)
    print(text)
    wall = {n: retrieved[n].timings for n in names}
    print(
        f"\nwall: retrieval per dataset (first run; cached after) {json.dumps(wall)}; offline scoring of "
        f"{len(cands)} configurations on {len(names)} datasets {scoring_s:.0f} s; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        result["timings"] = wall
        result["scoring_s"] = scoring_s
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
