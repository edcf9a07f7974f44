"""The tenants page: the tenants the viewer may read (RetrievalService), creating and deleting them, and
per tenant its guardrail policy versions (GuardrailService: view, diff, put, roll back), its prompt
template versions and A/B split (AgentOrchestratorService), what the API says about quotas (nothing:
they live in the access file) and regions (the console's own region and the regions it knows).

Every action is a gRPC call carrying the viewer's token; the page only hides what the viewer may not do.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as orc_pb
from isthmus.guardrail.v1 import guardrail_pb2 as grd_pb
from isthmus.retrieval.v1 import retrieval_pb2 as ret_pb
from isthmus_console.backend import NotLoggedIn, RpcFailure
from isthmus_console.viewer import Viewer
from isthmus_console.web import (
    bad_request,
    console_of,
    current_tenant,
    fragment,
    page,
    remember_tenant,
    render,
    rpc_error,
)
from isthmus_core.auth.identity import Permission
from isthmus_core.contracts.ids import parse_tenant_id
from isthmus_core.errors import InvalidArgument

T = TypeVar("T")

#: the prompt templates a tenant can version (AgentOrchestratorService PromptVersion.name)
PROMPT_NAMES = ("synthesize", "plan", "condense", "critic")
#: a policy's output-only fields: not content (left out of the editor and the diffs)
_POLICY_META = ("tenant_id", "version", "label", "digest", "created_at", "created_by", "source", "current")
_PROMPT_VERSION = re.compile(r"v[1-9][0-9]{0,5}")
_MAX_TEMPLATE = 64 * 1024
_MAX_POLICY_JSON = 64 * 1024


# -- values shown (pure) ---------------------------------------------------------------------------------
def policy_content(policy: grd_pb.Policy) -> dict[str, Any]:
    """A policy version's content as the editor shows it: every field but the output-only ones."""
    data = json_format.MessageToDict(
        policy, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return {k: v for k, v in sorted(data.items()) if k not in _POLICY_META}


def policy_lines(policy: grd_pb.Policy) -> list[str]:
    """One ``field: value`` line per content field (what a diff compares)."""
    return [f"{k}: {json.dumps(v, sort_keys=True)}" for k, v in policy_content(policy).items()]


def policy_diff(old: grd_pb.Policy, new: grd_pb.Policy) -> list[tuple[str, str]]:
    """A unified diff of two versions' content as (kind, line): kind is "add", "del", "hunk" or ""."""
    out: list[tuple[str, str]] = []
    for line in difflib.unified_diff(
        policy_lines(old), policy_lines(new), f"{old.label or 'default'}", f"{new.label or 'default'}", n=1
    ):
        line = line.rstrip("\n")
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")
        out.append((kind, line))
    return out


def when(ts: Any) -> str:
    """A Timestamp (or milliseconds) as UTC text; "" when unset."""
    if isinstance(ts, int):
        return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else ""
    if not ts.seconds and not ts.nanos:
        return ""
    return str(ts.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def parse_split(form: dict[str, str]) -> dict[str, int]:
    """The split form's ``percent_<version>`` fields as version -> percent (blank and 0 left out)."""
    percent: dict[str, int] = {}
    for key, raw in form.items():
        if not key.startswith("percent_"):
            continue
        version = key.removeprefix("percent_")
        if not _PROMPT_VERSION.fullmatch(version):
            raise ValueError(f"{version!r} is not a prompt version (v1, v2, ...)")
        raw = raw.strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"the percent of {version} must be a whole number, not {raw!r}") from None
        if not 0 <= value <= 100:
            raise ValueError(f"the percent of {version} must be between 0 and 100, not {value}")
        if value:
            percent[version] = value
    if percent and sum(percent.values()) != 100:
        raise ValueError(f"the percents must sum to 100 (they sum to {sum(percent.values())})")
    return percent


# -- calls -----------------------------------------------------------------------------------------------
async def _try(call: Awaitable[T]) -> tuple[T | None, RpcFailure | None]:
    """A call's reply, or the failure a section shows in its place."""
    try:
        return await call, None
    except grpc.aio.AioRpcError as exc:
        return None, RpcFailure.of(exc)
    except NotLoggedIn as exc:
        return None, RpcFailure("UNAUTHENTICATED", str(exc))


def _md(request: Request, viewer: Viewer) -> dict[str, Any]:
    backend = console_of(request).backend
    return {"metadata": backend.metadata(viewer), "timeout": backend.timeout_s}


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=200)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _parse_tenant(raw: str) -> str:
    """A tenant id, parsed (ValueError with the reason when it is not one)."""
    try:
        return str(parse_tenant_id(raw.strip(), "tenant"))
    except InvalidArgument as exc:
        raise ValueError(str(exc)) from None


def _tenant_of(form: dict[str, str]) -> str:
    return _parse_tenant(form.get("tenant", ""))


async def _tenants(request: Request, viewer: Viewer) -> tuple[list[Any], RpcFailure | None]:
    reply, failure = await _try(
        console_of(request).backend.retrieval.ListTenants(ret_pb.ListTenantsRequest(), **_md(request, viewer))
    )
    tenants = sorted(reply.tenants, key=lambda t: t.tenant_id) if reply is not None else []
    return tenants, failure


async def _policy_context(request: Request, viewer: Viewer, tenant: str) -> dict[str, Any]:
    if not viewer.can(Permission.POLICY_READ, tenant):
        return {"versions": [], "policy": None, "may_read_policy": False}
    g = console_of(request).backend.guardrail
    (versions, vfail), (current, cfail) = await asyncio.gather(
        _try(
            g.ListPolicyVersions(grd_pb.ListPolicyVersionsRequest(tenant_id=tenant), **_md(request, viewer))
        ),
        _try(g.GetPolicy(grd_pb.GetPolicyRequest(tenant_id=tenant), **_md(request, viewer))),
    )
    return {
        "versions": list(versions.versions) if versions is not None else [],
        "current_version": versions.current if versions is not None else 0,
        "versions_failure": vfail,
        "policy": current,
        "policy_json": json.dumps(policy_content(current), indent=2) if current is not None else "",
        "policy_failure": cfail,
        "can_manage": viewer.can(Permission.TENANT_MANAGE, tenant),
        "may_read_policy": True,
        "when": when,
    }


async def _prompt_context(request: Request, viewer: Viewer, tenant: str, name: str) -> dict[str, Any]:
    reply, failure = await _try(
        console_of(request).backend.orchestrator.ListPromptVersions(
            orc_pb.ListPromptVersionsRequest(tenant_id=tenant, name=name), **_md(request, viewer)
        )
    )
    return {
        "prompt_name": name,
        "prompt_names": PROMPT_NAMES,
        "prompt_versions": list(reply.versions) if reply is not None else [],
        "split": dict(sorted(reply.split.percent.items())) if reply is not None else {},
        "prompts_failure": failure,
        "can_prompts": viewer.can(Permission.PROMPTS_MANAGE, tenant),
        "when": when,
    }


async def _detail_context(request: Request, viewer: Viewer, tenant: str) -> dict[str, Any]:
    b = console_of(request).backend
    (info, info_failure), policy, prompts = await asyncio.gather(
        _try(b.retrieval.GetTenant(ret_pb.GetTenantRequest(tenant_id=tenant), **_md(request, viewer))),
        _policy_context(request, viewer, tenant),
        _prompt_context(request, viewer, tenant, PROMPT_NAMES[0]),
    )
    return {
        "selected": tenant,
        "info": info,
        "info_json": json_format.MessageToJson(
            info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        if info is not None
        else "",
        "info_failure": info_failure,
        "can_delete": viewer.can(Permission.TENANTS_ADMIN, tenant),
        **policy,
        **prompts,
    }


def _regions(request: Request) -> dict[str, Any]:
    c = console_of(request)
    return {"console_region": c.region, "region_endpoints": dict(sorted(c.settings.region_endpoints.items()))}


# -- routes ----------------------------------------------------------------------------------------------
@page
async def index(request: Request, viewer: Viewer) -> Response:
    tenants, failure = await _tenants(request, viewer)
    selected = current_tenant(request)
    known = {t.tenant_id for t in tenants}
    ctx: dict[str, Any] = {
        "tenants": tenants,
        "list_failure": failure,
        "can_admin": viewer.can(Permission.TENANTS_ADMIN),
        **_regions(request),
    }
    if selected and (selected in known or failure is not None):
        ctx.update(await _detail_context(request, viewer, selected))
    return render(request, "tenants/index.html", ctx)


@fragment
async def tenant_list(request: Request, viewer: Viewer) -> Response:
    tenants, failure = await _tenants(request, viewer)
    return render(request, "tenants/_list.html", {"tenants": tenants, "list_failure": failure})


@fragment
async def create(request: Request, viewer: Viewer) -> Response:
    form = await _form(request)
    try:
        tenant = _tenant_of(form)
    except ValueError as exc:
        return bad_request(request, str(exc))
    try:
        await console_of(request).backend.retrieval.CreateTenant(
            ret_pb.CreateTenantRequest(tenant_id=tenant), **_md(request, viewer)
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Creating tenant {tenant} failed")
    remember_tenant(request, tenant)
    tenants, failure = await _tenants(request, viewer)
    return render(
        request,
        "tenants/_created.html",
        {"created": tenant, "tenants": tenants, "list_failure": failure},
    )


@fragment
async def delete(request: Request, viewer: Viewer) -> Response:
    form = await _form(request)
    try:
        tenant = _tenant_of(form)
    except ValueError as exc:
        return bad_request(request, str(exc))
    if form.get("confirm", "").strip() != tenant:
        return bad_request(
            request, f"to delete tenant {tenant}, type its id ({tenant}) in the confirmation box"
        )
    try:
        await console_of(request).backend.retrieval.DeleteTenant(
            ret_pb.DeleteTenantRequest(tenant_id=tenant), **_md(request, viewer)
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Deleting tenant {tenant} failed")
    if request.session.get("tenant") == tenant:
        request.session.pop("tenant", None)
    tenants, failure = await _tenants(request, viewer)
    return render(
        request, "tenants/_deleted.html", {"deleted": tenant, "tenants": tenants, "list_failure": failure}
    )


def _query_tenant(request: Request) -> str:
    return _parse_tenant(request.query_params.get("tenant", ""))


@fragment
async def policy_section(request: Request, viewer: Viewer) -> Response:
    try:
        tenant = _query_tenant(request)
    except ValueError as exc:
        return bad_request(request, str(exc))
    ctx = await _policy_context(request, viewer, tenant)
    return render(request, "tenants/_policy.html", {"selected": tenant, **ctx})


def _version(raw: str, what: str) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise ValueError(f"{what} must be a version number, not {raw!r}") from None
    if v < 0:
        raise ValueError(f"{what} must be 0 (the current one) or a version number, not {v}")
    return v


@fragment
async def policy_version(request: Request, viewer: Viewer) -> Response:
    """One version's content, and its diff against another (default: the version before it)."""
    q = request.query_params
    try:
        tenant = _query_tenant(request)
        version = _version(q.get("version", "0"), "version")
        against = _version(q.get("against") or str(max(version - 1, 0)), "against")
    except ValueError as exc:
        return bad_request(request, str(exc))
    g = console_of(request).backend.guardrail
    try:
        new, old = await asyncio.gather(
            g.GetPolicy(grd_pb.GetPolicyRequest(tenant_id=tenant, version=version), **_md(request, viewer)),
            g.GetPolicy(grd_pb.GetPolicyRequest(tenant_id=tenant, version=against), **_md(request, viewer))
            if against
            else _default_policy(tenant),
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Reading policy version {version} of {tenant} failed")
    return render(
        request,
        "tenants/_policy_version.html",
        {
            "selected": tenant,
            "shown": new,
            "shown_json": json.dumps(policy_content(new), indent=2),
            "against": old,
            "against_label": old.label or ("v" + str(against) if against else "built-in default"),
            "diff": policy_diff(old, new),
            "when": when,
        },
    )


async def _default_policy(tenant: str) -> grd_pb.Policy:
    """Version 0 asked of GetPolicy is the current one: "the version before v1" is the empty policy."""
    return grd_pb.Policy(tenant_id=tenant, label="(nothing)")


@fragment
async def policy_rollback(request: Request, viewer: Viewer) -> Response:
    form = await _form(request)
    try:
        tenant = _tenant_of(form)
        version = _version(form.get("version", ""), "version")
    except ValueError as exc:
        return bad_request(request, str(exc))
    if version < 1:
        return bad_request(request, "roll back to a stored version (1 or more)")
    try:
        await console_of(request).backend.guardrail.RollbackPolicy(
            grd_pb.RollbackPolicyRequest(tenant_id=tenant, version=version), **_md(request, viewer)
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Rolling {tenant}'s policy back to version {version} failed")
    ctx = await _policy_context(request, viewer, tenant)
    return render(
        request,
        "tenants/_policy.html",
        {"selected": tenant, "notice": f"Policy of {tenant} rolled back to version {version}.", **ctx},
    )


@fragment
async def policy_put(request: Request, viewer: Viewer) -> Response:
    form = await _form(request)
    try:
        tenant = _tenant_of(form)
    except ValueError as exc:
        return bad_request(request, str(exc))
    text = form.get("policy", "")
    if len(text) > _MAX_POLICY_JSON:
        return bad_request(request, f"the policy is longer than {_MAX_POLICY_JSON} characters")
    try:
        content = json.loads(text)
        if not isinstance(content, dict):
            raise ValueError("the policy must be a JSON object")
        meta = sorted(set(content) & set(_POLICY_META))
        if meta:
            raise ValueError(f"{', '.join(meta)} cannot be set (the service fills them in)")
        policy = json_format.ParseDict(content, grd_pb.Policy())
    except (ValueError, json_format.ParseError) as exc:
        return bad_request(request, f"the policy is not valid: {exc}")
    policy.tenant_id = tenant
    try:
        stored = await console_of(request).backend.guardrail.PutPolicy(policy, **_md(request, viewer))
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Storing a policy for {tenant} failed")
    ctx = await _policy_context(request, viewer, tenant)
    return render(
        request,
        "tenants/_policy.html",
        {
            "selected": tenant,
            "notice": f"Policy {stored.label} of {tenant} stored; it is current now.",
            **ctx,
        },
    )


def _prompt_name(raw: str) -> str:
    if raw not in PROMPT_NAMES:
        raise ValueError(f"the prompt must be one of {', '.join(PROMPT_NAMES)}, not {raw!r}")
    return raw


@fragment
async def prompts_section(request: Request, viewer: Viewer) -> Response:
    try:
        tenant = _query_tenant(request)
        name = _prompt_name(request.query_params.get("name", PROMPT_NAMES[0]))
    except ValueError as exc:
        return bad_request(request, str(exc))
    ctx = await _prompt_context(request, viewer, tenant, name)
    return render(request, "tenants/_prompts.html", {"selected": tenant, **ctx})


@fragment
async def prompt_create(request: Request, viewer: Viewer) -> Response:
    form = await _form(request)
    try:
        tenant = _tenant_of(form)
        name = _prompt_name(form.get("name", ""))
    except ValueError as exc:
        return bad_request(request, str(exc))
    template = form.get("template", "")
    if not template.strip():
        return bad_request(request, "the template is empty")
    if len(template) > _MAX_TEMPLATE:
        return bad_request(request, f"the template is longer than {_MAX_TEMPLATE} characters")
    try:
        created = await console_of(request).backend.orchestrator.CreatePromptVersion(
            orc_pb.CreatePromptVersionRequest(tenant_id=tenant, name=name, template=template),
            **_md(request, viewer),
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Creating a {name} prompt version for {tenant} failed")
    ctx = await _prompt_context(request, viewer, tenant, name)
    notice = f"Prompt {name} {created.version} created (it serves requests once the split gives it a share)."
    return render(request, "tenants/_prompts.html", {"selected": tenant, "notice": notice, **ctx})


@fragment
async def prompt_split(request: Request, viewer: Viewer) -> Response:
    form = await _form(request)
    try:
        tenant = _tenant_of(form)
        name = _prompt_name(form.get("name", ""))
        percent = parse_split(form)
    except ValueError as exc:
        return bad_request(request, str(exc))
    try:
        await console_of(request).backend.orchestrator.SetPromptSplit(
            orc_pb.SetPromptSplitRequest(tenant_id=tenant, name=name, percent=percent), **_md(request, viewer)
        )
    except grpc.aio.AioRpcError as exc:
        return rpc_error(request, exc, f"Setting the {name} split of {tenant} failed")
    ctx = await _prompt_context(request, viewer, tenant, name)
    shown = ", ".join(f"{v} {p}%" for v, p in sorted(percent.items())) or "the built-in template"
    return render(
        request, "tenants/_prompts.html", {"selected": tenant, "notice": f"Split of {name}: {shown}.", **ctx}
    )


routes: list[BaseRoute] = [
    Route("/tenants", index),
    Route("/tenants/list", tenant_list),
    Route("/tenants/create", create, methods=["POST"]),
    Route("/tenants/delete", delete, methods=["POST"]),
    Route("/tenants/policy", policy_section),
    Route("/tenants/policy/version", policy_version),
    Route("/tenants/policy/rollback", policy_rollback, methods=["POST"]),
    Route("/tenants/policy/put", policy_put, methods=["POST"]),
    Route("/tenants/prompts", prompts_section),
    Route("/tenants/prompts/create", prompt_create, methods=["POST"]),
    Route("/tenants/prompts/split", prompt_split, methods=["POST"]),
]
