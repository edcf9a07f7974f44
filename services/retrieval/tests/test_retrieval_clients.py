"""Retrieval's clients of the embedding service: the QueryEmbedder and Reranker conformance suites
against the in-memory fakes (over the hashing embedder) and against the gRPC clients of
:mod:`isthmus_core.clients.embedding` talking to a small EmbeddingService backed by those fakes; then the
search core, which reaches the embedding service only through the two ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from isthmus.embedding.v1 import embedding_pb2 as pb
from isthmus.embedding.v1 import embedding_pb2_grpc as pb_grpc
from isthmus_core.clients.embedding import GrpcQueryEmbedder, GrpcReranker
from isthmus_core.contracts.events import ChunksEmbedded, ChunksIndexed, EmbeddedChunk, TenantDeleted
from isthmus_core.errors import InvalidArgument, Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.ports.embedding_client import (
    LocalQueryEmbedder,
    QueryEmbedder,
    QueryEmbedding,
    Reranker,
    SimilarityReranker,
)
from isthmus_core.ports.hashing_embedder import HashingEmbedder
from isthmus_core.store.port import SearchMode, chunk_uuid
from isthmus_core.testing.embedding_client_conformance import (
    QueryEmbedderConformance,
    QueryEmbedderOutageConformance,
    RerankerConformance,
    RerankerOutageConformance,
)
from isthmus_retrieval.service import Retrieval, SearchParams
from isthmus_retrieval.store_embedded import EmbeddedStore

EMBEDDER = HashingEmbedder(64)
NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


class FakeEmbedding(pb_grpc.EmbeddingServiceServicer):
    """Embed and Rerank over the in-memory fakes; ``extra_scores`` makes Rerank answer one score too many."""

    def __init__(self) -> None:
        self.embedder = LocalQueryEmbedder(EMBEDDER)
        self.reranker = SimilarityReranker(EMBEDDER)
        self.extra_scores = 0
        self.rerank_calls = 0

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        kind = "query" if request.kind == pb.TEXT_KIND_QUERY else "passage"
        out = EMBEDDER.embed(list(request.texts), kind)
        return pb.EmbedResponse(
            vectors=[pb.Vector(values=row.tolist()) for row in out.vectors],
            model_id=out.model_id,
            dimension=EMBEDDER.dimension,
        )

    async def Rerank(self, request: pb.RerankRequest, context: grpc.aio.ServicerContext) -> pb.RerankResponse:
        self.rerank_calls += 1
        scores = await self.reranker.rerank(request.query, list(request.passages))
        return pb.RerankResponse(scores=scores + [0.0] * self.extra_scores, model_id="similarity")


@pytest.fixture
async def embedding() -> AsyncIterator[tuple[FakeEmbedding, str]]:
    servicer = FakeEmbedding()
    server = GrpcServer("127.0.0.1", 0)
    server.add([lambda s: pb_grpc.add_EmbeddingServiceServicer_to_server(servicer, s)], [])
    await server.start()
    await server.set_serving()
    yield servicer, server.address
    await server.stop(0)


@pytest.fixture
async def channel(embedding: tuple[FakeEmbedding, str]) -> AsyncIterator[grpc.aio.Channel]:
    async with open_channel(embedding[1]) as ch:
        yield ch


@pytest.fixture
async def nowhere() -> AsyncIterator[grpc.aio.Channel]:
    async with open_channel(NOWHERE) as ch:
        yield ch


# -- the suites -----------------------------------------------------------------------------------------


class TestLocalQueryEmbedder(QueryEmbedderConformance):
    @pytest.fixture
    def query_embedder(self) -> QueryEmbedder:
        return LocalQueryEmbedder(EMBEDDER)


class TestSimilarityReranker(RerankerConformance):
    @pytest.fixture
    def reranker(self) -> Reranker:
        return SimilarityReranker(EMBEDDER)


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


# -- the gRPC clients' own rules ------------------------------------------------------------------------


async def test_the_grpc_reranker_refuses_a_wrong_number_of_scores(
    embedding: tuple[FakeEmbedding, str], channel: grpc.aio.Channel
) -> None:
    embedding[0].extra_scores = 1
    with pytest.raises(Unavailable, match="3 scores for 2 passages"):
        await GrpcReranker(channel).rerank("marmots", ["marmots sleep", "pelicans fish"])


async def test_the_grpc_reranker_does_not_call_for_no_passages(
    embedding: tuple[FakeEmbedding, str], channel: grpc.aio.Channel
) -> None:
    assert await GrpcReranker(channel).rerank("marmots", []) == []
    assert embedding[0].rerank_calls == 0


# -- the search core over the ports ---------------------------------------------------------------------

TENANT = "acme"
TEXTS = [
    "Pelicans scoop fish with their throat pouch.",
    "Marmots hibernate in burrows through the winter.",
    "Glaciers carve deep valleys into the mountains.",
]


class Recorder:
    def __init__(self) -> None:
        self.indexed: list[ChunksIndexed] = []

    async def on_indexed(self, ev: ChunksIndexed) -> None:
        self.indexed.append(ev)

    async def on_deleted(self, ev: TenantDeleted) -> None:
        pass


class FixedReranker:
    """A Reranker that scores passages by their position (the last first), or returns ``count`` scores."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count
        self.calls: list[tuple[str, list[str]]] = []

    async def rerank(self, query: str, passages: Sequence[str]) -> list[float]:
        self.calls.append((query, list(passages)))
        n = len(passages) if self.count is None else self.count
        return [float(i) for i in range(n)]


async def _core(tmp_path: Path, reranker: Reranker | None) -> tuple[Retrieval, EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "store")
    await store.create_tenant(TENANT)
    rec = Recorder()
    core = Retrieval(
        store,
        LocalQueryEmbedder(EMBEDDER),
        rec.on_indexed,
        rec.on_deleted,
        reranker=reranker,
        rerank_weight=1.0,  # the reranker's order alone
    )
    vectors = EMBEDDER.embed(TEXTS, "passage").vectors
    await core.index(
        ChunksEmbedded(
            tenant_id=TENANT,
            idempotency_key="doc/v1/0",
            document_id="doc",
            content_hash="h",
            version=1,
            batch_index=0,
            batch_count=1,
            model_id=EMBEDDER.model_id,
            chunks=[
                EmbeddedChunk(
                    chunk_id=chunk_uuid(TENANT, "doc", i),
                    index=i,
                    text=text,
                    start=0,
                    end=len(text),
                    vector=vectors[i].tolist(),
                )
                for i, text in enumerate(TEXTS)
            ],
        )
    )
    return core, store


async def test_a_dense_search_embeds_the_query_through_the_port(tmp_path: Path) -> None:
    core, store = await _core(tmp_path, None)
    try:
        hits, model_id = await core.search(
            SearchParams(tenant_id=TENANT, query="where do marmots spend the winter", mode=SearchMode.DENSE)
        )
    finally:
        await store.close()
    assert model_id == EMBEDDER.model_id
    assert hits[0].text == TEXTS[1]


async def test_a_reranked_search_reorders_by_the_rerankers_scores(tmp_path: Path) -> None:
    reranker = FixedReranker()
    core, store = await _core(tmp_path, reranker)
    try:
        plain, _ = await core.search(SearchParams(tenant_id=TENANT, query="marmots winter", top_k=3))
        reranked, _ = await core.search(
            SearchParams(tenant_id=TENANT, query="marmots winter", top_k=3, rerank=True)
        )
    finally:
        await store.close()
    [(query, passages)] = reranker.calls
    assert query == "marmots winter" and passages == [h.text for h in plain]
    assert reranked[0].text == plain[-1].text  # the reranker put the last first


async def test_a_reranker_with_the_wrong_number_of_scores_is_unavailable(tmp_path: Path) -> None:
    core, store = await _core(tmp_path, FixedReranker(count=1))
    try:
        with pytest.raises(Unavailable, match="1 scores for 3 passages"):
            await core.search(SearchParams(tenant_id=TENANT, query="marmots winter", top_k=3, rerank=True))
    finally:
        await store.close()


async def test_an_embedding_outage_is_unavailable_from_search(
    tmp_path: Path, nowhere: grpc.aio.Channel
) -> None:
    store = EmbeddedStore(tmp_path / "store")
    await store.create_tenant(TENANT)
    rec = Recorder()
    core = Retrieval(store, GrpcQueryEmbedder(nowhere, timeout_s=5), rec.on_indexed, rec.on_deleted)
    try:
        with pytest.raises(Unavailable):
            await core.search(SearchParams(tenant_id=TENANT, query="marmots", mode=SearchMode.HYBRID))
        with pytest.raises(InvalidArgument):  # a bad query is refused before any call
            await core.search(SearchParams(tenant_id=TENANT, query=" "))
    finally:
        await store.close()


def test_query_embedding_is_a_value() -> None:
    assert QueryEmbedding((1.0, 0.0), "m") == QueryEmbedding((1.0, 0.0), "m")
