"""The service clients' conformance suites against the real platform (the `all` target, bundled models):
retrieval's ``GrpcQueryEmbedder`` and ``GrpcReranker`` against the real embedding service, evaluation's
``GrpcEvalPlatform`` against the real ingestion and retrieval services. One platform for the module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from isthmus_core.clients.embedding import GrpcQueryEmbedder, GrpcReranker
from isthmus_core.grpc.client import open_channel
from isthmus_core.ports.embedding_client import QueryEmbedder, Reranker
from isthmus_core.ports.eval_platform import EvalPlatform
from isthmus_core.testing.embedding_client_conformance import (
    QueryEmbedderConformance,
    QueryEmbedderOutageConformance,
    RerankerConformance,
    RerankerOutageConformance,
)
from isthmus_core.testing.eval_platform_conformance import (
    EvalPlatformConformance,
    EvalPlatformOutageConformance,
)
from isthmus_evaluation.clients import GrpcEvalPlatform

from .conftest import platform

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def channel(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[grpc.aio.Channel]:
    async with platform(tmp_path_factory.mktemp("isthmus")) as rt:
        async with open_channel(rt.address) as ch:
            yield ch


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nowhere() -> AsyncIterator[grpc.aio.Channel]:
    async with open_channel(NOWHERE) as ch:
        yield ch


class TestGrpcQueryEmbedder(QueryEmbedderConformance, QueryEmbedderOutageConformance):
    @pytest.fixture
    def query_embedder(self, channel: grpc.aio.Channel) -> QueryEmbedder:
        return GrpcQueryEmbedder(channel)

    @pytest.fixture
    def unreachable_query_embedder(self, nowhere: grpc.aio.Channel) -> QueryEmbedder:
        return GrpcQueryEmbedder(nowhere, timeout_s=5)


class TestGrpcReranker(RerankerConformance, RerankerOutageConformance):
    @pytest.fixture
    def reranker(self, channel: grpc.aio.Channel) -> Reranker:
        return GrpcReranker(channel)

    @pytest.fixture
    def unreachable_reranker(self, nowhere: grpc.aio.Channel) -> Reranker:
        return GrpcReranker(nowhere, timeout_s=5)


class TestGrpcEvalPlatform(EvalPlatformConformance, EvalPlatformOutageConformance):
    @pytest.fixture
    def eval_platform(self, channel: grpc.aio.Channel) -> EvalPlatform:
        return GrpcEvalPlatform(channel, channel)

    @pytest.fixture
    def unreachable_eval_platform(self, nowhere: grpc.aio.Channel) -> EvalPlatform:
        return GrpcEvalPlatform(nowhere, nowhere, timeout_s=5, long_timeout_s=5)
