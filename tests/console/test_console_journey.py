"""The console's main journey in one browser session, every step through its pages: a document uploaded
on the Documents page goes live to indexed; the question asked on the Ask page streams an answer citing
it; the citation opens that document with the cited span highlighted. Then the document's own tenant is
the only one where the answer can come from: the same question in the other tenant cites nothing of it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import ACME, GLOBEX, ConsolePlatform

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INDEXED_WITHIN_MS = 120_000
ANSWER_WITHIN_MS = 60_000


def test_upload_indexed_ask_and_the_citation_highlighted(
    console_platform: ConsolePlatform, page: Any, axe_check: Any
) -> None:
    marker = uuid.uuid4().hex[:8]
    text = (
        f"# Heliotrope {marker}\n\n"
        f"The heliotrope {marker} is a mirror that flashes sunlight to a distant surveyor.\n"
        "Surveyors used it to see a station more than a hundred kilometres away.\n"
    )
    # 1. the Documents page: upload, then the row turns indexed without a reload
    page.goto(console_platform.page_url(f"/documents?tenant={ACME}"))
    page.set_input_files(
        "#upload-files",
        files=[{"name": f"heliotrope-{marker}.md", "mimeType": "text/markdown", "buffer": text.encode()}],
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    doc = page.locator("#upload-result .document-id")
    expect(doc).to_have_count(1)
    document_id = doc.inner_text().strip()
    row = page.locator(f'tr[id="doc-{document_id}"]')
    expect(row).to_have_attribute("data-status", "indexed", timeout=INDEXED_WITHIN_MS)

    # 2. the Ask page: the answer streams in, citing the uploaded document
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Ask").click()
    page.get_by_label("Tenant").select_option(ACME)
    page.get_by_label("Question").fill(f"What does the heliotrope {marker} flash to a surveyor?")
    page.get_by_role("button", name="Ask").click()
    page.locator("#ask-status").get_by_text("Answered.").wait_for(timeout=ANSWER_WITHIN_MS)
    assert "sunlight" in page.locator("#answer").inner_text()
    expect(page.locator("#ask-final")).to_contain_text(document_id)

    # 3. the citation opens the source with the cited span highlighted, and it is the document's text
    page.locator("#answer a.cite").first.click()
    mark = page.locator("#source-panel mark#cited")
    mark.wait_for()
    assert mark.inner_text().strip() and mark.inner_text().strip() in text
    assert document_id in page.locator("#source-panel").inner_text()
    assert not axe_check(page)

    # 4. the other tenant's answers never cite it (a fresh page: nothing of the first answer left)
    page.goto(console_platform.page_url("/ask"))
    page.get_by_label("Tenant").select_option(GLOBEX)
    page.get_by_label("Question").fill(f"What does the heliotrope {marker} flash to a surveyor?")
    page.get_by_role("button", name="Ask").click()
    page.wait_for_function(
        "() => /^(Answered|Blocked by the guardrail)\\./.test("
        "document.querySelector('#ask-status')?.innerText.trim() ?? '')",
        timeout=ANSWER_WITHIN_MS,
    )
    assert document_id not in page.locator("#ask-final").inner_text()
    assert marker not in page.locator("#answer").inner_text()
