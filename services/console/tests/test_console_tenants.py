"""The tenants page against the real `all` platform in this process, the console on a free port (no
browser): a tenant created through the page's form is listed, a malformed id is refused with the reason,
policy versions stored over gRPC are listed with a diff and can be rolled back, a prompt version created
in the page is listed and gets a split, deleting needs the typed confirmation, a POST without the CSRF
header is refused."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from isthmus.guardrail.v1 import guardrail_pb2 as grd_pb
from isthmus.guardrail.v1 import guardrail_pb2_grpc as grd_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.in_process import platform_overrides
from isthmus_core.testing.infra import free_port_run


def on_platform(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test on the module's in-process platform (slow: it loads the bundled models)."""
    return pytest.mark.slow(pytest.mark.asyncio(loop_scope="module")(test))


_CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')


class Console:
    def __init__(self, client: httpx.AsyncClient, grpc_address: str) -> None:
        self.client = client
        self.grpc_address = grpc_address
        self.csrf = ""

    async def get(self, path: str, **params: str) -> httpx.Response:
        response = await self.client.get(path, params=params)
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        if not self.csrf:
            await self.get("/tenants")
        return await self.client.post(
            path, data=data, headers={"X-CSRF-Token": self.csrf, "HX-Request": "true"}
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    data: Path = tmp_path_factory.mktemp("console-tenants")
    port = free_port_run(1)
    rt = Runtime.from_settings(
        "all",
        MODULES,
        None,
        platform_overrides(str(data), console={"port": port}),
    )
    await rt.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            yield Console(client, rt.address)
    finally:
        await rt.stop()


def _tenant() -> str:
    return "t-" + uuid.uuid4().hex[:10]


async def _create(console: Console, tenant: str) -> httpx.Response:
    return await console.post("/tenants/create", {"tenant": tenant})


@on_platform
async def test_a_tenant_created_in_the_page_is_listed(console: Console) -> None:
    tenant = _tenant()
    page = await console.get("/tenants")
    assert page.status_code == 200, page.text
    assert 'hx-post="/tenants/create"' in page.text  # auth off: the viewer may create tenants
    created = await _create(console, tenant)
    assert created.status_code == 200, created.text
    assert f"Tenant <strong>{tenant}</strong> created" in created.text
    assert 'id="tenant-list" hx-swap-oob="true"' in created.text and f">{tenant}</th>" in created.text
    listed = await console.get("/tenants/list")
    assert f">{tenant}</th>" in listed.text
    again = await _create(console, tenant)
    assert again.status_code == 409 and "ALREADY_EXISTS" in again.text, again.text


@on_platform
async def test_a_bad_tenant_id_is_a_400_with_the_reason(console: Console) -> None:
    bad = await _create(console, "Not_A_Tenant")
    assert bad.status_code == 400, bad.text
    assert 'role="alert"' in bad.text and "INVALID_ARGUMENT" in bad.text
    assert "lowercase letters, digits and" in bad.text
    # an id is never a path: a query with a bad one is refused with the same reason
    part = await console.get("/tenants/policy", tenant="../etc")
    assert part.status_code == 400 and "lowercase letters" in part.text


@on_platform
async def test_post_without_the_csrf_header_is_refused(console: Console) -> None:
    refused = await console.client.post("/tenants/create", data={"tenant": _tenant()})
    assert refused.status_code == 403


@on_platform
async def test_policy_versions_are_listed_diffed_and_rolled_back(console: Console) -> None:
    tenant = _tenant()
    assert (await _create(console, tenant)).status_code == 200
    async with grpc.aio.insecure_channel(console.grpc_address) as ch:
        stub = grd_grpc.GuardrailServiceStub(ch)
        await stub.PutPolicy(
            grd_pb.Policy(tenant_id=tenant, injection_threshold=0.7, grounding_threshold=0.5)
        )
        await stub.PutPolicy(
            grd_pb.Policy(tenant_id=tenant, injection_threshold=0.9, grounding_threshold=0.5)
        )
    page = await console.get("/tenants", tenant=tenant)
    assert page.status_code == 200, page.text
    assert f"Tenant {tenant}" in page.text
    assert ">v1</th>" in page.text and ">v2</th>" in page.text
    assert "Roll back to policy v1" in page.text  # v2 is current: only v1 can be rolled back to
    assert "Quotas are set in the access file" in page.text

    diff = await console.get("/tenants/policy/version", tenant=tenant, version="2")
    assert diff.status_code == 200, diff.text
    assert re.search(r'class="del">-injection_threshold: 0\.7', diff.text), diff.text
    assert re.search(r'class="add">\+injection_threshold: 0\.9', diff.text), diff.text

    rolled = await console.post("/tenants/policy/rollback", {"tenant": tenant, "version": "1"})
    assert rolled.status_code == 200, rolled.text
    assert "rolled back to version 1" in rolled.text
    assert "Roll back to policy v2" in rolled.text  # v1 (or its copy) is current now

    stored = await console.post(
        "/tenants/policy/put",
        {"tenant": tenant, "policy": '{"injection_threshold": 0.8, "redact_pii": true}'},
    )
    assert stored.status_code == 200, stored.text
    assert "stored; it is current now" in stored.text
    bad = await console.post("/tenants/policy/put", {"tenant": tenant, "policy": '{"no_such_field": 1}'})
    assert bad.status_code == 400 and "no_such_field" in bad.text, bad.text
    missing = await console.post("/tenants/policy/rollback", {"tenant": tenant, "version": "99"})
    assert missing.status_code == 404 and "NOT_FOUND" in missing.text, missing.text


@on_platform
async def test_a_prompt_version_created_in_the_page_is_listed_and_split(console: Console) -> None:
    tenant = _tenant()
    assert (await _create(console, tenant)).status_code == 200
    template = "Answer from the context only.\n{contexts}\nQuestion: {question}"
    created = await console.post(
        "/tenants/prompts/create", {"tenant": tenant, "name": "synthesize", "template": template}
    )
    if created.status_code != 200:  # the service may want other placeholders: its reason is shown
        assert 'role="alert"' in created.text, created.text
        pytest.fail(f"CreatePromptVersion refused the template: {created.text}")
    assert "Prompt synthesize v1 created" in created.text
    listed = await console.get("/tenants/prompts", tenant=tenant, name="synthesize")
    assert ">v1</th>" in listed.text and "Percent for v1" in listed.text
    split = await console.post(
        "/tenants/prompts/split", {"tenant": tenant, "name": "synthesize", "percent_v1": "100"}
    )
    assert split.status_code == 200, split.text
    assert "Split of synthesize: v1 100%" in split.text
    bad = await console.post(
        "/tenants/prompts/split", {"tenant": tenant, "name": "synthesize", "percent_v1": "40"}
    )
    assert bad.status_code == 400 and "sum to 100" in bad.text
    unknown = await console.get("/tenants/prompts", tenant=tenant, name="nope")
    assert unknown.status_code == 400 and "synthesize" in unknown.text


@on_platform
async def test_delete_needs_the_typed_confirmation(console: Console) -> None:
    tenant = _tenant()
    assert (await _create(console, tenant)).status_code == 200
    unconfirmed = await console.post("/tenants/delete", {"tenant": tenant, "confirm": "yes"})
    assert unconfirmed.status_code == 400 and "type its id" in unconfirmed.text
    deleted = await console.post("/tenants/delete", {"tenant": tenant, "confirm": tenant})
    assert deleted.status_code == 200, deleted.text
    assert f"Tenant <strong>{tenant}</strong> deleted" in deleted.text
    assert f">{tenant}</th>" not in (await console.get("/tenants/list")).text


@on_platform
async def test_regions_show_the_consoles_region(console: Console) -> None:
    page = await console.get("/tenants")
    assert "Regions" in page.text and "This console serves region" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


# -- the page's own logic (no platform) ----------------------------------------------------------------
def test_split_form_is_parsed_and_checked() -> None:
    from isthmus_console.pages.tenants import parse_split

    assert parse_split({"tenant": "acme", "percent_v1": "30", "percent_v2": "70", "percent_v3": ""}) == {
        "v1": 30,
        "v2": 70,
    }
    assert parse_split({"percent_v1": "0", "percent_v2": ""}) == {}  # the built-in template again
    for form, reason in (
        ({"percent_v1": "40"}, "sum to 100"),
        ({"percent_v1": "x"}, "whole number"),
        ({"percent_v1": "101"}, "between 0 and 100"),
        ({"percent_../x": "100"}, "not a prompt version"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_split(form)


def test_policy_diff_shows_the_changed_fields_only() -> None:
    from isthmus_console.pages.tenants import policy_content, policy_diff

    old = grd_pb.Policy(tenant_id="acme", version=1, label="v1", injection_threshold=0.5, redact_pii=True)
    new = grd_pb.Policy(tenant_id="acme", version=2, label="v2", injection_threshold=0.75, redact_pii=True)
    assert "version" not in policy_content(new) and "tenant_id" not in policy_content(new)
    changed = [(kind, line) for kind, line in policy_diff(old, new) if kind in ("add", "del")]
    assert changed == [("del", "-injection_threshold: 0.5"), ("add", "+injection_threshold: 0.75")]
    assert policy_diff(new, new) == []
