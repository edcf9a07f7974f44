"""The Ask page with authentication on (``auth = "local"``, the development issuer): the page asks the
platform as the logged-in viewer (its own token on every call), offers only the tenants where the viewer
may ask, and refuses the others; a visitor who is not logged in gets the login, and 401 from a stream."""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.client import bearer_channel, upload, wait_indexed
from isthmus_core.testing.in_process import platform_overrides
from isthmus_core.testing.infra import free_port_run

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MINE, THEIRS = "ask-mine", "ask-theirs"
ACCESS = f"""
[platform]
bindings = [{{ principal = "root", role = "platform-admin" }}]

[tenants.{MINE}]
bindings = [{{ principal = "alice", role = "reader" }}, {{ principal = "audrey", role = "auditor" }}]

[tenants.{THEIRS}]
bindings = [{{ principal = "bob", role = "tenant-admin" }}]
"""
DOC = b"""# Apache Kafka

Kafka stores streams of records in topics, and every topic is split into partitions.
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("isthmus")
    (tmp / "access.toml").write_text(ACCESS)
    port = free_port_run()
    overrides: dict[str, dict[str, Any]] = platform_overrides(
        str(tmp), common={"auth": "local", "access_file": str(tmp / "access.toml")}, console={"port": port}
    )
    rt = Runtime.from_settings("all", MODULES, None, overrides)
    await rt.start()
    try:
        issuer = LocalIssuer(tmp / "auth" / "local-issuer.pem")
        tokens = {who: issuer.mint(who, audience="isthmus") for who in ("root", "alice", "audrey")}
        async with bearer_channel(rt.address, tokens["root"]) as root:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(root)
            for t in (MINE, THEIRS):
                await stub.CreateTenant(retrieval_pb2.CreateTenantRequest(tenant_id=t))
            for t in (MINE, THEIRS):
                r = await upload(root, t, "kafka.md", DOC, document_id="kafka")
                await wait_indexed(root, t, [r.document_id])
        yield {"url": f"http://127.0.0.1:{port}", "tokens": tokens}
    finally:
        await rt.stop()


def csrf_of(page: str) -> str:
    m = re.search(r"hx-headers='([^']*)'", page)
    assert m
    return str(json.loads(html.unescape(m.group(1)))["X-CSRF-Token"])


@contextlib.asynccontextmanager
async def logged_in(world: dict[str, Any], who: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=world["url"], timeout=60) as http:
        login = await http.get("/auth/login")
        r = await http.post(
            "/auth/token", data={"token": world["tokens"][who]}, headers={"X-CSRF-Token": csrf_of(login.text)}
        )
        assert r.status_code == 204, r.text
        yield http


async def test_not_logged_in_is_sent_to_the_login(world: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=world["url"], timeout=60) as http:
        r = await http.get("/ask")
        assert r.status_code == 303 and r.headers["location"].startswith("/auth/login")
        r = await http.get(f"/ask/source/{MINE}/kafka?start=0&end=5")
        assert r.status_code == 303
        for path in ("/ask/stream/anything", f"/ask/provenance/{MINE}/abc", f"/ask/graphs?tenant={MINE}"):
            assert (await http.get(path)).status_code == 401, path
        r = await http.get(f"/ask/source/{MINE}/kafka?start=0&end=5", headers={"HX-Request": "true"})
        assert r.status_code == 401


async def test_a_reader_asks_in_her_tenant_only(world: dict[str, Any]) -> None:
    async with logged_in(world, "alice") as http:
        page = await http.get("/ask")
        assert page.status_code == 200
        assert f'<option value="{MINE}"' in page.text and THEIRS not in page.text
        token = csrf_of(page.text)
        # the console refuses a tenant the viewer may not ask in...
        r = await http.post(
            "/ask", data={"tenant": THEIRS, "question": "What is Kafka?"}, headers={"X-CSRF-Token": token}
        )
        assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
        # ... and so does the platform for what the console would show her
        r = await http.get(f"/ask/source/{THEIRS}/kafka?start=0&end=5")
        assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
        # her own tenant: answered with her token, the source shown
        r = await http.post(
            "/ask",
            data={"tenant": MINE, "question": "What does Kafka store?"},
            headers={"X-CSRF-Token": token},
        )
        assert r.status_code == 200, r.text
        url = html.unescape(re.search(r'sse-connect="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
        async with http.stream("GET", url) as s:
            body = "".join([line + "\n" async for line in s.aiter_lines()])
        assert "event: final" in body and "records in topics" in body
        href = html.unescape(re.search(r'href="(/ask/source/[^"#]+)', body).group(1))  # type: ignore[union-attr]
        assert href.startswith(f"/ask/source/{MINE}/kafka?")
        assert "<mark" in (await http.get(href)).text


async def test_an_auditor_is_offered_no_tenant_to_ask_in(world: dict[str, Any]) -> None:
    async with logged_in(world, "audrey") as http:
        page = await http.get("/ask")
        assert page.status_code == 200
        assert f'<option value="{MINE}"' not in page.text
        r = await http.post(
            "/ask",
            data={"tenant": MINE, "question": "What is Kafka?"},
            headers={"X-CSRF-Token": csrf_of(page.text)},
        )
        assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
