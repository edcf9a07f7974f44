"""WeaviateStore against a real Weaviate 1.32.4 server: the store conformance suite, plus what only the
Weaviate adapter promises (per-object batch errors, idempotent object ids, bounded outage handling)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus_core.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from isthmus_core.store.port import ChunkRecord, RejectedRecords, SearchQuery, VectorStore, chunk_uuid
from isthmus_core.testing.store_conformance import StoreConformance, basis, fresh_tenant
from isthmus_retrieval.store_weaviate import WeaviateConfig, WeaviateStore, object_uuid

DIM = 8
MODEL = "test-model"


def config(server, **kw) -> WeaviateConfig:  # type: ignore[no-untyped-def]
    return WeaviateConfig(url=server.url, grpc_port=server.grpc_port, **kw)


@pytest.fixture
async def wstore(weaviate_server) -> AsyncIterator[WeaviateStore]:  # type: ignore[no-untyped-def]
    store = WeaviateStore(config(weaviate_server))
    yield store
    await store.close()


class TestWeaviateStoreConformance(StoreConformance):
    @pytest.fixture
    async def store(self, wstore: WeaviateStore) -> AsyncIterator[VectorStore]:
        yield wstore


def rec(tenant: str, doc: str, i: int, text: str, vector: list[float] | None = None, **kw) -> ChunkRecord:  # type: ignore[no-untyped-def]
    return ChunkRecord(
        chunk_id=chunk_uuid(tenant, doc, i),
        document_id=doc,
        chunk_index=i,
        text=text,
        vector=vector if vector is not None else basis(DIM, (i % DIM, 1.0)),
        model_id=kw.pop("model_id", MODEL),
        **kw,
    )


async def test_a_batch_with_bad_objects_writes_the_good_ones(wstore: WeaviateStore) -> None:
    async with fresh_tenant(wstore) as tenant:
        good = [rec(tenant, "doc", i, f"zebra stripe {i}") for i in range(3)]
        bad_dim = rec(tenant, "doc", 3, "wrong size", [1.0] * (DIM // 2))
        bad_model = rec(tenant, "doc", 4, "other model", model_id="other-model")
        with pytest.raises(RejectedRecords) as err:
            await wstore.upsert(tenant, [good[0], bad_dim, good[1], bad_model, good[2]])
        assert err.value.written == 3
        assert set(err.value.rejected) == {bad_dim.chunk_id, bad_model.chunk_id}
        assert "dimension 4" in err.value.rejected[bad_dim.chunk_id]
        assert "other-model" in err.value.rejected[bad_model.chunk_id]
        assert isinstance(err.value, InvalidArgument)  # permanent: never retried
        assert await wstore.count(tenant) == 3


async def test_replayed_chunks_overwrite_their_objects(wstore: WeaviateStore) -> None:
    async with fresh_tenant(wstore) as tenant:
        records = [rec(tenant, "doc", i, f"heron wading {i}") for i in range(4)]
        for _ in range(3):
            await wstore.upsert(tenant, records)
        assert await wstore.count(tenant) == 4
        # non-UUID chunk ids get a stable uuid5 too
        assert object_uuid("doc#1") == object_uuid("doc#1") != object_uuid("doc#2")
        assert object_uuid(records[0].chunk_id) == records[0].chunk_id


async def test_writes_never_create_a_tenant(wstore: WeaviateStore) -> None:
    missing = f"never-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFound):
        await wstore.upsert(missing, [rec(missing, "doc", 0, "text")])
    assert not await wstore.has_tenant(missing)


async def test_unreachable_server_is_unavailable_after_bounded_retries() -> None:
    # nothing listens on port 9 (discard) on loopback
    store = WeaviateStore(WeaviateConfig(url="http://127.0.0.1:9", grpc_port=10, attempts=2, backoff_s=0.01))
    started = time.monotonic()
    with pytest.raises(Unavailable) as err:
        await store.count("tenant-a")
    assert not isinstance(err.value, DeadlineExceeded)
    assert "unreachable" in str(err.value)
    assert time.monotonic() - started < 30
    assert not await store.ready()
    await store.close()


async def test_outage_then_recovery(weaviate_server) -> None:  # type: ignore[no-untyped-def]
    """The server goes away: calls fail with Unavailable (transient), readiness is false; it comes back:
    the same store object works again without a restart."""
    store = WeaviateStore(config(weaviate_server, attempts=2, backoff_s=0.05, query_timeout_s=3))
    try:
        async with fresh_tenant(store) as tenant:
            await store.upsert(tenant, [rec(tenant, "doc", 0, "kestrel hovering")])
            assert await store.ready()
            weaviate_server.stop()
            try:
                with pytest.raises(Unavailable):
                    await store.search(tenant, SearchQuery(text="kestrel", mode="bm25"))  # type: ignore[arg-type]
                assert not await store.ready()
            finally:
                weaviate_server.start()
            hits = await store.search(tenant, SearchQuery(text="kestrel", mode="bm25"))  # type: ignore[arg-type]
            assert [h.document_id for h in hits] == ["doc"]
            assert await store.ready()
    finally:
        await store.close()


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="http://host:8080"):
        WeaviateStore(WeaviateConfig(url="weaviate:8080"))


async def test_an_older_collection_gains_the_new_properties(weaviate_server) -> None:  # type: ignore[no-untyped-def]
    import weaviate
    import weaviate.classes as wvc

    name = f"IsthmusOld{uuid.uuid4().hex[:8]}"
    host = weaviate_server.url.split("//")[1].split(":")[0]
    port = int(weaviate_server.url.rsplit(":", 1)[1])
    async with weaviate.use_async_with_custom(
        http_host=host, http_port=port, http_secure=False,
        grpc_host=host, grpc_port=weaviate_server.grpc_port, grpc_secure=False,
    ) as client:  # fmt: skip
        await client.collections.create(
            name,
            multi_tenancy_config=wvc.config.Configure.multi_tenancy(enabled=True, auto_tenant_creation=False),
            vector_config=wvc.config.Configure.Vectors.self_provided(),
            properties=[wvc.config.Property(name="text", data_type=wvc.config.DataType.TEXT)],
        )
    store = WeaviateStore(config(weaviate_server, collection=name))
    try:
        async with fresh_tenant(store) as tenant:
            await store.upsert(tenant, [rec(tenant, "doc", 0, "ibis wading", metadata={"acl": "eng"})])
            hits = await store.search(tenant, SearchQuery(text="ibis", mode="bm25", principals=["eng"]))  # type: ignore[arg-type]
            assert [h.document_id for h in hits] == ["doc"]
            assert await store.search(tenant, SearchQuery(text="ibis", mode="bm25", principals=[])) == []  # type: ignore[arg-type]
    finally:
        await store.close()


@pytest.fixture
def secured_weaviate(weaviate_server, tmp_path):  # type: ignore[no-untyped-def]
    """A second real server with API-key authentication on (anonymous access off)."""
    import os
    import subprocess

    from isthmus_core.testing.infra import free_port_run

    root = Path(__file__).resolve().parents[3]
    script = str(root / "tests" / "infra" / "weaviate.sh")
    data = tmp_path / "wv-auth"
    proc = subprocess.run(
        ["bash", script, "up", "--port", str(free_port_run(6)), "--dir", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WEAVIATE_API_KEY": "isthmus-test-key"},
    )
    if proc.returncode != 0:
        pytest.fail(f"weaviate.sh up (api key) failed: {proc.stderr[-2000:]}", pytrace=False)
    url, grpc_port = proc.stdout.strip().splitlines()[-1].split()
    try:
        yield url, int(grpc_port)
    finally:
        subprocess.run(["bash", script, "down", "--dir", str(data)], capture_output=True, timeout=120)


async def test_api_key_authentication(secured_weaviate) -> None:  # type: ignore[no-untyped-def]
    url, grpc_port = secured_weaviate
    good = WeaviateStore(WeaviateConfig(url=url, grpc_port=grpc_port, api_key="isthmus-test-key"))
    try:
        async with fresh_tenant(good) as tenant:
            await good.upsert(tenant, [rec(tenant, "doc", 0, "avocet feeding")])
            assert await good.count(tenant) == 1
        assert await good.ready()
    finally:
        await good.close()
    for key in ("wrong-key", None):
        bad = WeaviateStore(WeaviateConfig(url=url, grpc_port=grpc_port, api_key=key, attempts=1))
        try:
            # transient (chunk events wait for the fixed secret instead of being dead-lettered), and says why
            with pytest.raises(Unavailable, match="refused the credentials"):
                await bad.list_tenants()
            assert not await bad.ready()
        finally:
            await bad.close()
