"""The documents page over HTTP (no browser) against the real ``all`` target in this process, the console
on a free port: upload through the console (multipart, CSRF header) into ingestion's Upload, the list
and the Server-Sent Events of WatchDocuments, the console's upload limit, failures with their reasons,
deletion and erasure, the detail view, and the refusals (no CSRF token, malformed ids)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
import pytest_asyncio

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.in_process import platform_overrides
from isthmus_core.testing.infra import free_port_run

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "acme"
#: the console's upload limit in these tests (ingestion's own stays larger)
LIMIT = 20_000
TEXT = b"The Wright brothers flew the first powered aircraft at Kitty Hawk in December 1903.\n"


@dataclass
class Console:
    rt: Runtime
    http: httpx.AsyncClient
    csrf: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    port = free_port_run()
    overrides = platform_overrides(
        str(tmp_path_factory.mktemp("isthmus")), console={"port": port, "max_upload_bytes": LIMIT}
    )
    rt = Runtime.from_settings("all", MODULES, None, overrides)
    await rt.start()
    try:
        async with grpc.aio.insecure_channel(rt.address) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
            )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            page = await http.get("/documents", params={"tenant": TENANT})
            assert page.status_code == 200, page.text
            csrf = _csrf(page.text)
            yield Console(rt, http, csrf)
    finally:
        await rt.stop()


def _csrf(body: str) -> str:
    m = re.search(r"hx-headers='([^']*)'", body)
    assert m, "no hx-headers on the page"
    return str(json.loads(html.unescape(m.group(1)))["X-CSRF-Token"])


async def _upload(c: Console, *files: tuple[str, bytes], tenant: str = TENANT) -> httpx.Response:
    return await c.http.post(
        "/documents/upload",
        data={"tenant": tenant},
        files=[("files", (name, data)) for name, data in files],
        headers={"X-CSRF-Token": c.csrf},
    )


def _document_id(body: str) -> str:
    m = re.search(r'class="document-id">([^<]+)<', body)
    assert m, body
    return m.group(1)


def _row_status(rows: str, document_id: str) -> str | None:
    m = re.search(rf'<tr id="doc-{re.escape(document_id)}" data-status="([a-z]+)"', rows)
    return m.group(1) if m else None


async def _wait_status(c: Console, document_id: str, status: str, within_s: float = 120) -> str:
    """Poll the rows fragment until the document shows ``status``; the rows as they were then."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        r = await c.http.get("/documents/rows", params={"tenant": TENANT})
        assert r.status_code == 200, r.text
        if _row_status(r.text, document_id) == status:
            return r.text
        assert asyncio.get_running_loop().time() < deadline, f"{document_id} not {status}: {r.text}"
        await asyncio.sleep(0.2)


async def test_the_page_shows_the_tenant_chooser_upload_form_and_list(console: Console) -> None:
    r = await console.http.get("/documents", params={"tenant": TENANT})
    assert r.status_code == 200
    body = r.text
    assert '<select id="tenant-select" name="tenant">' in body and f'value="{TENANT}" selected' in body
    assert 'hx-encoding="multipart/form-data"' in body and '<label for="upload-files">' in body
    assert 'sse-connect="/documents/events?tenant=acme"' in body and 'aria-live="polite"' in body
    assert "/static/documents.js" in body
    assert "script-src 'self'" in r.headers["content-security-policy"]


async def test_an_upload_through_the_console_is_listed_and_reaches_indexed_live(console: Console) -> None:
    async with console.http.stream("GET", "/documents/events", params={"tenant": TENANT}) as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        r = await _upload(console, ("flight.txt", TEXT))
        assert r.status_code == 200, r.text
        doc = _document_id(r.text)
        assert "flight.txt" in r.text and r.headers.get("hx-trigger") == "documents-changed"
        # the stream re-renders the rows as the document moves on, and says what changed
        seen_indexed = said_indexed = False
        event = ""
        async with asyncio.timeout(120):
            async for line in events.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif (
                    line.startswith("data: ")
                    and event == "rows"
                    and f'id="doc-{doc}" data-status="indexed"' in line
                ):
                    seen_indexed = True
                elif line.startswith("data: ") and event == "announce" and f"({doc}): indexed" in line:
                    said_indexed = True
                if seen_indexed and said_indexed:
                    break
    rows = await _wait_status(console, doc, "indexed")
    assert "flight.txt" in rows

    # the same bytes again: the same document, said to be a duplicate
    again = await _upload(console, ("flight-copy.txt", TEXT))
    assert again.status_code == 200 and _document_id(again.text) == doc and "deduplicated" in again.text

    # the detail view and its text
    detail = await console.http.get("/documents/doc", params={"tenant": TENANT, "document": doc})
    assert detail.status_code == 200 and "History" in detail.text and "indexed" in detail.text
    text = await console.http.get("/documents/text", params={"tenant": TENANT, "document": doc})
    assert text.status_code == 200 and "Kitty Hawk" in text.text


async def test_several_files_in_one_upload_each_become_a_document(console: Console) -> None:
    r = await _upload(
        console,
        ("one.txt", b"Balloons rise because hot air is lighter than the air around it.\n"),
        ("two.md", b"# Kites\n\nA kite flies on the wind, held by its line.\n"),
        ("three.pdf", b"no pdf here"),
    )
    assert r.status_code == 200, r.text  # some went in: the failures are shown beside them
    ids = re.findall(r'class="document-id">([^<]+)<', r.text)
    assert len(ids) == 2 and len(set(ids)) == 2
    assert "three.pdf" in r.text and "INVALID_ARGUMENT" in r.text
    for doc in ids:
        await _wait_status(console, doc, "indexed")


async def test_a_file_over_the_console_limit_is_refused_with_413_and_its_reason(console: Console) -> None:
    r = await _upload(console, ("big.txt", b"x" * (LIMIT + 1)))
    assert r.status_code == 413
    assert (
        "RESOURCE_EXHAUSTED" in r.text and "console.max_upload_bytes" in r.text and 'role="alert"' in r.text
    )


async def test_a_file_that_cannot_be_parsed_shows_the_reason(console: Console) -> None:
    r = await _upload(console, ("broken.pdf", b"this is not a pdf at all"))
    assert r.status_code == 400, r.text
    assert "INVALID_ARGUMENT" in r.text and "broken.pdf" in r.text and 'role="alert"' in r.text
    assert re.search(r'class="reason">[^<]*pdf', r.text, re.IGNORECASE), r.text

    # a document that failed after it was accepted (submitted on the bus): its reason in the list
    await publish_event(
        console.rt.bus,
        topics.DOCUMENTS_SUBMITTED,
        DocumentSubmitted(
            tenant_id=TENANT,
            idempotency_key="k-bad",
            document_id="bad-one",
            filename="bad.pdf",
            content=b"not a pdf",
        ),
    )
    rows = await _wait_status(console, "bad-one", "failed")
    row = rows[rows.index('id="doc-bad-one"') :]
    assert re.search(r'class="status-reason">[^<]*pdf', row, re.IGNORECASE), row


async def test_delete_and_erase_after_a_confirmation(console: Console) -> None:
    r = await _upload(console, ("gliders.md", b"# Gliders\n\nGliders soar in thermals over the ridge.\n"))
    assert r.status_code == 200, r.text
    doc = _document_id(r.text)
    rows = await _wait_status(console, doc, "indexed")
    assert f'id="delete-{doc}"' in rows and f'id="erase-{doc}"' in rows

    ask = await console.http.get(
        "/documents/confirm", params={"action": "delete", "tenant": TENANT, "document": doc}
    )
    assert ask.status_code == 200 and 'hx-post="/documents/delete"' in ask.text
    deleted = await console.http.post(
        "/documents/delete",
        data={"tenant": TENANT, "document": doc, "reason": "test"},
        headers={"X-CSRF-Token": console.csrf},
    )
    assert deleted.status_code == 200 and "deleted" in deleted.text, deleted.text
    rows = await _wait_status(console, doc, "deleted")
    assert f'id="delete-{doc}"' not in rows

    erased = await console.http.post(
        "/documents/erase",
        data={"tenant": TENANT, "document": doc, "reason": "test"},
        headers={"X-CSRF-Token": console.csrf},
    )
    assert erased.status_code == 200 and "Erasure" in erased.text, erased.text
    erasure_id = re.search(r"Erasure <code>([0-9a-f]{32})</code>", erased.text)
    assert erasure_id
    receipt = await console.http.get(
        "/documents/erasure", params={"tenant": TENANT, "erasure": erasure_id.group(1)}
    )
    assert receipt.status_code == 200 and "ingestion" in receipt.text
    gone = await console.http.get("/documents/doc", params={"tenant": TENANT, "document": doc})
    assert gone.status_code == 404 and "NOT_FOUND" in gone.text

    unknown = await console.http.post(
        "/documents/delete",
        data={"tenant": TENANT, "document": "no-such-document"},
        headers={"X-CSRF-Token": console.csrf},
    )
    assert unknown.status_code == 404 and "NOT_FOUND" in unknown.text


async def test_unsafe_requests_without_the_csrf_token_are_refused(console: Console) -> None:
    r = await console.http.post(
        "/documents/upload", data={"tenant": TENANT}, files=[("files", ("a.txt", TEXT))]
    )
    assert r.status_code == 403 and "CSRF" in r.text
    r = await console.http.post(
        "/documents/delete",
        data={"tenant": TENANT, "document": "x"},
        headers={"X-CSRF-Token": "not-the-token"},
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/documents", {"tenant": "../etc"}),
        ("/documents/rows", {"tenant": "Not A Tenant!"}),
        ("/documents/events", {"tenant": "a/b"}),
        ("/documents/doc", {"tenant": TENANT, "document": "../../secret"}),
        ("/documents/doc", {"tenant": "bad tenant", "document": "x"}),
        ("/documents/text", {"tenant": TENANT, "document": ""}),
        ("/documents/confirm", {"action": "delete", "tenant": TENANT, "document": "a/../b"}),
        ("/documents/erasure", {"tenant": TENANT, "erasure": "not-hex"}),
    ],
)
async def test_malformed_ids_are_refused_with_400_and_the_reason(
    console: Console, path: str, params: dict[str, str]
) -> None:
    r = await console.http.get(path, params=params)
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert "INVALID_ARGUMENT" in r.text and 'role="alert"' in r.text


async def test_malformed_ids_in_forms_are_refused_with_400(console: Console) -> None:
    r = await _upload(console, ("a.txt", TEXT), tenant="no way")
    assert r.status_code == 400 and "tenant" in r.text
    r = await console.http.post(
        "/documents/delete",
        data={"tenant": TENANT, "document": "../x"},
        headers={"X-CSRF-Token": console.csrf},
    )
    assert r.status_code == 400 and "INVALID_ARGUMENT" in r.text


async def test_an_unknown_tenant_shows_the_services_error(console: Console) -> None:
    r = await console.http.get("/documents/rows", params={"tenant": "nobody"})
    assert r.status_code == 404 and "NOT_FOUND" in r.text
    r = await console.http.get("/documents/events", params={"tenant": "nobody"})
    assert r.status_code == 404 and "NOT_FOUND" in r.text
