"""``isthmus tenant create|list|delete`` (tenants live in retrieval, the store of record), and
``isthmus tenant grant|revoke|bindings|quota``: who holds which role in a tenant and the tenant's quotas,
kept in the access file (``isthmus_core.auth.access_file``), which running servers re-read when it
changes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, ConfigFile, Endpoint, TenantArg
from isthmus_cli.output import console, fail
from isthmus_core.auth.identity import ALL_TENANTS, Role

if TYPE_CHECKING:
    from isthmus_core.auth.access_file import AccessFile

app = typer.Typer(
    help="Create, list and delete tenants; grant roles and set quotas (the access file).",
    no_args_is_help=True,
)


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


# --- the access file: role bindings and quotas ----------------------------------------------------------


def _scope(value: str) -> str:
    """A tenant id, or ``*`` for every tenant (the platform's bindings)."""
    from isthmus_cli.options import tenant_id

    return value if value == ALL_TENANTS else tenant_id(value)


def _optional_scope(value: str) -> str:
    return _scope(value) if value else value


def _principal(value: str) -> str:
    from pydantic import ValidationError

    from isthmus_core.auth.access_file import Binding

    try:
        Binding(principal=value, role=Role.READER)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return value


AccessFileOption = Annotated[
    Path | None,
    typer.Option(
        "--access-file",
        envvar="ISTHMUS_ACCESS_FILE",
        help="the access file; default: the settings' access_file, else <data_dir>/access.toml",
    ),
]
ScopeArg = Annotated[str, typer.Argument(help="tenant id, or '*' for every tenant", callback=_scope)]
PrincipalOption = Annotated[
    str,
    typer.Option(
        "--principal",
        "-p",
        help="a token subject (OAuth2 client id) or group:<name>",
        callback=_principal,
    ),
]


def _path(access_file: Path | None, config: Path | None) -> Path:
    if access_file is not None:
        return access_file
    from isthmus_core.auth.access_file import access_file_path
    from isthmus_core.errors import ConfigurationError
    from isthmus_core.settings import CommonSettings, load_all

    try:
        common = load_all([CommonSettings], config)["common"]
    except ConfigurationError as exc:
        fail(str(exc), 2)
    assert isinstance(common, CommonSettings)
    return access_file_path(common)


def _load(path: Path) -> AccessFile:
    from isthmus_core.auth.access_file import load
    from isthmus_core.errors import ConfigurationError

    try:
        return load(path)
    except ConfigurationError as exc:
        fail(str(exc), 2)


def _save(path: Path, model: AccessFile) -> None:
    from isthmus_core.auth.access_file import save

    try:
        save(path, model)
    except OSError as exc:
        fail(f"cannot write the access file {path}: {exc}")


def _where(tenant: str) -> str:
    return "every tenant" if tenant == ALL_TENANTS else f"tenant {tenant}"


@app.command("grant")
def tenant_grant(
    tenant: ScopeArg,
    principal: PrincipalOption,
    role: Annotated[Role, typer.Option("--role", "-r", help="the role to grant")],
    access_file: AccessFileOption = None,
    config: ConfigFile = None,
) -> None:
    """Give a principal a role in a tenant (or in every tenant with '*')."""
    path = _path(access_file, config)
    model = _load(path)
    granted = model.granted(tenant, principal, role)
    if granted == model:
        console.print(f"{principal} already holds {role.value} in {_where(tenant)} ({path})")
        return
    _save(path, granted)
    console.print(f"granted [bold]{role.value}[/bold] to {principal} in {_where(tenant)} ({path})")


@app.command("revoke")
def tenant_revoke(
    tenant: ScopeArg,
    principal: PrincipalOption,
    role: Annotated[
        Role | None, typer.Option("--role", "-r", help="only this role (default: every role)")
    ] = None,
    access_file: AccessFileOption = None,
    config: ConfigFile = None,
) -> None:
    """Take a principal's roles (or one role) in a tenant away."""
    path = _path(access_file, config)
    revoked, n = _load(path).revoked(tenant, principal, role)
    if n == 0:
        fail(f"{principal} holds no {role.value + ' ' if role else ''}role in {_where(tenant)} ({path})")
    _save(path, revoked)
    console.print(f"revoked {n} binding(s) of {principal} in {_where(tenant)} ({path})")


@app.command("bindings")
def tenant_bindings(
    tenant: Annotated[
        str, typer.Argument(help="only this tenant ('*': the platform's)", callback=_optional_scope)
    ] = "",
    access_file: AccessFileOption = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """List who holds which role where (the platform's bindings hold in every tenant)."""
    model = _load(_path(access_file, config))
    rows = [
        {"tenant": t, "principal": b.principal, "role": b.role.value}
        for t, b in model.bindings()
        if not tenant or t == tenant
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("tenant", "principal", "role")
    for r in rows:
        table.add_row(r["tenant"], r["principal"], r["role"])
    console.print(table)


def _rates(values: list[str]) -> dict[str, int]:
    rates: dict[str, int] = {}
    for value in values:
        family, _, number = value.partition("=")
        try:
            rates[family.strip()] = int(number)
        except ValueError:
            raise typer.BadParameter(f"{value!r}: expected family=N (e.g. ask=5)") from None
    return rates


@app.command("quota")
def tenant_quota(
    tenant: TenantArg,
    requests_per_s: Annotated[
        list[str] | None,
        typer.Option("--requests-per-s", help="family=N requests per second (repeatable; e.g. ask=5)"),
    ] = None,
    max_documents: Annotated[int | None, typer.Option("--max-documents", min=0)] = None,
    max_bytes: Annotated[int | None, typer.Option("--max-bytes", min=0)] = None,
    llm_tokens_per_day: Annotated[int | None, typer.Option("--llm-tokens-per-day", min=0)] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="drop the quota first (then set what is given)")
    ] = False,
    access_file: AccessFileOption = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Show a tenant's quotas, or change them (an absent quota is unlimited)."""
    from pydantic import ValidationError

    from isthmus_core.auth.access_file import Quota, validation_problems

    path = _path(access_file, config)
    model = _load(path)
    current = Quota() if clear else (model.quota(tenant) or Quota())
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "max_documents": max_documents,
            "max_bytes": max_bytes,
            "llm_tokens_per_day": llm_tokens_per_day,
        }.items()
        if v is not None
    }
    if requests_per_s:
        changes["requests_per_s"] = {**current.requests_per_s, **_rates(requests_per_s)}
    if clear or changes:
        try:
            quota = Quota.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            fail("; ".join(validation_problems(exc)), 2)
        _save(path, model.with_quota(tenant, quota))
    else:
        quota = current
    shown = quota.model_dump(exclude_none=True)
    if as_json:
        print(json.dumps({"tenant": tenant, **shown}))
        return
    if clear or changes:
        console.print(f"quota of tenant {tenant} updated ({path})")
    table = Table("quota", "limit")
    for family, n in sorted(quota.requests_per_s.items()):
        table.add_row(f"requests_per_s.{family}", str(n))
    for key in ("max_documents", "max_bytes", "llm_tokens_per_day"):
        value = getattr(quota, key)
        table.add_row(key, "unlimited" if value is None else str(value))
    console.print(table)
