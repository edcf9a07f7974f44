"""The tenants page in a real browser: a tenant created in the page's form is listed and opened, its
guardrail policy and prompt sections show; a malformed id is refused in the page with the reason; axe-core
finds no serious or critical problem on the list and on a tenant's page; the keyboard alone reaches the
create form's input and button, and the tenant's prompt and delete controls."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from isthmus.guardrail.v1 import guardrail_pb2, guardrail_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

from .conftest import ConsoleOidcPlatform, ConsolePlatform

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def tab_to(page: Any, selector: str, limit: int = 120) -> bool:
    """Press Tab from the top of the page until ``selector`` has the focus (False if it never does)."""
    page.locator("body").evaluate(
        "b => { window.scrollTo(0, 0); document.activeElement && document.activeElement.blur(); }"
    )
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", selector):
            return True
    return False


def test_create_a_tenant_in_the_page_and_open_it(
    console_platform: ConsolePlatform, page: Any, axe_check: Any, tmp_path: Path
) -> None:
    tenant = "web-" + uuid.uuid4().hex[:8]
    page.goto(console_platform.page_url("/tenants"))
    assert page.get_by_role("heading", name="Tenants", exact=True).is_visible()
    assert page.get_by_role("rowheader", name="acme", exact=True).is_visible()
    assert not axe_check(page)

    # keyboard only: Tab reaches the id field, typing and Enter submit the form
    assert tab_to(page, "#new-tenant"), "Tab never reaches the tenant id field"
    page.keyboard.type(tenant)
    assert tab_to(page, "form[hx-post='/tenants/create'] button[type=submit]")
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text=f"Tenant {tenant} created").wait_for()
    assert page.get_by_role("rowheader", name=tenant, exact=True).is_visible()

    page.get_by_role("link", name=f"Open tenant {tenant}").click()
    page.wait_for_url(f"**/tenants?tenant={tenant}")
    assert page.get_by_role("heading", name=f"Tenant {tenant}", exact=True).is_visible()
    assert page.get_by_role("heading", name="Guardrail policy versions").is_visible()
    assert page.get_by_text("Quotas are set in the access file").is_visible()
    assert page.get_by_label("New version of the synthesize template").is_visible()
    assert not axe_check(page)
    assert tab_to(page, "#prompt-template"), "Tab never reaches the prompt template"
    assert tab_to(page, "#delete-confirm"), "Tab never reaches the delete confirmation"

    # a prompt version made in the page shows in its table
    page.get_by_label("New version of the synthesize template").fill("Context: {contexts}\nQ: {question}")
    page.get_by_role("button", name="Create version").click()
    page.get_by_role("status").filter(has_text="Prompt synthesize v1 created").wait_for()
    assert page.get_by_role("rowheader", name="v1", exact=True).first.is_visible()
    page.screenshot(path=str(tmp_path / "tenant.png"), full_page=True)


def test_a_bad_tenant_id_shows_the_reason(
    console_platform: ConsolePlatform, page: Any, page_errors: Any
) -> None:
    page_errors.allow("status of 400|Status Error Code 400")  # the refused request is logged
    page.goto(console_platform.page_url("/tenants"))
    page.get_by_label("Tenant id").fill("Bad_Id")
    page.get_by_role("button", name="Create tenant").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "INVALID_ARGUMENT" in alert.inner_text() and "lowercase letters" in alert.inner_text()


def test_policy_versions_diff_and_roll_back_in_the_page(
    console_platform: ConsolePlatform, page: Any, axe_check: Any
) -> None:
    tenant = "pol-" + uuid.uuid4().hex[:8]
    with grpc.insecure_channel(console_platform.grpc_address) as ch:
        retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=tenant), timeout=60
        )
        guardrail = guardrail_pb2_grpc.GuardrailServiceStub(ch)
        for threshold in (0.7, 0.9):
            guardrail.PutPolicy(
                guardrail_pb2.Policy(tenant_id=tenant, injection_threshold=threshold), timeout=60
            )
    page.goto(console_platform.page_url(f"/tenants?tenant={tenant}"))
    page.get_by_role("button", name="View and diff policy v2").click()
    diff = page.locator("#policy-view pre.diff")
    diff.wait_for()
    assert (
        "+injection_threshold: 0.9" in diff.inner_text() and "-injection_threshold: 0.7" in diff.inner_text()
    )
    assert not axe_check(page)
    page.get_by_role("button", name="Roll back to policy v1").click()
    page.get_by_role("status").filter(has_text=f"Policy of {tenant} rolled back to version 1").wait_for()
    assert page.get_by_role("button", name="Roll back to policy v2").is_visible()


@pytest.mark.hydra
def test_views_follow_the_viewers_permissions(console_platform_oidc: ConsoleOidcPlatform, page: Any) -> None:
    """alice (tenant-admin of acme) manages acme's policy and prompts through the page (her own token
    goes with the calls) but may neither create nor delete tenants nor run evaluations; bob (reader of
    globex) sees globex's policy read-only and no online metrics."""
    console_platform_oidc.log_in(page, "alice", "/tenants")
    assert page.get_by_role("rowheader", name="acme", exact=True).is_visible()
    assert page.get_by_role("rowheader", name="globex", exact=True).count() == 0
    assert page.get_by_role("button", name="Create tenant").count() == 0
    page.goto(console_platform_oidc.url + "/tenants?tenant=acme")
    assert page.get_by_role("button", name="Delete tenant").count() == 0
    page.get_by_role("button", name="Store as a new version").click()
    page.get_by_role("status").filter(has_text="of acme stored; it is current now").wait_for()
    assert page.get_by_role("button", name="Create version").is_visible()
    page.goto(console_platform_oidc.url + "/evaluation")
    assert page.get_by_role("button", name="Run evaluation").count() == 0
    options = page.get_by_label("Tenant").locator("option").all_inner_texts()
    assert options == ["acme"], options
    page.locator("#online img").first.wait_for()

    page.context.clear_cookies()
    console_platform_oidc.log_in(page, "bob", "/tenants")
    page.goto(console_platform_oidc.url + "/tenants?tenant=globex")
    assert page.get_by_role("heading", name="Guardrail policy versions").is_visible()
    assert page.get_by_role("button", name="Store as a new version").count() == 0
    assert page.get_by_role("button", name="Create version").count() == 0
    page.goto(console_platform_oidc.url + "/evaluation")
    assert page.get_by_role("heading", name="Online metrics over time").count() == 0
    assert page.get_by_role("button", name="Run evaluation").count() == 0
