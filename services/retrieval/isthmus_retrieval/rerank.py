"""Second-stage reranking of a first-stage hit list by cross-encoder scores (pure: values in, values out).

The first ``n`` hits are reordered by a blend of the two signals, each min-max normalised over those
``n`` hits::

    score = weight · norm(cross-encoder logit) + (1 - weight) · norm(first-stage score)

``weight = 1`` is the cross-encoder alone. Keeping part of the first-stage score matters off the
cross-encoder's training domain (ms-marco web questions): on scientific abstracts or library-science
queries the hybrid ranking carries signal the cross-encoder misses, and the blend beats either alone.
Hits after the first ``n`` keep their order below the reranked ones. Ties break by chunk id.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from isthmus_core.errors import InvalidArgument
from isthmus_core.store.port import Hit
from isthmus_retrieval.fusion import min_max_normalise


def blend_rerank(hits: Sequence[Hit], ce_scores: Sequence[float], *, weight: float) -> list[Hit]:
    """Reorder ``hits[:len(ce_scores)]`` by the blended score; the rest follow in their order."""
    n = len(ce_scores)
    if n > len(hits):
        raise InvalidArgument(f"{n} reranker scores for {len(hits)} hits")
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgument(f"rerank weight must be between 0 and 1, got {weight}")
    if any(not math.isfinite(s) for s in ce_scores):
        raise InvalidArgument("the reranker returned a non-finite score")
    head = list(hits[:n])
    ce = dict(min_max_normalise([(i, float(s)) for i, s in enumerate(ce_scores)]))
    first = dict(min_max_normalise([(i, h.score) for i, h in enumerate(head)]))
    blended = [
        dataclasses.replace(h, score=weight * ce[i] + (1.0 - weight) * first[i]) for i, h in enumerate(head)
    ]
    blended.sort(key=lambda h: (-round(h.score, 9), h.chunk_id))
    # below the reranked block: the rest, scored under its lowest score so the list stays best-first
    floor = min((h.score for h in blended), default=0.0)
    tail = [dataclasses.replace(h, score=floor - 1.0 - i) for i, h in enumerate(hits[n:])]
    return blended + tail
