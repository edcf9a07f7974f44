"""What the distributed tests share: a Cranfield slice as documents, the CLI, a tenant that ingests and
checks exact counts against a running cluster."""

from __future__ import annotations

import asyncio
import json

import grpc

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.testing.client import run_cli, upload
from isthmus_core.testing.infra import shared_datasets

from .conftest import Cluster


def corpus(start: int, n: int) -> list[tuple[str, bytes]]:
    docs = []
    with shared_datasets("cranfield", "corpus.jsonl", why="the Cranfield corpus").open() as fh:
        for i, line in enumerate(fh):
            if i < start:
                continue
            d = json.loads(line)
            text = f"{d['title']}\n\n{d['text']}".strip()
            if text:
                docs.append((d["_id"], text.encode()))
            if len(docs) >= n:
                break
    return docs


async def cli(*args: str) -> tuple[int, str, str]:
    return await run_cli(*args, timeout_s=300)


class Tenant:
    def __init__(self, cluster: Cluster, name: str) -> None:
        self.c = cluster
        self.name = name
        self.expected = 0
        self.doc_ids: list[str] = []

    def channel(self, svc: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.c.endpoints[svc])

    async def create(self) -> None:
        async with self.channel("retrieval") as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=self.name)
            )

    async def ingest(self, docs: list[tuple[str, bytes]], concurrency: int = 8) -> None:
        sem = asyncio.Semaphore(concurrency)
        async with self.channel("ingestion") as ch:

            async def one(doc_id: str, data: bytes) -> None:
                async with sem:
                    r = await upload(ch, self.name, f"{doc_id}.txt", data, document_id=doc_id)
                assert not r.duplicate
                self.expected += r.chunk_count
                self.doc_ids.append(r.document_id)

            await asyncio.gather(*(one(i, d) for i, d in docs))

    async def count(self) -> int:
        async with self.channel("retrieval") as ch:
            t = await retrieval_pb2_grpc.RetrievalServiceStub(ch).GetTenant(
                retrieval_pb2.GetTenantRequest(tenant_id=self.name), timeout=10
            )
        return int(t.chunk_count)

    async def wait_count(self, at_least: int, within: float = 300) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                n = await self.count()
                if n >= at_least:
                    return n
            except grpc.aio.AioRpcError:
                pass  # retrieval is restarting
            if loop.time() > deadline:
                raise AssertionError(f"{self.name}: fewer than {at_least} chunks indexed within {within}s")
            await asyncio.sleep(0.2)

    async def statuses(self) -> dict[str, int]:
        async with self.channel("ingestion") as ch:
            docs = await ingestion_pb2_grpc.IngestionServiceStub(ch).ListDocuments(
                ingestion_pb2.ListDocumentsRequest(tenant_id=self.name), timeout=30
            )
        out: dict[str, int] = {}
        for d in docs.documents:
            k = ingestion_pb2.DocumentStatus.Name(d.status)
            out[k] = out.get(k, 0) + 1
        return out

    async def wait_all_indexed(self, within: float = 600) -> None:
        """Every document indexed and exactly the expected chunks in the index — then stays so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                st = await self.statuses()
                n = await self.count()
                if st == {"DOCUMENT_STATUS_INDEXED": len(self.doc_ids)} and n >= self.expected:
                    break
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"{self.name}: not complete within {within}s: {st}, {n}/{self.expected}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # redeliveries still in flight would show up as extra chunks now
        assert await self.count() == self.expected
