"""``isthmus delete``: delete a document (gone from search and answers; its record and history stay)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from isthmus_cli.client import connect, run, status_name
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, Tenant
from isthmus_cli.output import console

if TYPE_CHECKING:
    from isthmus.ingestion.v1 import ingestion_pb2


def document_dict(d: ingestion_pb2.Document) -> dict[str, Any]:
    """A document with its status history, as plain JSON values (times in RFC 3339, statuses as words)."""
    return {
        "tenant_id": d.tenant_id,
        "document_id": d.document_id,
        "filename": d.filename,
        "status": status_name(d.status),
        "version": d.version,
        "history": [
            {
                "status": status_name(h.status),
                "at": h.at.ToJsonString(),
                "version": h.version,
                "detail": h.detail,
            }
            for h in d.history
        ],
    }


def delete(
    document: Annotated[str, typer.Argument(help="the id of the document to delete")],
    tenant: Tenant,
    reason: Annotated[str, typer.Option("--reason", help="why (kept in its history and audited)")] = "",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Delete a document: it leaves search and answers in every region, and no replay brings it back;
    its record stays, status deleted, with its history. Uploading it again later is a new version.
    Deleting a deleted document changes nothing."""
    from isthmus.ingestion.v1 import ingestion_pb2

    async def main() -> dict[str, Any]:
        async with connect(endpoint) as stubs:
            d = await stubs.ingestion.DeleteDocument(
                ingestion_pb2.DeleteDocumentRequest(tenant_id=tenant, document_id=document, reason=reason),
                timeout=60,
            )
            return document_dict(d)

    out = run(main())
    if as_json:
        print(json.dumps(out, indent=2))
        return
    console.print(
        f"document {out['document_id']} of tenant {out['tenant_id']} ({out['filename']}): {out['status']}, "
        f"version {out['version']}"
    )
    table = Table("status", "at", "version", "detail")
    for h in out["history"]:
        table.add_row(h["status"], h["at"], str(h["version"]), h["detail"])
    console.print(table)
