"""Thin gRPC client helpers used by the CLI commands."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from isthmus.ingestion.v1 import ingestion_pb2

CHUNK = 1024 * 1024
SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def channel(endpoint: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        endpoint,
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )


async def upload_parts(
    tenant: str, path: Path, document_id: str = "", metadata: dict[str, str] | None = None
) -> AsyncIterator[ingestion_pb2.UploadRequest]:
    ctype = mimetypes.guess_type(path.name)[0] or ""
    yield ingestion_pb2.UploadRequest(
        header=ingestion_pb2.UploadHeader(
            tenant_id=tenant,
            filename=path.name,
            content_type="",
            document_id=document_id,
            metadata={"path": str(path), **({"mime": ctype} if ctype else {}), **(metadata or {})},
        )
    )
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            yield ingestion_pb2.UploadRequest(data=block)


def collect_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)


def rpc_error_text(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"
