"""The embedding service serves the embedding model of the model bundle it is given (a real bundle made
from the bundled bge-small files, the real ONNX embedder, the gRPC edge)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import pytest

from isthmus.embedding.v1 import embedding_pb2 as pb
from isthmus.embedding.v1 import embedding_pb2_grpc as pb_grpc
from isthmus_core.errors import ConfigurationError
from isthmus_core.model_bundles import load_bundle
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.onnx_embedder import file_digest
from isthmus_core.runtime.runtime import Runtime
from isthmus_embedding.module import MODULE, embedding_model_dir
from isthmus_embedding.settings import EmbeddingSettings


def make_bge_bundle(root: Path, name: str = "edge-en", version: str = "2026.12.1") -> Path:
    bundle = root / name / version
    # the model dir keeps the model's name: the same files then give the same model id, so the tenants'
    # indexes (retrieval checks a query's model id against the index's) keep working
    model = bundle / "models" / BGE_SMALL_EN
    model.mkdir(parents=True)
    for f in ("model.onnx", "tokenizer.json", "config.json"):
        shutil.copyfile(bundled_model_dir(BGE_SMALL_EN) / f, model / f)
    (bundle / "bundle.json").write_text(
        json.dumps({"name": name, "version": version, "embedding": {"model_dir": f"models/{BGE_SMALL_EN}"}})
    )
    return bundle


def test_a_bundle_and_model_dir_together_are_refused(tmp_path: Path) -> None:
    make_bge_bundle(tmp_path)
    bundle = load_bundle(tmp_path, "edge-en@2026.12.1")
    with pytest.raises(ConfigurationError, match=r"model_dir.*edge-en@2026.12.1.*unset one"):
        embedding_model_dir(EmbeddingSettings(model_dir=tmp_path), bundle)
    assert embedding_model_dir(EmbeddingSettings(), bundle) == bundle.embedding_model_dir
    assert embedding_model_dir(EmbeddingSettings(), None) == bundled_model_dir(BGE_SMALL_EN)


@pytest.mark.anyio
async def test_the_service_serves_and_reports_the_bundles_model(tmp_path: Path) -> None:
    bundle = make_bge_bundle(tmp_path / "bundles")
    overrides = {
        "common": {
            "data_dir": str(tmp_path / "data"),
            "grpc_port": 0,
            "metrics_port": 0,
            "bus": "inprocess",
            "shutdown_grace_s": 1.0,
            "model_bundle": "edge-en@2026.12.1",
            "model_bundles_dir": str(tmp_path / "bundles"),
        },
        "embedding": {"reranker_enabled": False},
    }
    rt = Runtime.from_settings("embedding", [MODULE], None, overrides)
    await rt.start()
    try:
        async with grpc.aio.insecure_channel(rt.address) as channel:
            stub = pb_grpc.EmbeddingServiceStub(channel)
            info = await stub.GetModel(pb.GetModelRequest())
            vectors = await stub.Embed(pb.EmbedRequest(texts=["a model bundle"]))
    finally:
        await rt.stop()
    assert info.model_bundle == "edge-en@2026.12.1"
    assert info.model_dir == str((bundle / "models" / BGE_SMALL_EN).resolve())
    assert (
        info.model_id == f"{BGE_SMALL_EN}@{file_digest(bundle / 'models' / BGE_SMALL_EN / 'model.onnx')[:12]}"
    )
    assert info.dimension == len(vectors.vectors[0].values) == 384


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
