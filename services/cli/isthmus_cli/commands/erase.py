"""``isthmus erase`` and ``isthmus erasure``: erase documents, a data subject or a tenant; the receipt."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, Tenant
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from isthmus.ingestion.v1 import ingestion_pb2


def receipt_dict(r: ingestion_pb2.ErasureReceipt) -> dict[str, Any]:
    """The receipt as plain JSON values (times in RFC 3339, statuses as words)."""
    from isthmus.ingestion.v1 import ingestion_pb2

    def when(ts: Any, present: bool = True) -> str:
        return str(ts.ToJsonString()) if present else ""

    return {
        "erasure_id": r.erasure_id,
        "tenant_id": r.tenant_id,
        "target": r.target,
        "reason": r.reason,
        "requested_by": r.requested_by,
        "requested_at": when(r.requested_at),
        "document_ids": list(r.document_ids),
        "complete": r.complete,
        "steps": [
            {
                "place": s.place,
                "region": s.region,
                "status": ingestion_pb2.ErasureStepStatus.Name(s.status)
                .removeprefix("ERASURE_STEP_STATUS_")
                .lower(),
                "count": s.count,
                "detail": s.detail,
                "completed_at": when(s.completed_at, s.HasField("completed_at")),
            }
            for s in r.steps
        ],
    }


def _print(receipt: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(receipt, indent=2))
        return
    state = "complete" if receipt["complete"] else "in progress"
    console.print(
        f"erasure {receipt['erasure_id']} of tenant {receipt['tenant_id']} ({receipt['target']}): {state}; "
        f"{len(receipt['document_ids'])} document(s); requested by {receipt['requested_by'] or '(auth off)'} "
        f"at {receipt['requested_at']}"
    )
    table = Table("place", "region", "status", "count", "detail")
    for s in receipt["steps"]:
        table.add_row(s["place"], s["region"] or "-", s["status"], str(s["count"]), s["detail"])
    console.print(table)


async def _wait(stub: Any, tenant: str, receipt: Any, within_s: float) -> Any:
    """Poll the receipt until every step is done or failed (none pending), or ``within_s`` passes."""
    from isthmus.ingestion.v1 import ingestion_pb2

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while any(s.status == ingestion_pb2.ERASURE_STEP_STATUS_PENDING for s in receipt.steps):
        if loop.time() >= deadline:
            break
        await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))
        receipt = await stub.GetErasure(
            ingestion_pb2.GetErasureRequest(tenant_id=tenant, erasure_id=receipt.erasure_id), timeout=30
        )
    return receipt


def erase(
    tenant: Tenant,
    document: Annotated[
        list[str] | None, typer.Option("--document", "-d", help="a document id to erase (repeatable)")
    ] = None,
    data_subject: Annotated[
        str | None,
        typer.Option("--data-subject", help="erase every document whose upload metadata names this subject"),
    ] = None,
    whole_tenant: Annotated[
        bool, typer.Option("--whole-tenant", help="erase every document of the tenant, and the tenant")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="why (kept on the receipt and audited)")] = "",
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="seconds to wait for every place to report back")
    ] = 0.0,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Erase documents, every document of a data subject, or a whole tenant, in every region; prints the
    erasure receipt (one step per place and region). Exit 1 if a step failed."""
    from isthmus.ingestion.v1 import ingestion_pb2

    chosen = sum((bool(document), data_subject is not None, whole_tenant))
    if chosen != 1:
        fail("name exactly one of --document (repeatable), --data-subject or --whole-tenant", 2)
    request = ingestion_pb2.EraseRequest(tenant_id=tenant, reason=reason)
    if document:
        request.documents.ids.extend(document)
    elif data_subject is not None:
        request.data_subject = data_subject
    else:
        request.whole_tenant = True

    async def main() -> dict[str, Any]:
        async with connect(endpoint) as stubs:
            receipt = await stubs.ingestion.Erase(request, timeout=120)
            if wait:
                receipt = await _wait(stubs.ingestion, tenant, receipt, wait)
            return receipt_dict(receipt)

    out = run(main())
    _print(out, as_json)
    if any(s["status"] == "failed" for s in out["steps"]):
        raise typer.Exit(1)


def erasure(
    erasure_id: Annotated[str, typer.Argument(help="the erasure id an 'isthmus erase' printed")],
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Print an erasure's receipt: what each place in each region erased, and what is still pending."""
    from isthmus.ingestion.v1 import ingestion_pb2

    async def main() -> dict[str, Any]:
        async with connect(endpoint) as stubs:
            r = await stubs.ingestion.GetErasure(
                ingestion_pb2.GetErasureRequest(tenant_id=tenant, erasure_id=erasure_id), timeout=30
            )
            return receipt_dict(r)

    _print(run(main()), as_json)
