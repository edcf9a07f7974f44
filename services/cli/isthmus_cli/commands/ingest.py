"""``isthmus ingest``: upload files, then follow them until they are searchable (``WatchDocuments``).

Every file of a folder ends in the table: indexed, failed or rejected with the reason, or unsupported
(an extension ingestion does not parse) with the reason. Documents found inside a file (e-mail
attachments, an mbox's messages) get a row of their own under it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table

from isthmus_cli.client import (
    collect_files,
    connect,
    rpc_error_text,
    run,
    status_name,
    supported_extensions,
    upload_parts,
    watch_until_terminal,
)
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, RegionsFile, Tenant
from isthmus_cli.output import console, fail, progress

TERMINAL = ("indexed", "failed", "quarantined", "deleted")


def ingest(
    path: Annotated[
        Path,
        typer.Argument(
            help="a file or a folder, recursively (.txt .md .html .pdf .docx .pptx .xlsx .csv .tsv .json "
            ".jsonl .eml .mbox; other files are listed as unsupported)"
        ),
    ],
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    regions: RegionsFile = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until indexed")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for indexing")] = 600.0,
    acl: Annotated[
        str | None,
        typer.Option(help="comma-separated users/groups allowed to read these documents (metadata 'acl')"),
    ] = None,
    collection: Annotated[
        str | None,
        typer.Option(
            help="the collection these documents belong to (metadata 'collection'; chunking_overrides "
            "'<tenant>/<collection>' chooses its chunking)"
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Upload documents; by default wait until they are searchable."""
    try:
        collected = collect_files(path)
    except FileNotFoundError as exc:
        fail(str(exc))
    files = collected.files
    if not files and not collected.unsupported:
        fail(f"no files under {path}")
    supported = " ".join(supported_extensions())
    skipped: list[dict[str, Any]] = [
        {"path": str(p), "status": "unsupported", "error": f"{reason}; supported: {supported}"}
        for p, reason in collected.unsupported
    ]

    from isthmus_cli.regional import load_regions_or_fail

    config = load_regions_or_fail(regions) if regions is not None else None
    if config is not None:  # writes go to the tenant's primary region
        endpoint = config.region(config.primary_of(tenant)).endpoint

    async def main() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with connect(endpoint) as stubs:
            with progress(as_json) as bars:
                task = bars.add_task("uploading", total=len(files))
                for f in files:
                    row: dict[str, Any] = {"path": str(f)}
                    try:
                        meta = {k: v for k, v in (("acl", acl), ("collection", collection)) if v} or None
                        r = await stubs.ingestion.Upload(upload_parts(tenant, f, metadata=meta), timeout=300)
                        row.update(
                            document_id=r.document_id,
                            chunks=r.chunk_count,
                            duplicate=r.duplicate,
                            status=status_name(r.status),
                        )
                        _scan(row, r)
                        results.append(row)
                        for child_id in r.child_document_ids:  # attachments, an mbox's messages
                            results.append(await _child_row(stubs.ingestion, tenant, f, child_id))
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                            raise
                        row.update(status="rejected", error=rpc_error_text(exc))
                        results.append(row)
                    bars.advance(task)
                pending = {r["document_id"] for r in results if r.get("status") in ("chunked", "embedded")}
                if wait and pending:
                    task = bars.add_task("indexing", total=len(pending))
                    async for d in watch_until_terminal(stubs.ingestion, tenant, pending, timeout):
                        status = status_name(d.status)
                        if d.document_id not in pending or status not in TERMINAL:
                            continue
                        pending.discard(d.document_id)
                        bars.advance(task)
                        for r in results:
                            if r.get("document_id") == d.document_id:
                                r["status"] = status
                                if d.failure_reason:
                                    r["error"] = d.failure_reason
                                _scan(r, d)
        return results + skipped

    results = run(main()) if files else skipped
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        table = Table("file", "document", "chunks", "status")
        for r in results:
            scanned = ", ".join(
                f"{r[k]} {k.removesuffix('_chunks')}"
                for k in ("flagged_chunks", "redacted_chunks")
                if r.get(k)
            )
            status = (
                r["status"]
                + (f" ({r['error']})" if r.get("error") else "")
                + (f" [chunks: {scanned}]" if scanned else "")
                + (" duplicate" if r.get("duplicate") else "")
            )
            table.add_row(r["path"], r.get("document_id", ""), str(r.get("chunks", "")), status)
        console.print(table)
    if any(r["status"] in ("rejected", "failed", "quarantined", "unsupported") for r in results):
        raise typer.Exit(1)


async def _child_row(stub: Any, tenant: str, parent: Path, document_id: str) -> dict[str, Any]:
    """The row of a document found inside ``parent`` (its state right after the upload)."""
    from isthmus.ingestion.v1 import ingestion_pb2

    d = await stub.GetDocument(ingestion_pb2.GetDocumentRequest(tenant_id=tenant, document_id=document_id))
    row: dict[str, Any] = {
        "path": f"{parent} > {d.filename}",
        "document_id": d.document_id,
        "parent_document_id": d.parent_document_id,
        "chunks": d.chunk_count,
        "status": status_name(d.status),
    }
    if d.failure_reason:
        row["error"] = d.failure_reason
    _scan(row, d)
    return row


def _scan(row: dict[str, Any], d: Any) -> None:
    """The guardrail's ingest scan on a row: quarantined/flagged/redacted chunk counts and the reason."""
    for key in ("quarantined_chunks", "flagged_chunks", "redacted_chunks"):
        if getattr(d, key, 0):
            row[key] = getattr(d, key)
    if getattr(d, "quarantine_reason", ""):
        row["error"] = d.quarantine_reason
