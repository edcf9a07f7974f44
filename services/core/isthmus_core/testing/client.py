"""Small gRPC client helpers for tests that drive a running platform (all-in-one or distributed)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc


def bearer_channel(address: str, token: str) -> grpc.aio.Channel:
    """An insecure (loopback) channel whose every call carries ``token`` as its bearer."""
    from isthmus_core.auth.outbound import StaticToken, bearer_interceptors

    return grpc.aio.insecure_channel(address, interceptors=bearer_interceptors(StaticToken(token)))


async def upload(ch: grpc.aio.Channel, tenant: str, filename: str, data: bytes, **header: Any) -> Any:
    """Client-streaming ``Upload``: the header, then the bytes in 64 KiB parts."""
    stub = ingestion_pb2_grpc.IngestionServiceStub(ch)

    async def parts() -> AsyncIterator[ingestion_pb2.UploadRequest]:
        yield ingestion_pb2.UploadRequest(
            header=ingestion_pb2.UploadHeader(tenant_id=tenant, filename=filename, **header)
        )
        for i in range(0, len(data), 64 * 1024):
            yield ingestion_pb2.UploadRequest(data=data[i : i + 64 * 1024])

    return await stub.Upload(parts(), timeout=60)


async def wait_indexed(ch: grpc.aio.Channel, tenant: str, doc_ids: list[str], within_s: float = 120) -> None:
    """Poll ``GetDocument`` until every document is indexed; a failed one raises with its reason, and one
    still unknown at the deadline (NOT_FOUND: not consumed yet) is reported as not indexed."""
    stub = ingestion_pb2_grpc.IngestionServiceStub(ch)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    pending = set(doc_ids)
    while pending:
        for d in list(pending):
            try:
                doc = await stub.GetDocument(
                    ingestion_pb2.GetDocumentRequest(tenant_id=tenant, document_id=d)
                )
            except grpc.aio.AioRpcError as exc:
                # a document sent over Kafka (or mirrored from another region) is known once ingestion
                # has consumed it: until then it is pending, not missing
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                continue
            if doc.status == ingestion_pb2.DOCUMENT_STATUS_FAILED:
                raise AssertionError(f"{d} failed: {doc.failure_reason}")
            if doc.status == ingestion_pb2.DOCUMENT_STATUS_QUARANTINED:
                raise AssertionError(f"{d} quarantined: {doc.quarantine_reason}")
            if doc.status == ingestion_pb2.DOCUMENT_STATUS_INDEXED:
                pending.discard(d)
        if loop.time() > deadline:
            raise AssertionError(f"not indexed within {within_s}s: {pending}")
        await asyncio.sleep(0.1)


async def run_cli(
    *args: str, endpoint: str | None = None, env: Mapping[str, str] | None = None, timeout_s: float = 180
) -> tuple[int, str, str]:
    """Run this environment's ``isthmus`` command (exit code, stdout, stderr), 200 columns wide; with
    ``endpoint``, as ``ISTHMUS_ENDPOINT``."""
    extra = {"ISTHMUS_ENDPOINT": endpoint} if endpoint is not None else {}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("isthmus")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **extra, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    return proc.returncode or 0, out.decode(), err.decode()
