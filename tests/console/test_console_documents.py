"""The documents page in a real browser against a real platform: a file chosen in the file input is
uploaded (its progress shown), its row follows it to indexed live (Server-Sent Events, no reload) and the
change is said in the live region; it is deleted after the confirmation step, by keyboard; axe-core finds
no serious or critical problem; the keyboard reaches the upload control and the row's buttons. With
``auth = "oidc"``: alice (tenant-admin of acme) uploads to acme; bob (reader of globex) sees neither
acme nor its documents, and a direct URL to alice's document shows PERMISSION_DENIED, not the document."""

from __future__ import annotations

import re
import uuid
from typing import Any

import grpc
import pytest
from playwright.sync_api import expect

from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus_core.testing.browser import PageErrors

from .conftest import ACME, GLOBEX, VIEWPORT, ConsoleOidcPlatform, ConsolePlatform

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: uploads go through ingestion, chunking, embedding and indexing on a shared two-core machine
INDEXED_WITHIN_MS = 120_000


def _text(topic: str) -> bytes:
    # unique bytes per run: the same bytes again would be answered as a duplicate of an older document
    return f"{topic}: notes {uuid.uuid4().hex}.\n\nGliders soar in the thermals over the ridge.\n".encode()


def _upload(page: Any, name: str, data: bytes) -> str:
    """Choose ``name`` in the file input, press Upload; the new document's id (from the result)."""
    page.set_input_files("#upload-files", files=[{"name": name, "mimeType": "text/plain", "buffer": data}])
    page.get_by_role("button", name="Upload", exact=True).click()
    result = page.locator("#upload-result .document-id")
    expect(result).to_have_count(1)
    return str(result.inner_text()).strip()


def _focus_order(page: Any, until: str, limit: int = 80) -> list[str]:
    """Press Tab from the top of the page until the element matching ``until`` has the focus; the ids (or
    tag names) of the elements passed on the way."""
    page.locator("body").focus()
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if page.evaluate("(sel) => document.activeElement.matches(sel)", until):
            return seen
    raise AssertionError(f"Tab never reached {until}; it went through {seen}")


def test_upload_shows_progress_goes_live_to_indexed_and_delete_by_keyboard(
    console_platform: ConsolePlatform, page: Any, axe_check: Any
) -> None:
    page.goto(console_platform.page_url(f"/documents?tenant={ACME}"))
    expect(page.get_by_role("heading", name="Documents", exact=True)).to_be_visible()
    expect(page.get_by_label("Tenant")).to_have_value(ACME)
    progress = page.get_by_label("Upload progress")
    expect(progress).to_have_attribute("value", "0")
    page.evaluate("window.__sameDocument = true")  # gone if the page were reloaded

    doc = _upload(page, "gliders.txt", _text("gliders"))
    # the progress bar went to the end and says so
    expect(page.locator("#upload-progress")).to_have_js_property("value", 100)
    expect(page.locator("#upload-percent")).to_have_text("Upload done")
    row = page.locator(f'tr[id="doc-{doc}"]')
    expect(row).to_be_visible()
    # live: the stream moves the row to indexed, and the live region says so (only the stream does)
    expect(row).to_have_attribute("data-status", "indexed", timeout=INDEXED_WITHIN_MS)
    expect(row.locator(".status")).to_have_text("indexed")
    expect(page.locator("#live-status")).to_contain_text(f"({doc}): indexed", timeout=INDEXED_WITHIN_MS)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"

    assert not axe_check(page)

    # a button keeps the focus while the stream re-renders the rows (another document arrives)
    erase = page.locator(f'button[id="erase-{doc}"]')
    erase.focus()
    with grpc.insecure_channel(console_platform.grpc_address) as channel:
        other = ingestion_pb2_grpc.IngestionServiceStub(channel).Upload(
            iter(
                [
                    ingestion_pb2.UploadRequest(
                        header=ingestion_pb2.UploadHeader(tenant_id=ACME, filename="other.txt")
                    ),
                    ingestion_pb2.UploadRequest(data=_text("other")),
                ]
            ),
            timeout=60,
        )
    expect(page.locator(f'tr[id="doc-{other.document_id}"]')).to_be_visible()
    expect(erase).to_be_focused()

    # the keyboard reaches the upload control, then the row's buttons
    order = _focus_order(page, "#upload-files")
    assert "tenant-select" in order
    _focus_order(page, f'button[id="delete-{doc}"]')
    _focus_order(page, f'button[id="erase-{doc}"]')

    # delete by keyboard: the button opens the confirmation (focus in its reason field), Enter confirms
    page.locator(f'button[id="delete-{doc}"]').focus()
    page.keyboard.press("Enter")
    reason = page.get_by_label("Reason (kept in the audit log)")
    expect(reason).to_be_focused()
    assert not axe_check(page)
    reason.fill("browser test")
    page.keyboard.press("Tab")
    expect(page.locator("#confirm-delete")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm [role=status]")).to_contain_text("Deleted")
    expect(row).to_have_attribute("data-status", "deleted")
    expect(page.locator(f'button[id="delete-{doc}"]')).to_have_count(0)
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def test_the_detail_view_shows_history_and_text(
    console_platform: ConsolePlatform, page: Any, axe_check: Any
) -> None:
    page.goto(console_platform.page_url(f"/documents?tenant={ACME}"))
    doc = _upload(page, "kites.txt", _text("kites"))
    expect(page.locator(f'tr[id="doc-{doc}"]')).to_have_attribute(
        "data-status", "indexed", timeout=INDEXED_WITHIN_MS
    )
    page.get_by_role("link", name="kites.txt").click()
    expect(page.get_by_role("heading", name="kites.txt")).to_be_visible()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    page.get_by_role("button", name="Show the parsed text").click()
    expect(page.locator(".document-text")).to_contain_text("Gliders soar")
    assert not axe_check(page)


def test_an_unparsable_file_shows_the_reason_after_its_progress(
    console_platform: ConsolePlatform, page: Any, page_errors: PageErrors
) -> None:
    page_errors.allow(r"status of 400|Status Error Code 400")  # the browser and htmx log the refusal
    page.goto(console_platform.page_url(f"/documents?tenant={ACME}"))
    # what the bar showed at each htmx:xhr:progress event (this listener runs after the page's own)
    page.evaluate(
        """() => document.getElementById("upload-form").addEventListener("htmx:xhr:progress", () => {
             (window.__bar = window.__bar || []).push(document.getElementById("upload-progress").value);
           })"""
    )
    broken = b"%PDF-1.7 not really " + bytes(range(256)) * 8192  # 2 MiB that no PDF reader accepts
    page.set_input_files(
        "#upload-files", files=[{"name": "broken.pdf", "mimeType": "application/pdf", "buffer": broken}]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    alert = page.locator("#upload-result [role=alert]")
    expect(alert).to_contain_text("INVALID_ARGUMENT")
    expect(alert).to_contain_text("broken.pdf")
    expect(page.locator("#upload-percent")).to_contain_text("Upload refused (HTTP 400)")
    bar = page.evaluate("window.__bar || []")
    assert bar and bar[-1] == 100 and bar == sorted(bar), bar


@pytest.mark.hydra
def test_tenant_isolation_bob_cannot_see_acme_documents(
    console_platform_oidc: ConsoleOidcPlatform,
    page: Any,
    browser: Any,
    page_errors: PageErrors,
    axe_check: Any,
) -> None:
    platform = console_platform_oidc
    platform.log_in(page, "alice", "/documents")
    page.goto(platform.page_url(f"/documents?tenant={ACME}"))
    doc = _upload(page, "alice-plans.txt", _text("alice's plans"))
    expect(page.locator(f'tr[id="doc-{doc}"]')).to_have_attribute(
        "data-status", "indexed", timeout=INDEXED_WITHIN_MS
    )

    # a document of globex (put there by the platform admin): bob may read it, not delete or erase it
    with grpc.insecure_channel(platform.grpc_address) as channel:
        parts = [
            ingestion_pb2.UploadRequest(
                header=ingestion_pb2.UploadHeader(tenant_id=GLOBEX, filename="globex-memo.txt")
            ),
            ingestion_pb2.UploadRequest(data=_text("globex memo")),
        ]
        memo = ingestion_pb2_grpc.IngestionServiceStub(channel).Upload(
            iter(parts), metadata=[("authorization", f"Bearer {platform.admin_token()}")], timeout=60
        )

    bob_context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC")
    try:
        bob_context.on("page", page_errors.attach)
        bob = bob_context.new_page()
        platform.log_in(bob, "bob", "/documents")
        # bob's tenants only: globex, not acme; nothing of acme's on the page
        options = bob.locator("#tenant-select option").all_inner_texts()
        assert GLOBEX in options and ACME not in options, options
        assert doc not in bob.content() and "alice-plans" not in bob.content()
        # globex's document, without the buttons a reader may not use, and no upload form
        expect(bob.locator(f'tr[id="doc-{memo.document_id}"]')).to_be_visible()
        expect(bob.locator("#document-rows button")).to_have_count(0)
        expect(bob.locator("#upload-files")).to_have_count(0)
        bob.get_by_role("link", name="globex-memo.txt").click()
        expect(bob.get_by_role("heading", name="History")).to_be_visible()
        expect(bob.get_by_role("button", name=re.compile("Delete|Erase"))).to_have_count(0)
        assert not axe_check(bob)

        # the server refuses acme's list and acme's document even by a direct URL (the browser logs the
        # 403 responses as console errors: expected here)
        page_errors.allow(r"status of 403|Status Error Code 403")
        bob.goto(platform.page_url(f"/documents?tenant={ACME}"))
        expect(bob.locator("[role=alert]")).to_contain_text("PERMISSION_DENIED")
        assert doc not in bob.content()
        bob.goto(platform.page_url(f"/documents/doc?tenant={ACME}&document={doc}"))
        expect(bob.locator("[role=alert]")).to_contain_text("PERMISSION_DENIED")
        assert "alice-plans" not in bob.content() and "Gliders soar" not in bob.content()
        assert not re.search(r"<h2[^>]*>History", bob.content())
    finally:
        bob_context.close()
