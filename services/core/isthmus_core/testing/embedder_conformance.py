"""Conformance suite for the :class:`~isthmus_core.ports.embedder.Embedder` port.

Every adapter's tests subclass :class:`EmbedderConformance` and provide an ``embedder`` fixture;
when the embedder is expensive to build, return one from a module-scoped fixture::

    @pytest.fixture(scope="module")
    def onnx_embedder() -> OnnxEmbedder:
        return OnnxEmbedder(bundled_model_dir(BGE_SMALL_EN))

    class TestOnnxEmbedderConformance(EmbedderConformance):
        @pytest.fixture
        def embedder(self, onnx_embedder: OnnxEmbedder) -> Embedder:
            return onnx_embedder
"""

from __future__ import annotations

import numpy as np
import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_core.ports.embedder import Embedder, Embeddings

ANCHOR = "The cat sat on the mat in the kitchen."
SIMILAR = "A cat was sitting on the kitchen mat."
DISSIMILAR = "Quarterly revenue grew by ten percent across European markets."
QUERY = "where did the cat sit"
#: texts of very different lengths, so that batching pads the short ones
MIXED = (
    "short text",
    "A much longer passage about aircraft wings, boundary layers, lift and drag at high speed, "
    "written so that it needs far more tokens than the others in the same batch.",
    "",
    "Numbers 123 and symbols % & # still embed.",
)
UNIT_NORM_ATOL = 1e-4
SAME_VECTOR_ATOL = 1e-4


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class EmbedderConformance:
    """What every Embedder must do. Subclasses provide the ``embedder`` fixture."""

    @pytest.fixture
    def embedder(self) -> Embedder:
        raise NotImplementedError("subclasses of EmbedderConformance provide an 'embedder' fixture")

    def test_is_an_embedder(self, embedder: Embedder) -> None:
        assert isinstance(embedder, Embedder)

    def test_model_id_is_non_empty_and_stable(self, embedder: Embedder) -> None:
        before = embedder.model_id
        assert isinstance(before, str) and before.strip()
        result = embedder.embed([ANCHOR])
        assert result.model_id == before
        assert embedder.model_id == before

    def test_dimension_matches_output(self, embedder: Embedder) -> None:
        assert embedder.dimension > 0
        result = embedder.embed(list(MIXED))
        assert isinstance(result, Embeddings)
        assert result.vectors.shape == (len(MIXED), embedder.dimension)
        assert result.vectors.dtype == np.float32

    def test_rows_are_l2_normalised(self, embedder: Embedder) -> None:
        vectors = embedder.embed(list(MIXED)).vectors
        assert np.all(np.isfinite(vectors))
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=UNIT_NORM_ATOL)

    def test_is_deterministic(self, embedder: Embedder) -> None:
        first = embedder.embed(list(MIXED)).vectors
        second = embedder.embed(list(MIXED)).vectors
        np.testing.assert_allclose(first, second, atol=1e-6)

    def test_empty_input_gives_empty_matrix(self, embedder: Embedder) -> None:
        result = embedder.embed([])
        assert result.vectors.shape == (0, embedder.dimension)
        assert result.vectors.dtype == np.float32
        assert result.model_id == embedder.model_id

    def test_order_is_preserved(self, embedder: Embedder) -> None:
        forward = embedder.embed(list(MIXED)).vectors
        backward = embedder.embed(list(reversed(MIXED))).vectors
        np.testing.assert_allclose(forward, backward[::-1], atol=SAME_VECTOR_ATOL)
        # different texts give different rows, so the comparison above could fail
        assert not np.allclose(forward[0], forward[1], atol=SAME_VECTOR_ATOL)

    def test_batch_equals_single_items(self, embedder: Embedder) -> None:
        batch = embedder.embed(list(MIXED)).vectors
        for i, text in enumerate(MIXED):
            single = embedder.embed([text]).vectors
            np.testing.assert_allclose(batch[i], single[0], atol=SAME_VECTOR_ATOL, err_msg=repr(text))

    @pytest.mark.parametrize("kind", ["query", "passage"])
    def test_both_kinds_work(self, embedder: Embedder, kind: str) -> None:
        result = embedder.embed([ANCHOR, DISSIMILAR], kind)  # type: ignore[arg-type]
        assert result.vectors.shape == (2, embedder.dimension)
        np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=UNIT_NORM_ATOL)

    def test_unknown_kind_is_rejected(self, embedder: Embedder) -> None:
        with pytest.raises(InvalidArgument, match="kind"):
            embedder.embed([ANCHOR], "document")  # type: ignore[arg-type]

    def test_similar_texts_are_closer_than_dissimilar_ones(self, embedder: Embedder) -> None:
        anchor, similar, dissimilar = embedder.embed([ANCHOR, SIMILAR, DISSIMILAR]).vectors
        assert _cosine(anchor, similar) > _cosine(anchor, dissimilar)

    def test_query_is_closer_to_its_relevant_passage(self, embedder: Embedder) -> None:
        query = embedder.embed([QUERY], "query").vectors[0]
        relevant, unrelated = embedder.embed([ANCHOR, DISSIMILAR], "passage").vectors
        assert _cosine(query, relevant) > _cosine(query, unrelated)
