"""Result-list fusion for hybrid search (pure: values in, values out).

Two methods, as Weaviate names them:

* :func:`reciprocal_rank_fusion` (``rankedFusion``): each list contributes ``weight / (k + rank)`` for
  every item it holds (rank is 1-based, as in Cormack et al. 2009; Weaviate counts from 0, which shifts
  every contribution by one place and leaves the ordering practically unchanged);
* :func:`relative_score_fusion` (``relativeScoreFusion``): each list's scores are min-max normalised
  to [0, 1] (a list whose scores are all equal gives every item 1), then summed with the weights.

For hybrid search the dense list gets weight ``alpha`` and the BM25 list ``1 - alpha``; with
``alpha = 0.5`` both weights are equal, so ranked fusion orders exactly as plain (unweighted) RRF.

Ties are broken by first appearance (the earlier list, then the better rank), so results are
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

from isthmus_core.errors import InvalidArgument

K = TypeVar("K", bound=Hashable)

#: the constant from Cormack, Clarke & Büttcher (2009), also Weaviate's
RRF_K = 60


def _check_weights(weights: Sequence[float], n_lists: int) -> list[float]:
    if len(weights) != n_lists:
        raise InvalidArgument(
            f"got {len(weights)} weights for {n_lists} result lists; give one weight per list"
        )
    out = [float(w) for w in weights]
    for w in out:
        if not math.isfinite(w) or w < 0:
            raise InvalidArgument(f"fusion weights must be finite and non-negative, got {w}")
    return out


def _sorted(scores: dict[K, float]) -> list[tuple[K, float]]:
    # dicts keep insertion (first appearance) order and sorted() is stable: ties keep that order
    return sorted(scores.items(), key=lambda item: -item[1])


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[K]], *, k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Fuse best-first id lists: ``score(d) = Σ_i weight_i / (k + rank_i(d))``, best first.

    An id repeated within one list counts at its best rank only. Raises InvalidArgument for ``k < 0``
    or weights that do not match the lists.
    """
    if k < 0:
        raise InvalidArgument(f"the RRF constant k must be >= 0, got {k}")
    ws = _check_weights(weights, len(ranked_lists)) if weights is not None else [1.0] * len(ranked_lists)
    scores: dict[K, float] = {}
    for weight, ranked in zip(ws, ranked_lists, strict=True):
        seen: set[K] = set()
        for rank, item in enumerate(ranked, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return _sorted(scores)


def min_max_normalise(scored: Sequence[tuple[K, float]]) -> list[tuple[K, float]]:
    """Scale scores to [0, 1] (max → 1, min → 0); when all scores are equal every item gets 1."""
    if not scored:
        return []
    values = [s for _, s in scored]
    lo, hi = min(values), max(values)
    if hi == lo:
        return [(item, 1.0) for item, _ in scored]
    span = hi - lo
    return [(item, (s - lo) / span) for item, s in scored]


def relative_score_fusion(
    scored_lists: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float]
) -> list[tuple[K, float]]:
    """Fuse ``(id, score)`` lists (higher score = better): min-max normalise each list, then
    ``score(d) = Σ_i weight_i · norm_i(d)``, best first.

    An id repeated within one list counts with its best score only. Raises InvalidArgument for weights
    that do not match the lists, or a score that is not finite.
    """
    ws = _check_weights(weights, len(scored_lists))
    fused: dict[K, float] = {}
    for weight, scored in zip(ws, scored_lists, strict=True):
        best: dict[K, float] = {}
        for item, score in scored:
            if not math.isfinite(score):
                raise InvalidArgument(f"cannot fuse a non-finite score ({score}) for {item!r}")
            if item not in best or score > best[item]:
                best[item] = score
        for item, norm in min_max_normalise(list(best.items())):
            fused[item] = fused.get(item, 0.0) + weight * norm
    return _sorted(fused)
