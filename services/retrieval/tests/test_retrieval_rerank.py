"""blend_rerank: the first n hits reordered by cross-encoder + first-stage blend, the rest below."""

from __future__ import annotations

import itertools

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.store.port import Hit
from isthmus_retrieval.rerank import blend_rerank


def hits(*scores: float) -> list[Hit]:
    return [Hit(f"c{i}", f"d{i}", 0, f"text {i}", s) for i, s in enumerate(scores)]


def ids(hs: list[Hit]) -> list[str]:
    return [h.chunk_id for h in hs]


def test_cross_encoder_alone_reorders_the_head_only() -> None:
    out = blend_rerank(hits(0.9, 0.8, 0.7, 0.6), [1.0, 5.0, 3.0], weight=1.0)
    assert ids(out) == ["c1", "c2", "c0", "c3"]
    assert all(a.score >= b.score for a, b in itertools.pairwise(out))  # still best-first


def test_weight_zero_keeps_the_first_stage_order() -> None:
    out = blend_rerank(hits(0.9, 0.8, 0.7), [1.0, 5.0, 3.0], weight=0.0)
    assert ids(out) == ["c0", "c1", "c2"]


def test_blend_trades_off_both_signals() -> None:
    # c0 best first-stage, worst CE; c2 middling in both; c1 worst first-stage, best CE
    first = hits(1.0, 0.0, 0.6)
    ce = [0.0, 1.0, 0.7]
    assert ids(blend_rerank(first, ce, weight=0.5)) == ["c2", "c0", "c1"]  # 0.65 > 0.5 = 0.5, tie by id
    assert ids(blend_rerank(first, ce, weight=0.9))[0] == "c1"
    assert ids(blend_rerank(first, ce, weight=0.1))[0] == "c0"


def test_bad_inputs() -> None:
    with pytest.raises(InvalidArgument, match="3 reranker scores for 2 hits"):
        blend_rerank(hits(1, 2), [1, 2, 3], weight=0.5)
    with pytest.raises(InvalidArgument, match="between 0 and 1"):
        blend_rerank(hits(1), [1], weight=1.5)
    with pytest.raises(InvalidArgument, match="non-finite"):
        blend_rerank(hits(1, 2), [1, float("nan")], weight=0.5)
    assert blend_rerank([], [], weight=0.5) == []
