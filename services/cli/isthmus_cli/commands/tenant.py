"""``isthmus tenant create|list|delete`` (tenants live in retrieval, the store of record)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, TenantArg
from isthmus_cli.output import console

app = typer.Typer(help="Create, list and delete tenants.", no_args_is_help=True)


@app.command("create")
def tenant_create(tenant_id: TenantArg, endpoint: Endpoint = DEFAULT_ENDPOINT) -> None:
    from isthmus.retrieval.v1 import retrieval_pb2

    async def main() -> None:
        async with connect(endpoint) as stubs:
            await stubs.retrieval.CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=tenant_id), timeout=30
            )

    run(main())
    console.print(f"tenant [bold]{tenant_id}[/bold] created")


@app.command("list")
def tenant_list(endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False) -> None:
    from isthmus.retrieval.v1 import retrieval_pb2

    async def main() -> retrieval_pb2.ListTenantsResponse:
        async with connect(endpoint) as stubs:
            listed: retrieval_pb2.ListTenantsResponse = await stubs.retrieval.ListTenants(
                retrieval_pb2.ListTenantsRequest(), timeout=30
            )
            return listed

    resp = run(main())
    rows = [{"tenant_id": t.tenant_id, "chunks": t.chunk_count} for t in resp.tenants]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("tenant", "chunks")
    for r in rows:
        table.add_row(str(r["tenant_id"]), str(r["chunks"]))
    console.print(table)


@app.command("delete")
def tenant_delete(
    tenant_id: TenantArg,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    from isthmus.retrieval.v1 import retrieval_pb2

    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete tenant {tenant_id} and all its documents?", abort=True)

    async def main() -> None:
        async with connect(endpoint) as stubs:
            await stubs.retrieval.DeleteTenant(
                retrieval_pb2.DeleteTenantRequest(tenant_id=tenant_id), timeout=120
            )

    run(main())
    console.print(f"tenant [bold]{tenant_id}[/bold] deleted")
