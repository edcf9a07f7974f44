"""Fixtures for the distributed tier: a `Cluster` of six service processes on the session's Kafka."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from isthmus_core.testing.cluster import ISTHMUS, SERVICES, Cluster

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["ISTHMUS", "ROOT", "SMALL_CHUNKS", "Cluster", "running_cluster"]


@pytest.fixture(scope="module")
def cluster_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("cluster")


#: small chunks: a few hundred documents make thousands of chunk events
SMALL_CHUNKS = {
    "ISTHMUS_INGESTION_CHUNK_MAX_TOKENS": "64",
    "ISTHMUS_INGESTION_CHUNK_OVERLAP_TOKENS": "8",
    "ISTHMUS_INGESTION_CHUNKS_PER_EVENT": "8",
}


@contextlib.asynccontextmanager
async def running_cluster(
    base: Path, bootstrap: str, extra_env: dict[str, str], *, metrics: bool = False
) -> AsyncIterator[Cluster]:
    """All six services as processes on ``bootstrap``, each healthy; stopped afterwards."""
    c = Cluster(base, bootstrap, extra_env, metrics=metrics)
    try:
        for svc in SERVICES:
            c.start(svc)
        for svc in SERVICES:
            await c.wait_healthy(svc)
        yield c
    finally:
        c.stop_all()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(kafka_bootstrap: str, cluster_dir: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(cluster_dir, kafka_bootstrap, SMALL_CHUNKS) as c:
        yield c
