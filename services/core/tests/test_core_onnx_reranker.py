"""The bundled cross-encoder (ms-marco-MiniLM-L-12-v2 int8) on ONNX Runtime, and the Rerank RPC's checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.embedding.v1 import embedding_pb2 as pb
from isthmus_core.errors import ConfigurationError, FailedPrecondition, InvalidArgument
from isthmus_core.onnx_reranker import OnnxCrossEncoder
from isthmus_embedding.api import EmbeddingServicer

QUERY = "How do glaciers move?"
RELEVANT = "Glaciers move by internal deformation of the ice and by sliding over their beds."
OFF_TOPIC = "The stock exchange closed higher after the central bank held interest rates."


@pytest.fixture(scope="module")
def ce() -> Iterator[OnnxCrossEncoder]:
    model = OnnxCrossEncoder(parallel_runs=2)
    yield model
    model.close()


def test_relevant_passage_scores_higher(ce: OnnxCrossEncoder) -> None:
    scores = ce.score(QUERY, [OFF_TOPIC, RELEVANT])
    assert scores.shape == (2,)
    assert scores[1] > scores[0] + 5  # logits: far apart for an obvious pair
    assert ce.model_id.startswith("reranker_en@")


def test_a_pair_scores_the_same_alone_or_with_others(ce: OnnxCrossEncoder) -> None:
    alone = ce.score(QUERY, [RELEVANT])[0]
    together = ce.score(QUERY, [OFF_TOPIC * 20, RELEVANT, "short"])[1]
    assert alone == pytest.approx(together, abs=1e-6)  # one run per pair: batch-independent


def test_long_passages_are_truncated_not_rejected(ce: OnnxCrossEncoder) -> None:
    (score,) = ce.score(QUERY, [RELEVANT + " " + "ice " * 2000])
    assert score > 0


def test_bad_model_dir_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"model\.onnx"):
        OnnxCrossEncoder(tmp_path)


async def test_rerank_rpc_checks_its_input(ce: OnnxCrossEncoder) -> None:
    api = EmbeddingServicer(None, None, "", 512, ce, max_rerank_passages=2, max_text_chars=100)  # type: ignore[arg-type]
    resp = await api.Rerank(pb.RerankRequest(query=QUERY, passages=[OFF_TOPIC[:90], RELEVANT]), None)  # type: ignore[arg-type]
    assert len(resp.scores) == 2 and resp.scores[1] > resp.scores[0] and resp.model_id == ce.model_id
    with pytest.raises(InvalidArgument, match="limit is 2"):
        await api.Rerank(pb.RerankRequest(query=QUERY, passages=["a", "b", "c"]), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="non-empty query"):
        await api.Rerank(pb.RerankRequest(query=" ", passages=["a"]), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="passage 0 is 101 characters"):
        await api.Rerank(pb.RerankRequest(query=QUERY, passages=["x" * 101]), None)  # type: ignore[arg-type]
    off = EmbeddingServicer(None, None, "", 512, None)  # type: ignore[arg-type]
    with pytest.raises(FailedPrecondition, match="disabled"):
        await off.Rerank(pb.RerankRequest(query=QUERY, passages=["a"]), None)  # type: ignore[arg-type]
