from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from isthmus_core.errors import ConfigurationError
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.onnx_embedder import DEFAULT_QUERY_PREFIX, OnnxEmbedder
from isthmus_core.ports.embedder import Embedder
from isthmus_core.testing.embedder_conformance import EmbedderConformance


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return bundled_model_dir(BGE_SMALL_EN)


@pytest.fixture(scope="module")
def onnx_embedder(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model_dir)


@pytest.mark.slow
class TestOnnxEmbedderConformance(EmbedderConformance):
    @pytest.fixture
    def embedder(self, onnx_embedder: OnnxEmbedder) -> Embedder:
        return onnx_embedder


@pytest.mark.slow
def test_default_model_is_the_bundled_bge_small(onnx_embedder: OnnxEmbedder, model_dir: Path) -> None:
    default = OnnxEmbedder()
    assert default.model_dir == model_dir
    assert default.model_id == onnx_embedder.model_id


@pytest.mark.slow
def test_shape_and_unit_norms(onnx_embedder: OnnxEmbedder) -> None:
    texts = ["lift on a swept wing", "boundary layer transition", "heat transfer in hypersonic flow"]
    vectors = onnx_embedder.embed(texts).vectors
    assert vectors.shape == (3, onnx_embedder.dimension)
    assert onnx_embedder.dimension == 384  # bge-small's hidden size
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_model_id_is_dir_name_and_model_hash(onnx_embedder: OnnxEmbedder, model_dir: Path) -> None:
    assert re.fullmatch(rf"{re.escape(model_dir.name)}@[0-9a-f]{{12}}", onnx_embedder.model_id)


@pytest.mark.slow
def test_model_id_follows_the_directory_and_content(tmp_path: Path, model_dir: Path) -> None:
    renamed = tmp_path / "my-model"
    renamed.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (renamed / name).symlink_to(model_dir / name)
    embedder = OnnxEmbedder(renamed)
    assert embedder.model_id.startswith("my-model@")
    assert embedder.model_id.split("@")[1] == OnnxEmbedder(model_dir).model_id.split("@")[1]


@pytest.mark.slow
def test_query_is_closer_to_its_relevant_passage(onnx_embedder: OnnxEmbedder) -> None:
    query = onnx_embedder.embed(["how does a propeller slipstream affect wing lift?"], "query").vectors[0]
    relevant, unrelated = onnx_embedder.embed(
        [
            "An experimental study of a wing in a propeller slipstream measured the spanwise lift increase.",
            "The recipe calls for two cups of flour, a pinch of salt and fresh basil.",
        ],
        "passage",
    ).vectors
    assert float(query @ relevant) > float(query @ unrelated) + 0.1


@pytest.mark.slow
def test_query_kind_prepends_the_prefix(model_dir: Path, onnx_embedder: OnnxEmbedder) -> None:
    text = "flutter of thin plates"
    as_query = onnx_embedder.embed([text], "query").vectors[0]
    as_passage = onnx_embedder.embed([text], "passage").vectors[0]
    assert not np.allclose(as_query, as_passage, atol=1e-3)
    prefixed = onnx_embedder.embed([DEFAULT_QUERY_PREFIX + text], "passage").vectors[0]
    np.testing.assert_allclose(as_query, prefixed, atol=1e-5)
    no_prefix = OnnxEmbedder(model_dir, query_prefix="")
    np.testing.assert_allclose(no_prefix.embed([text], "query").vectors[0], as_passage, atol=1e-5)


@pytest.mark.slow
def test_padding_does_not_change_vectors(onnx_embedder: OnnxEmbedder) -> None:
    short = "a short query"
    long = " ".join(["supersonic flow over a cone with an attached shock wave"] * 20)
    batch = onnx_embedder.embed([short, long, short]).vectors
    alone = onnx_embedder.embed([short]).vectors[0]
    np.testing.assert_allclose(batch[0], alone, atol=1e-4)
    np.testing.assert_allclose(batch[2], alone, atol=1e-4)
    np.testing.assert_allclose(batch[1], onnx_embedder.embed([long]).vectors[0], atol=1e-4)


@pytest.mark.slow
def test_a_vector_does_not_depend_on_its_batch_neighbours(onnx_embedder: OnnxEmbedder) -> None:
    text = "pressure distribution on a delta wing"
    with_a = onnx_embedder.embed([text, "heat transfer to a blunt body at mach 6"]).vectors[0]
    with_b = onnx_embedder.embed(["completely different neighbour text, much longer " * 5, text]).vectors[1]
    np.testing.assert_allclose(with_a, with_b, atol=1e-6)


@pytest.mark.slow
def test_long_texts_are_truncated_at_max_tokens(model_dir: Path) -> None:
    embedder = OnnxEmbedder(model_dir, max_tokens=16)
    head = "the quick brown fox jumps over the lazy dog near the river bank today"
    a, b = embedder.embed([head + " and then " + "x " * 600, head + " but later " + "y " * 900]).vectors
    # both are cut within the shared head, so they embed identically
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_serial_and_parallel_runs_agree(model_dir: Path, onnx_embedder: OnnxEmbedder) -> None:
    texts = [f"sentence number {i} about wind tunnels and {'shock ' * i}waves" for i in range(7)]
    serial = OnnxEmbedder(model_dir, parallel_runs=1)
    assert serial.parallel_runs == 1
    np.testing.assert_allclose(serial.embed(texts).vectors, onnx_embedder.embed(texts).vectors, atol=1e-5)


@pytest.mark.slow
def test_padded_multi_row_runs_stay_close_to_row_wise_runs(
    model_dir: Path, onnx_embedder: OnnxEmbedder
) -> None:
    texts = ["short", "a somewhat longer text about compressible flow", "mid length text here", "x"]
    batched = OnnxEmbedder(model_dir, rows_per_run=3).embed(texts).vectors
    row_wise = onnx_embedder.embed(texts).vectors
    assert batched.shape == row_wise.shape
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # int8 dynamic quantisation shares one activation scale per run, so rows move a little; padding
    # itself (attention-masked) must not move them further than that
    assert float(np.min(np.sum(batched * row_wise, axis=1))) > 0.99


@pytest.mark.slow
def test_intra_op_threads_is_honoured(model_dir: Path, onnx_embedder: OnnxEmbedder) -> None:
    two = OnnxEmbedder(model_dir, intra_op_threads=2, parallel_runs=1)
    text = ["thread count must not change results"]
    np.testing.assert_allclose(two.embed(text).vectors, onnx_embedder.embed(text).vectors, atol=1e-4)


@pytest.mark.slow
def test_close_stops_the_pool_but_embed_still_works(model_dir: Path) -> None:
    embedder = OnnxEmbedder(model_dir, parallel_runs=2)
    before = embedder.embed(["one", "two", "three"]).vectors
    embedder.close()
    embedder.close()
    np.testing.assert_allclose(embedder.embed(["one", "two", "three"]).vectors, before, atol=1e-6)


# -- startup errors -----------------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigurationError, match=re.escape(str(missing)) + ".*does not exist"):
        OnnxEmbedder(missing)


def test_missing_model_file(tmp_path: Path, model_dir: Path) -> None:
    shutil.copy(model_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(ConfigurationError, match=r"no model\.onnx") as info:
        OnnxEmbedder(tmp_path)
    assert str(tmp_path / "model.onnx") in str(info.value)


def test_missing_tokenizer_file(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "model.onnx").symlink_to(model_dir / "model.onnx")
    with pytest.raises(ConfigurationError, match=r"no tokenizer\.json") as info:
        OnnxEmbedder(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(info.value)


def test_invalid_onnx_file(tmp_path: Path, model_dir: Path) -> None:
    shutil.copy(model_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "model.onnx").write_text("this is not a protobuf, just text\n")
    with pytest.raises(ConfigurationError, match="not a loadable ONNX model") as info:
        OnnxEmbedder(tmp_path)
    assert str(tmp_path / "model.onnx") in str(info.value)


def test_invalid_tokenizer_file(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "model.onnx").symlink_to(model_dir / "model.onnx")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match=r"tokenizer file .* could not be loaded") as info:
        OnnxEmbedder(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(info.value)


def test_max_tokens_beyond_the_model_limit(model_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_tokens=1024 exceeds the model's limit of 512"):
        OnnxEmbedder(model_dir, max_tokens=1024)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 1}, "max_tokens"),
        ({"rows_per_run": 0}, "rows_per_run"),
        ({"parallel_runs": 0}, "parallel_runs"),
        ({"intra_op_threads": 0}, "intra_op_threads"),
    ],
)
def test_bad_numbers_are_configuration_errors(model_dir: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OnnxEmbedder(model_dir, **kwargs)  # type: ignore[arg-type]
