"""What a tenant's agents use and wait for: ``isthmus approvals`` (sensitive tool calls waiting for a
person), ``isthmus approve|reject ID``, ``isthmus graphs``, ``isthmus tools``, and ``isthmus prompt
create|list|split`` (prompt template versions and their A/B split)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from isthmus_cli.client import connect, run
from isthmus_cli.options import DEFAULT_ENDPOINT, AsJson, Endpoint, Tenant
from isthmus_cli.output import console, fail

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb


def _as_dict(message: Message) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message, preserving_proto_field_name=True)


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _parsed(parse_name: str, value: str) -> str:
    """The orchestrator edge's own parser of a field (one rule everywhere): a bad value is exit 2."""
    from isthmus_agent_orchestrator import api
    from isthmus_core.errors import InvalidArgument

    try:
        parsed: str = getattr(api, parse_name)(value)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None
    return parsed


def _approval_id(value: str) -> str:
    return _parsed("parse_approval_id", value)


def _prompt_name(value: str) -> str:
    return _parsed("parse_prompt_name", value)


ApprovalArg = Annotated[
    str, typer.Argument(help="the approval id ('isthmus approvals' lists them)", callback=_approval_id)
]
Reason = Annotated[str, typer.Option("--reason", "-r", help="why (kept with the decision and audited)")]
PromptName = Annotated[
    str, typer.Argument(help="synthesize, plan, condense or critic", callback=_prompt_name)
]


# ---- approvals ----------------------------------------------------------------------------------------


def approvals(tenant: Tenant, endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False) -> None:
    """Sensitive tool calls of agent runs waiting for a person to approve or reject them."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    async def main() -> pb.ListPendingApprovalsResponse:
        async with connect(endpoint) as stubs:
            listed: pb.ListPendingApprovalsResponse = await stubs.agent_orchestrator.ListPendingApprovals(
                pb.ListPendingApprovalsRequest(tenant_id=tenant), timeout=30
            )
            return listed

    resp = run(main())
    if as_json:
        print(json.dumps([_as_dict(a) for a in resp.approvals], indent=2))
        return
    if not resp.approvals:
        console.print(f"no approval is pending in tenant {tenant}")
        return
    table = Table("approval", "tool", "arguments", "graph", "run", "requested by", "expires (UTC)")
    for a in resp.approvals:
        table.add_row(
            a.approval_id,
            escape(a.tool),
            escape(a.arguments_json),
            escape(a.graph),
            a.run_id,
            escape(a.requested_by or "-"),
            _when(a.expires_at_ms),
        )
    console.print(table)
    console.print("[dim]decide with: isthmus approve ID | isthmus reject ID [--reason TEXT][/dim]")


def _decide(tenant: str, approval_id: str, reason: str, endpoint: str, as_json: bool, approve: bool) -> None:
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    req = pb.DecideApprovalRequest(tenant_id=tenant, approval_id=approval_id, reason=reason)

    async def main() -> pb.Approval:
        async with connect(endpoint) as stubs:
            stub = stubs.agent_orchestrator
            decided: pb.Approval = await (stub.Approve if approve else stub.Reject)(req, timeout=30)
            return decided

    a = run(main())
    if as_json:
        print(json.dumps(_as_dict(a), indent=2))
        return
    state = pb.ApprovalState.Name(a.state).removeprefix("APPROVAL_STATE_").lower()
    by = f" by {escape(a.decided_by)}" if a.decided_by else ""
    what = f"tool {escape(a.tool)} of run {a.run_id} (graph {escape(a.graph)})"
    console.print(f"approval {a.approval_id} {state}{by}: {what}")


def approve(
    approval_id: ApprovalArg,
    tenant: Tenant,
    reason: Reason = "",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Approve a waiting tool call: its run goes on and makes the call."""
    _decide(tenant, approval_id, reason, endpoint, as_json, approve=True)


def reject(
    approval_id: ApprovalArg,
    tenant: Tenant,
    reason: Reason = "",
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Reject a waiting tool call: its run stops and answers with what it has."""
    _decide(tenant, approval_id, reason, endpoint, as_json, approve=False)


# ---- graphs and tools ---------------------------------------------------------------------------------


def graphs(tenant: Tenant, endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False) -> None:
    """The agent graphs 'isthmus ask --graph' can run; * marks the tenant's default."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    async def main() -> pb.ListGraphsResponse:
        async with connect(endpoint) as stubs:
            listed: pb.ListGraphsResponse = await stubs.agent_orchestrator.ListGraphs(
                pb.ListGraphsRequest(tenant_id=tenant), timeout=30
            )
            return listed

    resp = run(main())
    if as_json:
        print(json.dumps([_as_dict(g) for g in resp.graphs], indent=2))
        return
    table = Table("graph", "default", "description", "edges")
    for g in resp.graphs:
        table.add_row(
            escape(g.name), "*" if g.is_default else "", escape(g.description), escape(" ".join(g.edges))
        )
    console.print(table)


def tools(tenant: Tenant, endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False) -> None:
    """The tools the tenant's agents may call: who may use each, which graphs, whether a person approves
    every call."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    async def main() -> pb.ListToolsResponse:
        async with connect(endpoint) as stubs:
            listed: pb.ListToolsResponse = await stubs.agent_orchestrator.ListTools(
                pb.ListToolsRequest(tenant_id=tenant), timeout=30
            )
            return listed

    resp = run(main())
    if as_json:
        rows = []
        for t in resp.tools:
            row = _as_dict(t)
            row["arguments_schema"] = json.loads(t.arguments_schema_json or "{}")
            row.pop("arguments_schema_json", None)
            rows.append(row)
        print(json.dumps(rows, indent=2))
        return
    table = Table("tool", "enabled", "approval", "permission", "graphs", "description")
    for t in resp.tools:
        table.add_row(
            escape(t.name),
            "yes" if t.enabled else "no",
            "every call" if t.sensitive else "-",
            escape(t.permission),
            escape(", ".join(t.graphs) or "every graph"),
            escape(t.description),
        )
    console.print(table)


# ---- prompt versions ----------------------------------------------------------------------------------

prompt_app = typer.Typer(
    help="Prompt template versions of a tenant (immutable: v1, v2...) and their A/B split.",
    no_args_is_help=True,
)


def _version_row(v: pb.PromptVersion, share: int | None) -> list[str]:
    return [
        v.version,
        "-" if share is None else f"{share}%",
        escape(v.created_by or "-"),
        _when(v.created_at_ms),
        v.digest[:12],
    ]


@prompt_app.command("create")
def prompt_create(
    name: PromptName,
    tenant: Tenant,
    file: Annotated[Path, typer.Option("--file", "-f", help="the template (UTF-8 text)")],
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Add a version of a prompt template (it takes requests once a split names it)."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    try:
        template = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read the template {file}: {exc}", 2)
    req = pb.CreatePromptVersionRequest(tenant_id=tenant, name=name, template=template)

    async def main() -> pb.PromptVersion:
        async with connect(endpoint) as stubs:
            created: pb.PromptVersion = await stubs.agent_orchestrator.CreatePromptVersion(req, timeout=30)
            return created

    v = run(main())
    if as_json:
        print(json.dumps(_as_dict(v), indent=2))
        return
    console.print(
        f"{escape(v.name)} prompt {v.version} created in tenant {v.tenant_id} (sha256 {v.digest[:12]}); "
        f"route requests to it with: isthmus prompt split {escape(v.name)} {v.version}=100"
    )


@prompt_app.command("list")
def prompt_list(
    name: PromptName, tenant: Tenant, endpoint: Endpoint = DEFAULT_ENDPOINT, as_json: AsJson = False
) -> None:
    """The versions of a prompt template and the share of requests each takes."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    async def main() -> pb.ListPromptVersionsResponse:
        async with connect(endpoint) as stubs:
            listed: pb.ListPromptVersionsResponse = await stubs.agent_orchestrator.ListPromptVersions(
                pb.ListPromptVersionsRequest(tenant_id=tenant, name=name), timeout=30
            )
            return listed

    resp = run(main())
    if as_json:
        print(
            json.dumps({"versions": [_as_dict(v) for v in resp.versions], "split": dict(resp.split.percent)})
        )
        return
    split = dict(resp.split.percent)
    table = Table("version", "share", "created by", "created (UTC)", "sha256")
    for v in resp.versions:
        table.add_row(*_version_row(v, split.get(v.version)))
    console.print(table)
    if not split:
        console.print(f"[dim]requests use the built-in {escape(name)} template (no split set)[/dim]")


def _shares(values: list[str]) -> dict[str, int]:
    shares: dict[str, int] = {}
    for value in values:
        version, _, number = value.partition("=")
        try:
            shares[version.strip()] = int(number)
        except ValueError:
            raise typer.BadParameter(f"{value!r}: expected VERSION=PERCENT (e.g. v1=50)") from None
    from isthmus_agent_orchestrator.api import parse_split
    from isthmus_core.errors import InvalidArgument

    try:
        return parse_split(shares)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc)) from None


@prompt_app.command("split")
def prompt_split(
    name: PromptName,
    tenant: Tenant,
    shares: Annotated[
        list[str] | None,
        typer.Argument(
            help="VERSION=PERCENT each (e.g. v1=50 v2=50), summing to 100; none: back to the built-in "
            "template",
            show_default=False,
        ),
    ] = None,
    endpoint: Endpoint = DEFAULT_ENDPOINT,
    as_json: AsJson = False,
) -> None:
    """Route a share of requests to each version (by question id: the same question, the same version)."""
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as pb

    percent = _shares(shares or [])
    req = pb.SetPromptSplitRequest(tenant_id=tenant, name=name, percent=percent)

    async def main() -> pb.PromptSplit:
        async with connect(endpoint) as stubs:
            done: pb.PromptSplit = await stubs.agent_orchestrator.SetPromptSplit(req, timeout=30)
            return done

    split = run(main())
    if as_json:
        print(json.dumps({"tenant_id": split.tenant_id, "name": split.name, "percent": dict(split.percent)}))
        return
    if not split.percent:
        console.print(f"{escape(name)} requests of tenant {tenant} use the built-in template")
        return
    shown = ", ".join(f"{v} {p}%" for v, p in sorted(split.percent.items()))
    console.print(f"{escape(name)} requests of tenant {tenant}: {shown}")
