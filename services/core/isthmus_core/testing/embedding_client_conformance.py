"""Conformance suites for the embedding service's client ports
(:mod:`isthmus_core.ports.embedding_client`): :class:`QueryEmbedderConformance` and
:class:`RerankerConformance`.

Usage, in an adapter's tests::

    class TestMyQueryEmbedder(QueryEmbedderConformance, QueryEmbedderOutageConformance):
        @pytest.fixture
        def query_embedder(self) -> QueryEmbedder:        # any scope
            return MyQueryEmbedder(...)

        @pytest.fixture        # only for adapters with a remote service (the Outage mix-in)
        def unreachable_query_embedder(self) -> QueryEmbedder:
            return MyQueryEmbedder(<an address nothing listens on>)

    class TestMyReranker(RerankerConformance, RerankerOutageConformance):
        @pytest.fixture
        def reranker(self) -> Reranker: ...
        # and ``unreachable_reranker`` for the Outage mix-in

The query embedder suite pins what retrieval relies on: one L2-normalised vector per query, of a stable
length, tagged with a non-empty and stable model id; the same query gives the same vector; a query is
closer to a text sharing its meaning than to an unrelated one; concurrent queries each get their own
vector. The reranker suite: one finite score per passage, in the passages' order (reordering the
passages reorders the scores); a relevant passage outscores an unrelated one; no passages → ``[]``; an
empty query is ``InvalidArgument``. For both, an unreachable service is ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from isthmus_core.errors import InvalidArgument, Unavailable
from isthmus_core.ports.embedding_client import QueryEmbedder, QueryEmbedding, Reranker

QUERY = "How do marmots spend the winter?"
RELATED = "marmots winter hibernation in burrows"
UNRELATED = "quarterly tax return filing deadlines"
RELEVANT = "Marmots hibernate in deep burrows through the winter months."
IRRELEVANT = "Pelicans scoop fish with their throat pouch."
OTHERS = (
    "Where do pelicans keep the fish they catch?",
    "What carves a glacial valley?",
    "short",
    "A much longer question about aircraft wings, boundary layers, lift and drag at high speed, "
    "written so that it needs far more tokens than the others?",
)
UNIT_NORM_TOL = 1e-3
SAME_TOL = 1e-4
#: cross-encoder logits (roughly -12..12) of the same pair in different batches
RERANK_TOL = 1e-2


def _dot(a: QueryEmbedding, b: QueryEmbedding) -> float:
    return sum(x * y for x, y in zip(a.vector, b.vector, strict=True))


class QueryEmbedderConformance:
    """What every QueryEmbedder must do. Subclasses provide the ``query_embedder`` fixture."""

    @pytest.fixture
    def query_embedder(self) -> QueryEmbedder:
        raise NotImplementedError(f"subclasses of {type(self).__name__} provide 'query_embedder'")

    async def test_it_is_a_query_embedder(self, query_embedder: QueryEmbedder) -> None:
        assert isinstance(query_embedder, QueryEmbedder)

    async def test_one_unit_vector_tagged_with_the_model(self, query_embedder: QueryEmbedder) -> None:
        e = await query_embedder.embed_query(QUERY)
        assert isinstance(e, QueryEmbedding)
        assert len(e.vector) >= 2
        assert all(isinstance(x, float) and math.isfinite(x) for x in e.vector)
        assert math.sqrt(sum(x * x for x in e.vector)) == pytest.approx(1.0, abs=UNIT_NORM_TOL)
        assert isinstance(e.model_id, str) and e.model_id.strip()

    async def test_length_and_model_id_are_stable(self, query_embedder: QueryEmbedder) -> None:
        first = await query_embedder.embed_query(QUERY)
        for text in OTHERS:
            e = await query_embedder.embed_query(text)
            assert len(e.vector) == len(first.vector), text
            assert e.model_id == first.model_id, text

    async def test_the_same_query_gives_the_same_vector(self, query_embedder: QueryEmbedder) -> None:
        a = await query_embedder.embed_query(QUERY)
        b = await query_embedder.embed_query(QUERY)
        assert b.model_id == a.model_id
        assert b.vector == pytest.approx(a.vector, abs=SAME_TOL)

    async def test_a_related_text_is_closer_than_an_unrelated_one(
        self, query_embedder: QueryEmbedder
    ) -> None:
        q, related, unrelated = [await query_embedder.embed_query(t) for t in (QUERY, RELATED, UNRELATED)]
        assert _dot(q, related) > _dot(q, unrelated)

    async def test_concurrent_queries_each_get_their_own_vector(self, query_embedder: QueryEmbedder) -> None:
        texts = (QUERY, *OTHERS)
        alone = [await query_embedder.embed_query(t) for t in texts]
        together = await asyncio.gather(*(query_embedder.embed_query(t) for t in texts))
        for text, a, b in zip(texts, alone, together, strict=True):
            assert b.vector == pytest.approx(a.vector, abs=SAME_TOL), text
        assert len({tuple(round(x, 3) for x in e.vector) for e in alone}) == len(texts)  # all different


class RerankerConformance:
    """What every Reranker must do. Subclasses provide the ``reranker`` fixture."""

    @pytest.fixture
    def reranker(self) -> Reranker:
        raise NotImplementedError(f"subclasses of {type(self).__name__} provide 'reranker'")

    async def test_it_is_a_reranker(self, reranker: Reranker) -> None:
        assert isinstance(reranker, Reranker)

    async def test_one_finite_score_per_passage(self, reranker: Reranker) -> None:
        passages = [RELEVANT, IRRELEVANT, *OTHERS]
        scores = await reranker.rerank(QUERY, passages)
        assert isinstance(scores, list) and len(scores) == len(passages)
        assert all(isinstance(s, float) and math.isfinite(s) for s in scores)

    async def test_a_relevant_passage_scores_higher(self, reranker: Reranker) -> None:
        relevant, irrelevant = await reranker.rerank(QUERY, [RELEVANT, IRRELEVANT])
        assert relevant > irrelevant

    async def test_scores_follow_the_passages_order(self, reranker: Reranker) -> None:
        passages = [IRRELEVANT, RELEVANT, OTHERS[1]]
        forward = await reranker.rerank(QUERY, passages)
        backward = await reranker.rerank(QUERY, passages[::-1])
        assert backward[::-1] == pytest.approx(forward, abs=RERANK_TOL)
        assert forward[1] > forward[0]  # the relevant passage's score is at the relevant passage's place

    async def test_the_same_pair_scores_the_same(self, reranker: Reranker) -> None:
        [alone] = await reranker.rerank(QUERY, [RELEVANT])
        again = await reranker.rerank(QUERY, [IRRELEVANT, RELEVANT])
        assert again[1] == pytest.approx(alone, abs=RERANK_TOL)

    async def test_no_passages_no_scores(self, reranker: Reranker) -> None:
        assert await reranker.rerank(QUERY, []) == []

    async def test_an_empty_query_is_invalid_argument(self, reranker: Reranker) -> None:
        with pytest.raises(InvalidArgument):
            await reranker.rerank("  ", [RELEVANT])


class QueryEmbedderOutageConformance:
    """For adapters that reach a remote service: an outage raises
    :class:`~isthmus_core.errors.Unavailable` (never a wrong answer). Mix it in beside the main suite and
    provide ``unreachable_query_embedder`` (a query embedder whose service cannot be reached)."""

    @pytest.fixture
    def unreachable_query_embedder(self) -> QueryEmbedder:
        raise NotImplementedError(
            "subclasses of QueryEmbedderOutageConformance provide a 'unreachable_query_embedder' fixture"
        )

    async def test_an_unreachable_service_is_unavailable(
        self, unreachable_query_embedder: QueryEmbedder
    ) -> None:
        with pytest.raises(Unavailable):
            await unreachable_query_embedder.embed_query(QUERY)


class RerankerOutageConformance:
    """For adapters that reach a remote service: an outage raises
    :class:`~isthmus_core.errors.Unavailable` (never a wrong answer). Mix it in beside the main suite and
    provide ``unreachable_reranker`` (a reranker whose service cannot be reached)."""

    @pytest.fixture
    def unreachable_reranker(self) -> Reranker:
        raise NotImplementedError(
            "subclasses of RerankerOutageConformance provide a 'unreachable_reranker' fixture"
        )

    async def test_an_unreachable_service_is_unavailable(self, unreachable_reranker: Reranker) -> None:
        with pytest.raises(Unavailable):
            await unreachable_reranker.rerank(QUERY, [RELEVANT])
