"""Offline retrieval metrics (nDCG@10, recall@100, MRR@10, MAP@100) computed with pytrec_eval.

Conventions follow BEIR: nDCG uses linear gain (trec_eval's ``ndcg_cut``), metrics are averaged over
every judged query, and a judged query without any retrieved document scores 0. Documents are ranked by
descending score; ties are broken the trec_eval way (descending document id).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytrec_eval

from isthmus_core.errors import InvalidArgument

NDCG_AT_10 = "ndcg_at_10"
RECALL_AT_100 = "recall_at_100"
MRR_AT_10 = "mrr_at_10"
MAP_AT_100 = "map_at_100"
METRIC_NAMES = (NDCG_AT_10, RECALL_AT_100, MRR_AT_10, MAP_AT_100)

#: our metric name -> pytrec_eval measure (as requested, as reported)
_FULL_RUN_MEASURES = {
    NDCG_AT_10: ("ndcg_cut.10", "ndcg_cut_10"),
    RECALL_AT_100: ("recall.100", "recall_100"),
    # mean average precision of the first 100 (trec_eval's map_cut.100)
    MAP_AT_100: ("map_cut.100", "map_cut_100"),
}
_MRR_MEASURE = ("recip_rank", "recip_rank")
_MRR_CUTOFF = 10


@dataclass(frozen=True)
class RunMetrics:
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    #: number of judged queries the means are taken over
    n_queries: int
    #: query id -> {"ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_100"}, for every judged query
    per_query: dict[str, dict[str, float]]
    map_at_100: float = 0.0


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]
) -> RunMetrics:
    """Score ``run`` (query id -> document id -> score, higher is better) against ``qrels``.

    Queries of the run absent from ``qrels`` are ignored; judged queries absent from the run (or with an
    empty ranking) count as 0. Raises :class:`InvalidArgument` for empty qrels, a non-integer relevance or
    a non-finite score.
    """
    if not qrels:
        raise InvalidArgument("cannot evaluate a run against empty qrels: no query is judged")
    clean_qrels = _clean_qrels(qrels)
    full_run: dict[str, dict[str, float]] = {}
    cut_run: dict[str, dict[str, float]] = {}
    for query_id in clean_qrels:
        ranking = _clean_ranking(query_id, run.get(query_id) or {})
        if ranking:
            full_run[query_id] = ranking
            cut_run[query_id] = dict(_trec_order(ranking)[:_MRR_CUTOFF])

    per_query: dict[str, dict[str, float]] = {qid: dict.fromkeys(METRIC_NAMES, 0.0) for qid in clean_qrels}
    if full_run:
        full = pytrec_eval.RelevanceEvaluator(clean_qrels, {m for m, _ in _FULL_RUN_MEASURES.values()})
        for query_id, values in full.evaluate(full_run).items():
            for name, (_, reported) in _FULL_RUN_MEASURES.items():
                per_query[query_id][name] = float(values[reported])
        mrr = pytrec_eval.RelevanceEvaluator(clean_qrels, {_MRR_MEASURE[0]})
        for query_id, values in mrr.evaluate(cut_run).items():
            per_query[query_id][MRR_AT_10] = float(values[_MRR_MEASURE[1]])

    n = len(per_query)

    def mean(name: str) -> float:
        return sum(values[name] for values in per_query.values()) / n

    return RunMetrics(
        ndcg_at_10=mean(NDCG_AT_10),
        recall_at_100=mean(RECALL_AT_100),
        mrr_at_10=mean(MRR_AT_10),
        map_at_100=mean(MAP_AT_100),
        n_queries=n,
        per_query=per_query,
    )


def chunk_hits_to_doc_run(hits: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Aggregate chunk hits ``(document_id, score)`` into document scores: a document scores its best chunk.

    The result is ordered by rank (descending score, ties in order of first appearance).
    """
    best: dict[str, float] = {}
    for doc_id, score in hits:
        value = float(score)
        if math.isnan(value):
            raise InvalidArgument(f"chunk hit for document {doc_id!r} has a NaN score")
        if doc_id not in best or value > best[doc_id]:
            best[doc_id] = value
    # sorted() is stable: equal scores keep the order in which the documents first appeared
    return dict(sorted(best.items(), key=lambda item: -item[1]))


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100, linear interpolation) of ``values``.

    Raises :class:`InvalidArgument` when ``values`` is empty or holds a non-finite value, or when ``q`` is
    outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise InvalidArgument(f"percentile q must be within 0..100, got {q}")
    array = np.fromiter((float(v) for v in values), dtype=np.float64)
    if array.size == 0:
        raise InvalidArgument("cannot take a percentile of no values")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument("cannot take a percentile of non-finite values (NaN or infinity)")
    return float(np.percentile(array, q))


# --------------------------------------------------------------------------------------------- helpers


def _clean_qrels(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    clean: dict[str, dict[str, int]] = {}
    for query_id, judged in qrels.items():
        row: dict[str, int] = {}
        for doc_id, relevance in judged.items():
            if isinstance(relevance, bool) or not isinstance(relevance, int | np.integer):
                raise InvalidArgument(
                    f"qrels: relevance of document {doc_id!r} for query {query_id!r} must be an integer, "
                    f"got {relevance!r}"
                )
            row[str(doc_id)] = int(relevance)
        clean[str(query_id)] = row
    return clean


def _clean_ranking(query_id: str, ranking: Mapping[str, float]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for doc_id, score in ranking.items():
        value = float(score)
        if not math.isfinite(value):
            raise InvalidArgument(f"run: score of document {doc_id!r} for query {query_id!r} is {value}")
        clean[str(doc_id)] = value
    return clean


def _trec_order(ranking: Mapping[str, float]) -> list[tuple[str, float]]:
    """Rank as trec_eval does: descending score, ties by descending document id."""
    return sorted(ranking.items(), key=lambda item: (item[1], item[0]), reverse=True)
