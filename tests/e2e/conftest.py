from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.runtime.runtime import Runtime


@contextlib.asynccontextmanager
async def platform(data_dir: Path, **section_overrides: dict[str, Any]) -> AsyncIterator[Runtime]:
    """The real `all` target in this process: in-process bus, embedded store, bundled models."""
    overrides: dict[str, dict[str, Any]] = {
        "common": {
            "data_dir": str(data_dir),
            "grpc_port": 0,
            "metrics_port": 0,
            "bus": "auto",
            "shutdown_grace_s": 2.0,
        },
    }
    for section, values in section_overrides.items():
        overrides.setdefault(section.replace("_", "-"), {}).update(values)
    rt = Runtime.from_settings("all", MODULES, None, overrides)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def upload(ch: grpc.aio.Channel, tenant: str, filename: str, data: bytes, **header: Any) -> Any:
    stub = ingestion_pb2_grpc.IngestionServiceStub(ch)

    async def parts():  # type: ignore[no-untyped-def]
        yield ingestion_pb2.UploadRequest(
            header=ingestion_pb2.UploadHeader(tenant_id=tenant, filename=filename, **header)
        )
        for i in range(0, len(data), 64 * 1024):
            yield ingestion_pb2.UploadRequest(data=data[i : i + 64 * 1024])

    return await stub.Upload(parts(), timeout=60)


async def wait_indexed(ch: grpc.aio.Channel, tenant: str, doc_ids: list[str], within_s: float = 120) -> None:
    stub = ingestion_pb2_grpc.IngestionServiceStub(ch)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    pending = set(doc_ids)
    while pending:
        for d in list(pending):
            doc = await stub.GetDocument(ingestion_pb2.GetDocumentRequest(tenant_id=tenant, document_id=d))
            if doc.status == ingestion_pb2.DOCUMENT_STATUS_FAILED:
                raise AssertionError(f"{d} failed: {doc.failure_reason}")
            if doc.status == ingestion_pb2.DOCUMENT_STATUS_INDEXED:
                pending.discard(d)
        if loop.time() > deadline:
            raise AssertionError(f"not indexed within {within_s}s: {pending}")
        await asyncio.sleep(0.1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
