"""``isthmus policy get|put|versions|rollback``: a tenant's guardrail policy and its versions.

Every ``put`` stores a new immutable version (v1, v2…) and makes it current, unless the current one
already has that content; ``rollback`` makes an earlier version current again. Every guardrail verdict
names the version it applied (``default`` while the tenant never stored one). A policy file is TOML or
JSON (by its suffix: ``.toml``, else JSON) holding the policy's fields by name, as ``get --json`` prints
them; fields it leaves out take the built-in defaults.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, Tenant
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from isthmus.guardrail.v1 import guardrail_pb2 as pb

app = typer.Typer(
    help="A tenant's guardrail policy: its versions (immutable: v1, v2...), which one is current.",
    no_args_is_help=True,
)


def _version(value: str) -> int:
    """``3`` or ``v3`` → 3."""
    number = value.strip().removeprefix("v")
    if not number.isdigit() or int(number) < 1:
        raise typer.BadParameter(f"{value!r}: expected a version such as v3 (or 3)")
    return int(number)


def _optional_version(value: str | None) -> int:
    return 0 if value is None else _version(value)


VersionArg = Annotated[str, typer.Argument(help="the version to make current (v3 or 3)")]


def as_dict(policy: pb.Policy) -> dict[str, Any]:
    """Every field, defaults included (what ``put`` reads back unchanged)."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(policy, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _when(policy: pb.Policy) -> str:
    if not policy.HasField("created_at"):
        return "-"
    return policy.created_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")


def _made(policy: pb.Policy) -> str:
    if not policy.version:
        return "built-in default (never stored)"
    by = f" by {policy.created_by}" if policy.created_by else ""
    return f"{policy.source}{by} at {_when(policy)}"


def _entities(values: Any, empty: str = "none") -> str:
    return ", ".join(values) or empty


def _lines(p: pb.Policy) -> list[tuple[str, str]]:
    topics = [f"{t.name} (>= {t.threshold:.2f}): {t.description}" for t in p.banned_topics]
    return [
        ("tenant", p.tenant_id),
        ("version", f"{p.label}" + (" (current)" if p.current else "")),
        ("made", _made(p)),
        ("digest", p.digest),
        ("injection", f"block >= {p.injection_threshold:.2f}" if p.block_injection else "report only"),
        ("toxicity", f"block >= {p.toxicity_threshold:.2f}" if p.block_toxicity else "report only"),
        ("banned topics", "; ".join(topics) or "none"),
        (
            "input PII",
            f"{p.pii_action if p.redact_pii else 'report only'} >= {p.pii_threshold:.2f}: "
            + _entities(p.pii_entities),
        ),
        (
            "output PII",
            f"{p.output_pii_action}: "
            + _entities(
                p.output_pii_entities, "none" if p.set_output_pii_entities else "input PII less PERSON"
            ),
        ),
        (
            "grounding",
            f"{'block' if p.block_ungrounded else 'report'} below {p.grounding_threshold:.2f} word support"
            + (
                f"; model: contradiction >= {p.contradiction_threshold:.2f}, "
                f"entailment < {p.entailment_threshold:.2f}"
                if p.grounding_model
                else "; model off"
            ),
        ),
        (
            "ingest",
            (
                f"injection >= {p.ingest_injection_threshold:.2f}: {p.ingest_injection_action}; "
                f"PII {p.ingest_pii_action}: {_entities(p.ingest_pii_entities)}; "
                f"a block quarantines the {p.ingest_scope}"
            )
            if p.scan_ingest
            else "not scanned",
        ),
    ]


def _show(p: pb.Policy) -> None:
    for label, value in _lines(p):
        console.print(f"[bold]{label}:[/bold] {escape(value)}")


@app.command("get")
def get(
    tenant: Tenant,
    version: Annotated[
        str | None,
        typer.Option("--version", "-v", help="an earlier version (v3 or 3); default: the current one"),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """The tenant's current policy (or an earlier version); --json prints a file 'put' takes back."""
    from isthmus.guardrail.v1 import guardrail_pb2 as pb

    number = _optional_version(version)

    async def main() -> pb.Policy:
        async with connect(endpoint) as stubs:
            got: pb.Policy = await stubs.guardrail.GetPolicy(
                pb.GetPolicyRequest(tenant_id=tenant, version=number), timeout=30
            )
            return got

    p = run(main())
    if as_json:
        print(json.dumps(as_dict(p), indent=2))
        return
    _show(p)


def read_policy_file(path: Path) -> dict[str, Any]:
    """A policy file's fields (TOML when it ends in ``.toml``, else JSON); unreadable: exit 2."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError, JSONDecodeError
        fail(f"cannot read the policy file {path}: {exc}", 2)
    if not isinstance(data, dict):
        fail(f"the policy file {path} must hold a table (TOML) or an object (JSON) of policy fields", 2)
    return data


@app.command("put")
def put(
    file: Annotated[Path, typer.Argument(help="the policy: a TOML (.toml) or JSON file of its fields")],
    tenant: Tenant,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Store a policy as the tenant's next version and make it current (the same content as the current
    version stores nothing)."""
    from isthmus_core.errors import InvalidArgument
    from isthmus_guardrail.api import policy_request

    try:
        request = policy_request(tenant, read_policy_file(file))
    except InvalidArgument as exc:
        fail(f"{file}: {exc}", 2)

    async def main() -> pb.Policy:
        async with connect(endpoint) as stubs:
            stored: pb.Policy = await stubs.guardrail.PutPolicy(request, timeout=30)
            return stored

    p = run(main())
    if as_json:
        print(json.dumps(as_dict(p), indent=2))
        return
    if not p.version:
        console.print(f"tenant {tenant} keeps the built-in default policy (the file holds its settings)")
        return
    console.print(
        f"policy {p.label} of tenant {tenant} is current ({escape(_made(p))}; digest {p.digest}); "
        "verdicts now name it"
    )


@app.command("versions")
def versions(tenant: Tenant, endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False) -> None:
    """Every stored version of the tenant's policy, newest first; * marks the current one."""
    from isthmus.guardrail.v1 import guardrail_pb2 as pb

    async def main() -> pb.ListPolicyVersionsResponse:
        async with connect(endpoint) as stubs:
            listed: pb.ListPolicyVersionsResponse = await stubs.guardrail.ListPolicyVersions(
                pb.ListPolicyVersionsRequest(tenant_id=tenant), timeout=30
            )
            return listed

    resp = run(main())
    if as_json:
        print(
            json.dumps({"current": resp.current, "versions": [as_dict(v) for v in resp.versions]}, indent=2)
        )
        return
    if not resp.versions:
        console.print(
            f"tenant {tenant} never stored a policy: the built-in default applies (label 'default')"
        )
        return
    table = Table("version", "current", "source", "created by", "created (UTC)", "digest")
    for v in resp.versions:
        table.add_row(
            v.label,
            "*" if v.current else "",
            escape(v.source),
            escape(v.created_by or "-"),
            _when(v),
            v.digest,
        )
    console.print(table)


@app.command("rollback")
def rollback(
    version: VersionArg, tenant: Tenant, endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False
) -> None:
    """Make an earlier version current again (every version is kept)."""
    from isthmus.guardrail.v1 import guardrail_pb2 as pb

    number = _version(version)

    async def main() -> pb.Policy:
        async with connect(endpoint) as stubs:
            back: pb.Policy = await stubs.guardrail.RollbackPolicy(
                pb.RollbackPolicyRequest(tenant_id=tenant, version=number), timeout=30
            )
            return back

    p = run(main())
    if as_json:
        print(json.dumps(as_dict(p), indent=2))
        return
    console.print(f"policy {p.label} of tenant {tenant} is current again ({escape(_made(p))})")
