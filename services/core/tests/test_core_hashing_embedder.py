from __future__ import annotations

import numpy as np
import pytest

from isthmus_core.errors import ConfigurationError, InvalidArgument
from isthmus_core.ports.embedder import Embedder
from isthmus_core.ports.hashing_embedder import HashingEmbedder
from isthmus_core.testing.embedder_conformance import EmbedderConformance


class TestHashingEmbedderConformance(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return HashingEmbedder()


class TestHashingEmbedderLargeDimensionConformance(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return HashingEmbedder(dimension=256)


def test_model_id_names_the_dimension() -> None:
    assert HashingEmbedder().model_id == "hashing-64"
    assert HashingEmbedder(dimension=128).model_id == "hashing-128"
    assert HashingEmbedder(dimension=128).dimension == 128


def test_is_case_and_punctuation_insensitive() -> None:
    vectors = HashingEmbedder().embed(["Hello, World!", "hello world"]).vectors
    np.testing.assert_allclose(vectors[0], vectors[1])


def test_same_text_same_vector_across_instances() -> None:
    a = HashingEmbedder(dimension=32).embed(["reproducible across processes"]).vectors
    b = HashingEmbedder(dimension=32).embed(["reproducible across processes"]).vectors
    np.testing.assert_array_equal(a, b)


def test_texts_without_shared_words_are_nearly_orthogonal() -> None:
    a, b = HashingEmbedder(dimension=1024).embed(["alpha beta gamma", "delta epsilon zeta"]).vectors
    assert abs(float(a @ b)) < 0.5


def test_empty_and_punctuation_only_texts_are_unit_vectors() -> None:
    vectors = HashingEmbedder().embed(["", "?!..."]).vectors
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("dimension", [0, 1, -3])
def test_too_small_dimension_is_a_configuration_error(dimension: int) -> None:
    with pytest.raises(ConfigurationError, match=str(dimension)):
        HashingEmbedder(dimension=dimension)


def test_a_single_string_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="single string"):
        HashingEmbedder().embed("not a list")


def test_non_string_items_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match="text 1 is a int"):
        HashingEmbedder().embed(["fine", 3])  # type: ignore[list-item]
