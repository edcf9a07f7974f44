"""``isthmus ingest``: upload files, then follow them until they are searchable (``WatchDocuments``)."""

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
    upload_parts,
    watch_until_terminal,
)
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, RegionsFile, Tenant
from isthmus_cli.output import console, fail, progress

TERMINAL = ("indexed", "failed", "quarantined", "deleted")


def ingest(
    path: Annotated[Path, typer.Argument(help="a file or a folder (.txt .md .html .pdf, recursively)")],
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    regions: RegionsFile = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until indexed")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for indexing")] = 600.0,
    acl: Annotated[
        str | None,
        typer.Option(help="comma-separated users/groups allowed to read these documents (metadata 'acl')"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Upload documents; by default wait until they are searchable."""
    try:
        files = collect_files(path)
    except FileNotFoundError as exc:
        fail(str(exc))
    if not files:
        fail(f"no supported files under {path} (.txt .md .markdown .html .htm .pdf)")

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
                        meta = {"acl": acl} if acl else None
                        r = await stubs.ingestion.Upload(upload_parts(tenant, f, metadata=meta), timeout=300)
                        row.update(
                            document_id=r.document_id,
                            chunks=r.chunk_count,
                            duplicate=r.duplicate,
                            status=status_name(r.status),
                        )
                        _scan(row, r)
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
        return results

    results = run(main())
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
    if any(r["status"] in ("rejected", "failed", "quarantined") for r in results):
        raise typer.Exit(1)


def _scan(row: dict[str, Any], d: Any) -> None:
    """The guardrail's ingest scan on a row: quarantined/flagged/redacted chunk counts and the reason."""
    for key in ("quarantined_chunks", "flagged_chunks", "redacted_chunks"):
        if getattr(d, key, 0):
            row[key] = getattr(d, key)
    if getattr(d, "quarantine_reason", ""):
        row["error"] = d.quarantine_reason
